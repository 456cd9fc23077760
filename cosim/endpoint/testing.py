"""A minimal SMMU stand-in for endpoint unit tests and the endpoint bench.

It is a `TranslationAgent` (cosim/translation_agent.py), the same interface the real SMMU
model offers: it answers `translate`, `ats_translate` and `check_translated` from a dict of
4 KiB page mappings (or the identity), so the endpoint can be tested without the real SMMU
model. It is not an SMMU: no stream table, no faults queued.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cosim.arch.domain import Domain
from cosim.translation_agent import (
    Access,
    AtsCompletion,
    AtsDevice,
    AtsStatus,
    Permissions,
    TranslationResult,
)

PAGE = 4096
# The domain every fake translation names.
FAKE_DOMAIN = Domain.stage1(1, 0x1000)


@dataclass
class FakeSmmu:
    """Per-(sid, ssid) page tables: {iova_page: (pa_page, perm)}; identity when `identity`."""

    identity: bool = False
    dom: Domain = FAKE_DOMAIN
    eats: bool = True
    ats_size: int = PAGE
    tables: dict[tuple[int, int | None], dict[int, tuple[int, str]]] = field(
        default_factory=dict)
    calls: list[tuple[str, int, int | None, int]] = field(default_factory=list)
    devices: dict[int, AtsDevice] = field(default_factory=dict)

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

    def translate(self, sid: int, ssid: int | None, iova: int,
                  access: Access) -> TranslationResult:
        self.calls.append(("translate", sid, ssid, iova))
        hit = self._lookup(sid, ssid, iova)
        if hit is None or (access.write and "w" not in hit[1]):
            return TranslationResult(False, dom=self.dom, fault="F_TRANSLATION")
        return TranslationResult(True, hit[0] * PAGE + iova % PAGE, PAGE,
                                 Permissions.from_code(hit[1]), self.dom)

    def ats_translate(self, sid: int, ssid: int | None, iova: int,
                      access: Access) -> AtsCompletion:
        self.calls.append(("ats", sid, ssid, iova))
        base = iova & ~(self.ats_size - 1)
        hit = self._lookup(sid, ssid, base)
        if hit is None:
            return AtsCompletion(AtsStatus.UR)
        return AtsCompletion(AtsStatus.SUCCESS, hit[0] * PAGE, self.ats_size,
                             Permissions.from_code(hit[1]), self.dom)

    def check_translated(self, sid: int, ssid: int | None, addr: int = 0,
                         write: bool = False) -> bool:
        return self.eats

    def attach_ats_device(self, sid: int, device: AtsDevice) -> None:
        self.devices[sid] = device
