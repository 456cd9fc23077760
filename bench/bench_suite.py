"""What bounds `make test`: the work of its end-to-end tests, read from pytest's JUnit XML.

The end-to-end part runs on a fixed number of pytest-xdist workers, and each of its tests is
mostly one guest run that keeps about one core busy. So its wall time cannot be less than the
larger of (the sum of its tests' times) / workers and its longest single test; `make test` adds
its unit part, which runs before it. `floor` computes that from the JUnit XML pytest writes
(`--junitxml`), which carries each test's setup + call + teardown time (a shared fixture's
guest run counts in the setup of the first test that needs it).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Case:
    name: str      # file::test, as pytest names it
    seconds: float


@dataclass(frozen=True)
class Floor:
    cases: tuple[Case, ...]
    workers: int

    @property
    def work(self) -> float:
        return sum(c.seconds for c in self.cases)

    @property
    def longest(self) -> Case | None:
        return max(self.cases, key=lambda c: c.seconds, default=None)

    @property
    def seconds(self) -> float:
        """The least wall time the cases allow on `workers` workers."""
        longest = self.longest.seconds if self.longest else 0.0
        return max(self.work / self.workers, longest)

    def explain(self, top: int = 5) -> str:
        slow = sorted(self.cases, key=lambda c: -c.seconds)[:top]
        return (f"{len(self.cases)} end-to-end tests, {self.work:,.0f} s of work on "
                f"{self.workers} workers: at least {self.seconds:,.0f} s; the slowest: "
                + ", ".join(f"{c.name.rsplit('::', 1)[-1]} {c.seconds:.0f} s" for c in slow))


class JUnitError(ValueError):
    pass


def cases(junit: Path) -> tuple[Case, ...]:
    """Every test case in a pytest JUnit XML file, with its time."""
    try:
        root = ET.parse(junit).getroot()
    except (OSError, ET.ParseError) as e:
        raise JUnitError(f"{junit}: not a JUnit XML file ({e})") from None
    out = []
    for tc in root.iter("testcase"):
        try:
            seconds = float(tc.get("time", ""))
        except ValueError:
            raise JUnitError(f"{junit}: test case {tc.get('name')!r} has no time") from None
        cls = tc.get("classname", "")
        out.append(Case(f"{cls.replace('.', '/')}.py::{tc.get('name', '')}", seconds))
    return tuple(out)


def floor(junit: Path, workers: int) -> Floor:
    return Floor(cases(junit), workers)
