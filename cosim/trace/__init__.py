"""The trace: an append-only stream of records written by the model, in zstd frames (the run's
binary format, cosim/trace/framing.py) or as JSON lines.

This package is the boundary between the model and the analyzer: the model writes through a
`TraceSink` (`TraceWriter`), the analyzer reads through `read_trace`, and neither sees the
other. Every record kind and field is declared once, in `schema` (docs/trace.md's tables are
generated from it); the writer checks records against it when checking is on and the reader
always validates them.
"""

from .reader import Trace, TraceError, TraceReader, iter_records, read_trace
from .schema import KINDS, READABLE, SCHEMA, SchemaViolation
from .sink import CHECK_ENV, NullTrace, TraceSink, checking
from .writer import FORMATS, BinaryTraceWriter, TraceWriter, open_writer

__all__ = ["CHECK_ENV", "FORMATS", "KINDS", "READABLE", "SCHEMA", "BinaryTraceWriter",
           "NullTrace", "SchemaViolation", "Trace", "TraceError", "TraceReader", "TraceSink",
           "TraceWriter", "checking", "iter_records", "open_writer", "read_trace"]
