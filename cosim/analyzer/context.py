"""Everything the rules share, kept once per analysis as the records pass: the view, the
attach windows, the domains, the device's ATC, the invalidations not yet synced, and where
findings go."""

from __future__ import annotations

from dataclasses import dataclass

from .atc_state import AtcState, UnsyncedAtcInv
from .attaches import AttachTracker
from .domains import DomainTracker
from .findings import Collector
from .view import TraceView


@dataclass
class Context:
    view: TraceView
    doms: DomainTracker
    attaches: AttachTracker
    atc: AtcState
    unsynced: UnsyncedAtcInv
    out: Collector
    warn: Collector
