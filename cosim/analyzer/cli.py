"""`cosim analyze [--json FILE|-] [--perfetto FILE] [-q] TRACE` (also `python -m cosim.analyzer`).

Exit status: 0 clean, 1 violations found, 2 unusable input or unwritable output (one error
line on stderr naming what is wrong, no traceback, no output file written), 3 incomplete: no
rule fired but the trace cannot show the run clean (a torn last record, an attach the trace
ends inside, no driver probes).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from cosim.trace import TraceError

from . import perfetto, report
from .analysis import Analysis
from .api import analyze_file

EXIT_CLEAN, EXIT_VIOLATIONS, EXIT_UNREADABLE, EXIT_INCOMPLETE = 0, 1, 2, 3


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The analyzer's options, shared by `cosim analyze` and `python -m cosim.analyzer`."""
    ap.add_argument("trace", help="trace file, binary or JSON lines (docs/trace.md)")
    ap.add_argument("--json", metavar="FILE",
                    help="write the JSON summary to FILE ('-' for stdout, replacing the report)")
    ap.add_argument("--perfetto", metavar="FILE",
                    help="write Chrome trace-event JSON for ui.perfetto.dev")
    ap.add_argument("-q", "--quiet", action="store_true", help="no report on stdout")


DESCRIPTION = ("Check a cosim trace against the invariants. Exit status: 0 clean, 1 violations, "
               "2 unusable input or unwritable output, 3 incomplete evidence.")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="cosim analyze", description=DESCRIPTION)
    add_arguments(ap)
    return ap


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # usage errors and --help: return the status, do not exit
        return e.code if isinstance(e.code, int) else EXIT_UNREADABLE
    return run(args)


def run(args: argparse.Namespace) -> int:
    try:
        an = analyze_file(args.trace)
    except TraceError as e:
        print(f"cosim analyze: {e}", file=sys.stderr)
        return EXIT_UNREADABLE
    bad = an.view.problems
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        print(f"cosim analyze: {args.trace}: {bad[0]}{more}: not a trace this cosim can judge",
              file=sys.stderr)
        return EXIT_UNREADABLE
    try:
        if args.json and args.json != "-":
            _write_atomic(args.json, lambda f: _dump(an, f))
        if args.perfetto:
            _write_atomic(args.perfetto, lambda f: perfetto.dump(an, f))
    except OSError as e:
        print(f"cosim analyze: cannot write output: {e.filename}: {e.strerror}",
              file=sys.stderr)
        return EXIT_UNREADABLE
    if args.json == "-":
        _dump(an, sys.stdout)
    elif not args.quiet:
        sys.stdout.write(report.render(an, args.trace))
    if an.violations:
        return EXIT_VIOLATIONS
    return EXIT_INCOMPLETE if an.incomplete else EXIT_CLEAN


def _dump(an: Analysis, f: IO[str]) -> None:
    json.dump(an.to_json(), f, indent=2, default=str)
    f.write("\n")


def _write_atomic(path: str, write: Callable[[IO[str]], None]) -> None:
    """Write to a temporary file beside `path`, then rename: a failure leaves no half file."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or Path("."))
    try:
        with os.fdopen(fd, "w") as f:
            write(f)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)   # as open() would have made it
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
