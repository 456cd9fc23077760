"""The human-readable report: summary first, then attaches, then each violation with its
timeline."""

from __future__ import annotations

import json
from typing import Any

from .analysis import Analysis
from .findings import RULES, Violation


def _dur(ns: int | None) -> str:
    if ns is None:
        return "-"
    if ns >= 1_000_000:
        return f"{ns / 1e6:.3f}ms"
    return f"{ns / 1e3:.1f}us"


def _doms(a: dict[str, Any]) -> str:
    parts = []
    for key, old in a["old"].items():
        new = a["new"].get(key)
        parts.append(f"{key}: {old or '?'} -> {new or '?'}")
    return "; ".join(parts) or "-"


def render(an: Analysis, source: str = "") -> str:
    v = an.view
    c = an.counts
    lines = [f"cosim analyze {source}".rstrip()]
    lines.append(f"  records: {c['records']} (schema {v.header.get('schema')}, cache_mode "
                 f"{v.header.get('cache_mode', '?')}"
                 + (", TORN last line: analyzed without it" if v.torn is not None else "")
                 + (f", {c['bad_lines']} unreadable line(s)" if c["bad_lines"] else "") + ")")
    lines.append(f"  attaches: {c['attaches']} ({c['attaches_clean']} clean)")
    by_rule = ", ".join(f"{RULES[r][0]}:{r}={n}" for r, n in c["by_rule"].items() if n)
    lines.append(f"  verdict: {an.verdict.upper()}"
                 + (f" ({len(an.violations)} violation(s): {by_rule})" if an.violations else "")
                 + (f", {len(an.warnings)} warning(s)" if an.warnings else ""))
    for why in an.incomplete:
        lines.append(f"  incomplete: {why}")
    src = {a.source for a in an.attaches}
    if src:
        lines.append("  attach windows: " + (
            "the driver's own entry and return (drv probes)" if src == {"driver"}
            else "userspace markers (no driver probes)"))
    if an.attaches:
        lines += ["", "Attaches:",
                  "  #    dev kind          begin        duration   cmds syncs aborts faults "
                  "verdict     domains (old -> new)"]
        for a in an.attaches:
            j = a.to_json(v)
            lines.append(
                f"  {j['n']:<4} {j['dev']:<3} {j['kind']:<13} "
                f"{j['begin_t'] / 1e9:>11.6f}s {_dur(j['duration_ns']):>10} {j['commands']:>4} "
                f"{j['syncs']:>5} {j['aborts']:>6} {j['faults']:>6} {j['verdict']:<11} "
                f"{_doms(j)}")
    for title, items in (("Violations", an.violations), ("Warnings", an.warnings)):
        if items:
            lines += ["", f"{title}:"]
            for viol in items:
                lines += _violation(an, viol)
    notes = an.to_json()["notes"]
    if notes:
        lines += ["", "Notes:"] + [f"  {n}" for n in notes]
    return "\n".join(lines) + "\n"


def _violation(an: Analysis, viol: Violation) -> list[str]:
    out = ["", "  " + viol.headline(an.view)]
    out.append(f"    rule: {RULES[viol.rule][1]}")
    if viol.entries:
        out.append("    entries: " + json.dumps(viol.entries, default=str))
    if len(viol.records) > 1:
        out.append("    lines: " + ", ".join(str(an.view.line_of(i)) for i in viol.records)
                   + (" ..." if viol.count > len(viol.records) else ""))
    out.append("    timeline:")
    out += ["      " + t for t in an.view.timeline(viol.index)]
    return out
