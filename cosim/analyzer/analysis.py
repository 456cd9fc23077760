"""One analysis of one trace: builds the shared indices, runs every rule, and holds the result."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from . import (
    rule_atc_invalidation,
    rule_domain_invalidation,
    rule_entry_update,
    rule_hitless_abort,
    rule_old_domain,
    rule_protocol,
    rule_stale_cache,
)
from .attaches import Attach, attach_stats, find_attaches, infer_domains
from .context import Context
from .domains import DomainIndex
from .findings import RULES, Collector, Violation
from .invalidations import Invalidations
from .view import TraceView


@dataclass
class Analysis:
    view: TraceView
    attaches: list[Attach]
    violations: list[Violation]
    warnings: list[Violation]
    counts: dict[str, Any] = field(default_factory=dict)

    incomplete: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        """'violations' when a rule fired; else 'incomplete' when the evidence cannot support
        'clean' (see `incomplete` for why); else 'clean'."""
        if self.violations:
            return "violations"
        return "incomplete" if self.incomplete else "clean"

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "incomplete": self.incomplete,
            "violations": [v.to_json(self.view) for v in self.violations],
            "warnings": [v.to_json(self.view) for v in self.warnings],
            "attaches": [a.to_json(self.view) for a in self.attaches],
            "counts": self.counts,
            "torn": self.view.torn is not None,
            "header": self.view.header,
            "notes": self.view.notes + [f"attach #{a.n}: {n}" for a in self.attaches
                                        for n in a.notes],
            "problems": self.view.problems,
        }


def run(view: TraceView) -> Analysis:
    doms = DomainIndex.build(view)
    attaches = find_attaches(view)
    infer_domains(view, doms, attaches)
    attach_stats(view, attaches)
    ctx = Context(view, doms, attaches, Invalidations.collect(view))
    out, warn = Collector(), Collector()
    rule_old_domain.check(ctx, out)
    rule_atc_invalidation.check(ctx, out)
    rule_domain_invalidation.check(ctx, out)
    rule_hitless_abort.check(ctx, out)
    rule_entry_update.check(ctx, out)
    rule_protocol.check(ctx, out)
    rule_stale_cache.check(ctx, out)
    violations = sorted(out.items, key=lambda v: v.index)
    _attribute(attaches, violations)
    kinds = Counter(str(r.get("k")) for r in view.records)
    per_rule = Counter(v.rule for v in violations)
    counts = {
        "records": len(view.records), "kinds": dict(sorted(kinds.items())),
        "attaches": len(attaches),
        "attaches_clean": sum(1 for a in attaches if a.verdict() == "clean"),
        "violations": len(violations), "warnings": len(warn.items),
        "by_rule": {r: per_rule.get(r, 0) for r in RULES},
        "bad_lines": len(view.problems),
    }
    return Analysis(view, attaches, violations, sorted(warn.items, key=lambda v: v.index),
                    counts, _incomplete(view, attaches))


def _incomplete(view: TraceView, attaches: list[Attach]) -> list[str]:
    """Why this trace cannot show that every attach was hitless, even if no rule fired."""
    out = []
    if view.torn is not None:
        out.append("the trace ends with a torn record: the model died while writing it")
    if view.problems:
        out.append(f"{len(view.problems)} line(s) could not be read (see problems)")
    open_ = [a.n for a in attaches if a.end is None]
    if open_:
        out.append(f"attach #{open_[0]} never ended: the trace ends inside it")
    if attaches and all(a.source == "marker" for a in attaches):
        out.append("no driver probes in the trace: attach windows are the tests' userspace "
                   "markers, which end after the driver returned (load "
                   "guest-kmod/cosim_drv_probe.ko)")
    return out


def _attribute(attaches: list[Attach], violations: list[Violation]) -> None:
    """Name the attach a violation happened in (or after), when a rule did not say."""
    for v in violations:
        if v.attach is not None:
            continue
        for a in attaches:
            if v.sid in a.sids and a.begin < v.index < a.horizon:
                v.attach = a.n
                a.rules.add(v.rule)
