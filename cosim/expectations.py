"""Per-kernel expectations: what the hitless suite is expected to show on each kernel.

A kernel that really breaks an invariant is a finding about the kernel, recorded in
tests/expectations/<kernel>.toml with its evidence; the end-to-end test passes when what was
observed matches the file exactly, and fails when a new violation appears or a recorded one
disappears.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

DIR = Path(__file__).resolve().parent.parent / "tests" / "expectations"


@dataclass
class Expectation:
    kernel: str
    statuses: dict[str, str]                       # test name -> status; unlisted means "pass"
    rules: set[str] = field(default_factory=set)   # analyzer rules that must (only) fire
    findings: list[dict] = field(default_factory=list)
    verdict: str | None = None                     # the analysis verdict, when recorded


def path(kernel: str) -> Path:
    """Where the expectations of a kernel choice live."""
    return DIR / f"{kernel}.toml"


def available(kernel: str) -> bool:
    return path(kernel).exists()


def load(kernel: str) -> Expectation:
    f = path(kernel)
    if not f.exists():
        raise FileNotFoundError(f"no expectations for kernel {kernel}: {f} is missing")
    data = tomllib.loads(f.read_text())
    statuses = dict(data.get("statuses", {}))
    rules: set[str] = set()
    for fnd in data.get("finding", []):
        rules |= set(fnd.get("rules", []))
        for t in fnd.get("tests", []):
            statuses.setdefault(t, "fail")
    verdict = data.get("verdict")
    if verdict is None and rules:
        verdict = "violations"
    return Expectation(kernel, statuses, rules, data.get("finding", []), verdict)


def area_of(test: str) -> str:
    """The guest area of a test name: "replace/replace_ats" -> "replace", "kunit" -> "kunit"."""
    return test.split("/", 1)[0]


def test_family(test: str) -> str:
    """The trace-label family of a guest test ("replace/replace_ats" -> "replace"): the first
    word of the test-begin labels its variants write ("replace ats", "replace")."""
    return test.split("/")[-1].split("_")[0]


def finding_keys(finding: dict) -> set[str]:
    """A recorded finding as the rule@family keys its violations carry (cosim mutate's key)."""
    return {f"{rule}@{test_family(str(t))}" for rule in finding.get("rules", [])
            for t in finding.get("tests", [])}


def for_areas(exp: Expectation, areas: Iterable[str]) -> Expectation:
    """The part of a kernel's expectations a run of only `areas` can show: the statuses of
    those areas' tests and the findings shown by their tests. The verdict is 'violations'
    when a finding remains, else the one the file states for other reasons (e.g.
    'incomplete' for a kernel without driver probes), else 'clean': a run of areas without a
    finding must show its attaches hitless, not only fire no rule."""
    wanted = set(areas)
    statuses = {n: s for n, s in exp.statuses.items() if area_of(n) in wanted}
    findings = []
    for f in exp.findings:
        tests = [t for t in f.get("tests", []) if area_of(str(t)) in wanted]
        if tests:
            findings.append({**f, "tests": tests})
    rules = {r for f in findings for r in f.get("rules", [])}
    if findings:
        verdict: str | None = "violations"
    else:
        verdict = exp.verdict if exp.verdict not in (None, "violations") else "clean"
    return Expectation(exp.kernel, statuses, rules, findings, verdict)


def observed_rules(summary: dict) -> set[str]:
    by_rule = ((summary.get("analysis") or {}).get("counts") or {}).get("by_rule") or {}
    return {r for r, n in by_rule.items() if n}


def mismatches(exp: Expectation, summary: dict) -> list[str]:
    """Every difference between what was expected and what the run showed, as sentences."""
    out = []
    seen = {t["name"]: t for t in summary.get("tests", [])}
    for name, t in seen.items():
        want = exp.statuses.get(name, "pass")
        if t["status"] != want:
            detail = "; ".join(t.get("output", [])[-6:])
            out.append(f"{name}: expected {want}, got {t['status']} {t.get('reason', '')} "
                       f"{detail}".rstrip())
    for name, want in exp.statuses.items():
        if name not in seen:
            out.append(f"{name}: expected {want}, but the run has no such test")
    verdict = (summary.get("analysis") or {}).get("verdict")
    if exp.verdict is not None and verdict is not None and verdict != exp.verdict:
        why = (summary.get("analysis") or {}).get("why", "")
        out.append(f"analysis: verdict {verdict}, expected {exp.verdict} {why}".rstrip())
    got = observed_rules(summary)
    for r in sorted(got - exp.rules):
        out.append(f"analysis: new violation of rule {r} (not in the expectations)")
    for r in sorted(exp.rules - got):
        out.append(f"analysis: recorded finding for rule {r} did not show up")
    return out
