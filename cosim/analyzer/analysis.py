"""One analysis of one trace: the engine's pass (engine.py), then what the report says about
it, held as the result."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .attaches import Attach
from .engine import Ended, Progress, analyze
from .findings import RULES, Violation
from .view import TraceView


@dataclass
class Analysis:
    view: TraceView
    attaches: list[Attach]
    violations: list[Violation]
    warnings: list[Violation]
    counts: dict[str, Any] = field(default_factory=dict)

    incomplete: list[str] = field(default_factory=list)
    _json: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def verdict(self) -> str:
        """'violations' when a rule fired; else 'incomplete' when the evidence cannot support
        'clean' (see `incomplete` for why); else 'clean'."""
        if self.violations:
            return "violations"
        return "incomplete" if self.incomplete else "clean"

    def to_json(self) -> dict[str, Any]:
        if self._json is None:
            for v in self.violations + self.warnings:
                self.view.cite(v.index)
            self._json = {
                "verdict": self.verdict,
                "incomplete": self.incomplete,
                "violations": [v.to_json(self.view) for v in self.violations],
                "warnings": [v.to_json(self.view) for v in self.warnings],
                "attaches": [a.to_json(self.view) for a in self.attaches],
                "counts": self.counts,
                "torn": self.view.torn is not None,
                "header": self.view.header,
                "notes": self.notes,
                "problems": self.view.problems,
            }
        return self._json

    @property
    def notes(self) -> list[str]:
        return self.view.notes + [f"attach #{a.n}: {n}" for a in self.attaches for n in a.notes]


def run(path: str | os.PathLike[str], progress: Progress | None = None,
        ended: Ended | None = None) -> Analysis:
    """Analyze the trace at `path` (raises cosim.trace.TraceError if it is not one);
    `progress` is told how many records were read, every million; `ended`: the trace is
    still being written until ended() is true."""
    p = analyze(path, progress, ended)
    view, attaches = p.ctx.view, p.ctx.attaches.attaches
    violations = sorted(p.ctx.out.items, key=lambda v: (v.index, v.order))
    _attribute(attaches, violations)
    per_rule = Counter(v.rule for v in violations)
    counts = {
        "records": view.count, "kinds": p.kinds,
        "attaches": len(attaches),
        "attaches_clean": sum(1 for a in attaches if a.verdict() == "clean"),
        "violations": len(violations), "warnings": len(p.ctx.warn.items),
        "by_rule": {r: per_rule.get(r, 0) for r in RULES},
        "bad_lines": len(view.problems),
    }
    warnings = sorted(p.ctx.warn.items, key=lambda v: (v.index, v.order))
    for v in violations + warnings:
        view.cite(v.index)
    return Analysis(view, attaches, violations, warnings, counts, _incomplete(view, attaches))


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
