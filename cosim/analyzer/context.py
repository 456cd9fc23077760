"""Everything the rules share, built once per analysis."""

from __future__ import annotations

from dataclasses import dataclass

from .attaches import Attach
from .domains import DomainIndex
from .invalidations import Invalidations
from .view import TraceView


@dataclass
class Context:
    view: TraceView
    doms: DomainIndex
    attaches: list[Attach]
    invals: Invalidations
