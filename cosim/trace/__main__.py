import sys

from . import export, schema

argv = sys.argv[1:]
raise SystemExit(export.main(argv[1:]) if argv[:1] == ["export"] else schema.main(argv))
