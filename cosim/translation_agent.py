"""The interface between a PCIe function and its translation agent (the SMMU).

PCIe ATS names the parts: the function issues untranslated requests, which the translation
agent (TA) translates, and, with ATS, Translation Requests whose completions it caches in its
ATC, then translated requests; the TA sends Invalidate Requests that the function completes.
SMMUv3 §3.9 describes the SMMU's side of it. This module holds everything both sides see,
so the endpoint (`cosim/endpoint/`) never imports the SMMU model and the SMMU never imports
the endpoint:

* `Access`, the attributes of one request;
* `TranslationResult` (untranslated request), `AtsCompletion` (Translation Completion),
  with typed `Permissions` and the `Domain` that produced them (None: no domain did);
* `AtcInvalidation`, one Invalidate Request; the function calls `complete()`, which only
  records the completion: the SMMU's command queue polls for it (§4.7.3);
* the two Protocols: `TranslationAgent` (the SMMU) and `AtsDevice` (the function).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Protocol, runtime_checkable

from cosim.arch.domain import Domain

# An invalidation of this size or more covers the whole 64-bit address space.
ADDRESS_SPACE = 1 << 64


@dataclass(frozen=True, slots=True)
class Access:
    """Direction and attributes of one access (read and write may both be set for ATS).

    SMMUv3 §3.1 / §13: a transaction carries read/write direction, InD (instruction) and PnU
    (privileged) attributes; permission checks in the walker and the ATS permission report
    use them.
    """

    read: bool = True
    write: bool = False
    exec: bool = False
    priv: bool = False

    @property
    def code(self) -> str:
        """Short form used in trace records: 'r'|'w'|'x' (+ 'p' if privileged)."""
        c = "x" if self.exec else ("w" if self.write else "r")
        return c + ("p" if self.priv else "")


@dataclass(frozen=True, slots=True)
class Permissions:
    """What a translation allows; `priv`: these are the rights of a privileged access
    (the PCIe Translation Completion's R, W, Exe and Priv bits)."""

    read: bool = False
    write: bool = False
    exec: bool = False
    priv: bool = False

    @staticmethod
    def from_code(code: str, priv: bool = False) -> Permissions:
        """From the trace form, a subset of 'rwx'."""
        return Permissions("r" in code, "w" in code, "x" in code, priv)

    @property
    def code(self) -> str:
        """The trace form: a subset of 'rwx' in that order (no privilege marker)."""
        return ("r" if self.read else "") + ("w" if self.write else "") + \
            ("x" if self.exec else "")

    def allows(self, access: Access) -> bool:
        return ((not access.read or self.read) and (not access.write or self.write)
                and (not access.exec or self.exec))


NO_ACCESS = Permissions()


@dataclass(frozen=True, slots=True)
class TranslationResult:
    """An untranslated request as the SMMU translated it (§3.3): where it goes, or why not.

    `fault` is the event the SMMU reported (None: success, or a silent abort); `dom` is the
    domain that translated or faulted it, None when no domain did (a configuration error).
    """

    ok: bool
    pa: int = 0
    size: int = 0
    perm: Permissions = NO_ACCESS
    dom: Domain | None = None
    fault: str | None = None


class AtsStatus(Enum):
    """PCIe Translation Completion status (SMMUv3 §3.9.1)."""

    SUCCESS = "SUCCESS"
    UR = "UR"   # Unsupported Request: ATS is not available for this stream
    CA = "CA"   # Completer Abort: the SMMU could not produce a translation


@dataclass(frozen=True, slots=True)
class AtsCompletion:
    """The answer to an ATS Translation Request. A SUCCESS with no permission is how a
    translation fault is reported (§3.9.1); `dom` is None when no domain answered."""

    status: AtsStatus
    pa: int = 0
    size: int = 0
    perm: Permissions = NO_ACCESS
    dom: Domain | None = None


@dataclass(eq=False)
class AtcInvalidation:
    """One ATS Invalidate Request (from CMD_ATC_INV, §4.5.1): [addr, addr+size) for the
    StreamID, one PASID (ssid) or every PASID (ssid None, or global_ with a PASID).

    `id` is the SMMU's number for it, which both sides' trace records carry. The function
    calls `complete()` once its ATC no longer holds the range; that only records the
    completion, which the SMMU's command queue notices when it next looks (§4.7.3).
    """

    sid: int
    ssid: int | None
    addr: int
    size: int
    global_: bool
    id: int
    completions: int = 0

    def complete(self) -> None:
        self.completions += 1

    @property
    def done(self) -> bool:
        return self.completions > 0

    @property
    def whole(self) -> bool:
        """It covers the whole address space."""
        return self.size >= ADDRESS_SPACE


@runtime_checkable
class AtsDevice(Protocol):
    """The function's side: it receives the SMMU's Invalidate Requests."""

    def ats_invalidate(self, inv: AtcInvalidation) -> None: ...


@runtime_checkable
class TranslationAgent(Protocol):
    """The SMMU's side, called on behalf of a StreamID (= the function's requester ID)."""

    def translate(self, sid: int, ssid: int | None, iova: int,
                  access: Access) -> TranslationResult:
        """An untranslated request (§3.3)."""
        ...

    def ats_translate(self, sid: int, ssid: int | None, iova: int,
                      access: Access) -> AtsCompletion:
        """An ATS Translation Request (§3.9.1)."""
        ...

    def check_translated(self, sid: int, ssid: int | None, addr: int = 0,
                         write: bool = False) -> bool:
        """May a translated request from this stream to PA `addr` pass (§3.9.1.3, STE.EATS)?"""
        ...

    def attach_ats_device(self, sid: int, device: AtsDevice) -> None:
        """The function behind `sid` receives the ATC invalidations for it."""
        ...
