"""`python -m cosim.trace export --jsonl|--cst IN OUT` (also `cosim trace export`): convert a
trace of either format (read by its magic bytes) to JSON lines or to the binary format.

The records are written as read: validated, a schema-1 trace upgraded to schema 2 (the header
then still says what the writer wrote; the reader reads either). A record the reader leaves
out or a torn tail is not copied: each is said on stderr.

Exit status: 0 converted, 2 unreadable input or unwritable output (one line on stderr).
"""

from __future__ import annotations

import argparse
import os
import sys

from .reader import TraceError, TraceReader
from .writer import FORMATS, TraceWriter, open_writer


def add_arguments(ap: argparse.ArgumentParser) -> None:
    fmt = ap.add_mutually_exclusive_group(required=True)
    fmt.add_argument("--jsonl", dest="format", action="store_const", const="jsonl",
                     help="write JSON lines")
    fmt.add_argument("--cst", dest="format", action="store_const", const="cst",
                     help="write the binary format (zstd frames, docs/trace.md)")
    ap.add_argument("input", help="a trace, either format")
    ap.add_argument("output", help="the converted trace (replaced if it exists)")


def run(args: argparse.Namespace) -> int:
    assert args.format in FORMATS
    try:
        reader = TraceReader(args.input)
    except TraceError as e:
        print(f"cosim trace export: {e}", file=sys.stderr)
        return 2
    tmp = f"{args.output}.tmp{os.getpid()}"
    try:
        with reader:
            out: TraceWriter = open_writer(tmp, args.format, check=False,
                                           copy_header=reader.header)
            for rec in reader:
                out.write_record(rec)
            out.close()
        os.replace(tmp, args.output)
    except OSError as e:
        print(f"cosim trace export: cannot write {args.output}: {e.strerror}", file=sys.stderr)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return 2
    for p in reader.problems:
        print(f"cosim trace export: {args.input}: {p}: not copied", file=sys.stderr)
    if reader.torn is not None:
        print(f"cosim trace export: {args.input}: torn tail not copied", file=sys.stderr)
    return 0


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m cosim.trace export", description=__doc__)
    add_arguments(ap)
    try:
        args = ap.parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 2
    return run(args)
