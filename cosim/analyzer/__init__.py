"""Trace analysis (`cosim analyze`): the invariant checks over a trace written by the model.

Reads the trace through `cosim.trace` only, in one streaming pass (engine.py): shared trackers
(attaches, domains, atc_state, invalidations) see each record once, then the rules that read
its kind: rule_old_domain (invariant 1), rule_atc_invalidation and rule_domain_invalidation
(invariant 2), rule_hitless_abort (invariant 3), rule_entry_update (STE/CD used-bits
legality), rule_protocol (the invalidation protocol), rule_stale_cache (caching modes).
docs/trace.md has the format and how the pass works.
"""

from .analysis import Analysis, run
from .api import analyze_file, analyze_path
from .cli import main
from .findings import RULES, Violation

__all__ = ["RULES", "Analysis", "Violation", "analyze_file", "analyze_path", "main", "run"]
