"""A minimal SMMU stand-in for endpoint unit tests and the endpoint bench.

It answers the three calls the endpoint makes (`translate`, `ats_translate`,
`check_translated`) from a dict of 4 KiB page mappings (or the identity), so the endpoint can
be tested without the real SMMU model. It is not an SMMU: no stream table, no faults queued.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PAGE = 4096


@dataclass
class FakeTranslation:
    ok: bool
    pa: int | None
    dom: str | None
    fault: str | None = None
    size: int = PAGE


@dataclass
class FakeAtsCompletion:
    status: str
    pa: int | None
    size: int
    perm: str
    dom: str | None


@dataclass
class FakeInvalidation:
    """Shaped like the SMMU's AtcInvalidation: records its completion."""

    sid: int
    ssid: int | None
    addr: int
    size: int | None
    global_: bool = False
    completed: int = 0

    def complete(self) -> None:
        self.completed += 1


@dataclass
class FakeSmmu:
    """Per-(sid, ssid) page tables: {iova_page: (pa_page, perm)}; identity when `identity`."""

    identity: bool = False
    dom: str = "dom1"
    eats: bool = True
    ats_size: int = PAGE
    tables: dict[tuple[int, int | None], dict[int, tuple[int, str]]] = field(
        default_factory=dict)
    calls: list[tuple[str, int, int | None, int]] = field(default_factory=list)
    devices: dict[int, Any] = field(default_factory=dict)

    def map(self, sid: int, ssid: int | None, iova: int, pa: int, size: int = PAGE,
            perm: str = "rw") -> None:
        table = self.tables.setdefault((sid, ssid), {})
        for off in range(0, size, PAGE):
            table[(iova + off) // PAGE] = ((pa + off) // PAGE, perm)

    def unmap(self, sid: int, ssid: int | None, iova: int, size: int = PAGE) -> None:
        table = self.tables.get((sid, ssid), {})
        for off in range(0, size, PAGE):
            table.pop((iova + off) // PAGE, None)

    def _lookup(self, sid: int, ssid: int | None, iova: int) -> tuple[int, str] | None:
        if self.identity:
            return iova // PAGE, "rw"
        return self.tables.get((sid, ssid), {}).get(iova // PAGE)

    def translate(self, sid: int, ssid: int | None, iova: int, access: Any) -> FakeTranslation:
        self.calls.append(("translate", sid, ssid, iova))
        hit = self._lookup(sid, ssid, iova)
        if hit is None or (access.write and "w" not in hit[1]):
            return FakeTranslation(False, None, self.dom, "F_TRANSLATION")
        return FakeTranslation(True, hit[0] * PAGE + iova % PAGE, self.dom)

    def ats_translate(self, sid: int, ssid: int | None, iova: int,
                      access: Any) -> FakeAtsCompletion:
        self.calls.append(("ats", sid, ssid, iova))
        base = iova & ~(self.ats_size - 1)
        hit = self._lookup(sid, ssid, base)
        if hit is None:
            return FakeAtsCompletion("UR", None, 0, "", self.dom)
        return FakeAtsCompletion("SUCCESS", hit[0] * PAGE, self.ats_size, hit[1], self.dom)

    def check_translated(self, sid: int, ssid: int | None) -> bool:
        return self.eats

    def attach_ats_device(self, sid: int, device: Any) -> None:
        self.devices[sid] = device
