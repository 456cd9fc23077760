"""TAP 13 / KTAP parsing: guest test output and the kernel's KUnit results into results."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# "ok 3 - name # SKIP reason" / "not ok 1 name"
_RESULT = re.compile(r"^(?P<indent>\s*)(?P<ok>not ok|ok)\s+(?P<num>\d+)\s*(?:-\s*)?"
                     r"(?P<name>[^#]*?)\s*(?:#\s*(?P<directive>\w+)\s*(?P<reason>.*))?$")
_PLAN = re.compile(r"^\s*1\.\.(\d+)")
UNSUPPORTED_PREFIX = "not supported by this kernel"


@dataclass
class TapResult:
    name: str
    status: str  # "pass" | "fail" | "skip" | "unsupported"
    reason: str = ""
    output: list[str] = field(default_factory=list)  # diagnostics printed before the result


@dataclass
class TapReport:
    results: list[TapResult]
    planned: int | None
    problems: list[str]


def classify(ok: bool, directive: str | None, reason: str) -> str:
    if directive and directive.upper() == "SKIP":
        return "unsupported" if reason.lower().startswith(UNSUPPORTED_PREFIX) else "skip"
    if directive and directive.upper() == "TODO":
        return "fail" if not ok else "pass"
    return "pass" if ok else "fail"


def parse_tap(text: str, top_level_only: bool = True) -> TapReport:
    """Parse one TAP stream. Subtests (indented) are ignored when top_level_only."""
    results: list[TapResult] = []
    planned = None
    pending: list[str] = []
    problems: list[str] = []
    for raw in text.splitlines():
        line = raw.rstrip("\r")
        m = _RESULT.match(line)
        if m and (not top_level_only or not m.group("indent")):
            name = m.group("name").strip() or f"test {m.group('num')}"
            results.append(TapResult(name, classify(m.group("ok") == "ok", m.group("directive"),
                                                     (m.group("reason") or "").strip()),
                                     (m.group("reason") or "").strip(), pending))
            pending = []
            continue
        p = _PLAN.match(line)
        if p and planned is None and not line.startswith((" ", "\t")):
            planned = int(p.group(1))
            continue
        if line.strip().startswith("#") or line.strip():
            pending.append(line)
    if planned is not None and planned != len(results):
        problems.append(f"planned {planned} tests, saw {len(results)}")
    if planned is None and not results:
        problems.append("no TAP output")
    return TapReport(results, planned, problems)


_KUNIT_SUITE = re.compile(r"^\s*(?:\[\s*[\d.]+\]\s*)?(?P<indent>\s*)(?P<ok>not ok|ok)\s+\d+\s+"
                          r"(?P<name>[\w.-]+)(?:\s*#\s*(?P<directive>\w+)\s*(?P<reason>.*))?$")


def parse_kunit(console: str, suite_prefix: str = "arm-smmu-v3") -> list[TapResult]:
    """KUnit results, one per case, for suites named suite_prefix*, from a boot log."""
    results: list[TapResult] = []
    in_suite = False
    for raw in console.splitlines():
        line = re.sub(r"^\[\s*[\d.]+\]\s?", "", raw.rstrip("\r"))
        if re.match(r"^\s*# Subtest:\s*" + re.escape(suite_prefix), line):
            in_suite = True
            continue
        m = _KUNIT_SUITE.match(line)
        if not m:
            continue
        indented = bool(re.match(r"^\s+", line))
        if in_suite and indented:
            results.append(TapResult(m.group("name"),
                                     classify(m.group("ok") == "ok", m.group("directive"),
                                              (m.group("reason") or "").strip()),
                                     (m.group("reason") or "").strip()))
        elif not indented and m.group("name").startswith(suite_prefix):
            in_suite = False
    return results
