import sys

from .schema import main

raise SystemExit(main(sys.argv[1:]))
