"""`cosim analyze TRACE [--json FILE|-] [--perfetto FILE]` (also `python -m cosim.analyzer`).

Exit status: 0 clean, 1 violations found, 2 unreadable input or unwritable output (one error
line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import json
import sys

from cosim.trace import TraceError

from . import perfetto, report
from .api import analyze_file

EXIT_CLEAN, EXIT_VIOLATIONS, EXIT_UNREADABLE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="cosim analyze",
                                 description="Check a cosim trace against the invariants.")
    ap.add_argument("trace", help="trace file (JSON lines, docs/trace.md)")
    ap.add_argument("--json", metavar="FILE",
                    help="write the JSON summary to FILE ('-' for stdout, replacing the report)")
    ap.add_argument("--perfetto", metavar="FILE",
                    help="write Chrome trace-event JSON for ui.perfetto.dev")
    ap.add_argument("-q", "--quiet", action="store_true", help="no report on stdout")
    return ap


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # usage errors and --help: return the status, do not exit
        return e.code if isinstance(e.code, int) else EXIT_UNREADABLE
    try:
        an = analyze_file(args.trace)
    except TraceError as e:
        print(f"cosim analyze: {e}", file=sys.stderr)
        return EXIT_UNREADABLE
    try:
        if args.json == "-":
            json.dump(an.to_json(), sys.stdout, indent=2, default=str)
            sys.stdout.write("\n")
        elif args.json:
            with open(args.json, "w") as f:
                json.dump(an.to_json(), f, indent=2, default=str)
        if args.perfetto:
            perfetto.write(an, args.perfetto)
    except OSError as e:
        print(f"cosim analyze: cannot write output: {e.filename}: {e.strerror}",
              file=sys.stderr)
        return EXIT_UNREADABLE
    if not args.quiet and args.json != "-":
        sys.stdout.write(report.render(an, args.trace))
    return EXIT_VIOLATIONS if an.violations else EXIT_CLEAN
