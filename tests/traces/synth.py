"""Synthetic trace builder for the analyzer tests: literal records, written as JSON lines.

`dom` arguments are `Domain`s (or None: no domain translated the request); they are written
in the trace's form, `Domain.to_record()` objects, as the model's trace writer does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cosim.arch.bitfield import Layout
from cosim.arch.cd import CD
from cosim.arch.domain import Domain
from cosim.arch.ste import STE
from cosim.trace import SCHEMA

DOM_A = Domain.stage1(1, 0x40000)
DOM_B = Domain.stage1(2, 0x80000)
SID = 8
DEV = 1


def pack(table: Layout, **fields: int) -> list[int]:
    """The qwords of an STE or CD with these fields, through the model's own layouts."""
    return table.encode_words(**fields)


def ste_s1(ctxptr: int) -> list[int]:
    return pack(STE, V=1, Config=0b101, S1ContextPtr=ctxptr >> 6, S1DSS=0b10, EATS=1)


def ste_abort() -> list[int]:
    return pack(STE, V=1, Config=0b000)


def ste_bypass() -> list[int]:
    return pack(STE, V=1, Config=0b100, SHCFG=1)


def cd(asid: int, ttb: int) -> list[int]:
    return pack(CD, V=1, ASID=asid, TTB0=ttb >> 4, EPD1=1, AA64=1, T0SZ=16)


def _record(obj: object) -> object:
    if isinstance(obj, Domain):
        return obj.to_record()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


class Synth:
    def __init__(self, **header: Any) -> None:
        self.header = {"t": 0, "k": "header", "schema": SCHEMA, "wall": 0.0,
                       "cache_mode": "coherent",
                       **header}
        self.recs: list[dict[str, Any]] = []
        self.t = 0
        self.cmd_idx = 0

    def emit(self, k: str, **fields: Any) -> int:
        self.t += 1000
        self.recs.append({"t": self.t, "k": k, **fields})
        return len(self.recs) - 1

    # -- SMMU side ---------------------------------------------------------------------------
    def xlate(self, iova: int, dom: Domain | None, ok: bool = True, sid: int = SID,
              ssid: int | None = None, acc: str = "r", pa: int | None = None, size: int = 4096,
              tlb: bool = False, fault: str | None = None, perm: str = "rw",
              silent: bool = False) -> int:
        return self.emit("xlate", sid=sid, ssid=ssid, iova=iova, acc=acc, ok=ok,
                         pa=(pa if pa is not None else iova + 0x1000_0000) if ok else 0,
                         size=size if ok else 0, perm=perm if ok else "", dom=dom, ste=None,
                         cd=None, tlb=tlb,
                         fault=None if ok or silent else (fault or "F_TRANSLATION"))

    def ats(self, iova: int, dom: Domain | None, status: str = "SUCCESS", sid: int = SID,
            ssid: int | None = None, size: int = 4096, tlb: bool = False,
            pa: int | None = None) -> int:
        return self.emit("ats", sid=sid, ssid=ssid, iova=iova, acc="w", status=status,
                         pa=iova + 0x1000_0000 if pa is None else pa, size=size, perm="rw",
                         dom=dom, tlb=tlb)

    def cmd(self, op: str, **f: Any) -> int:
        self.cmd_idx += 1
        return self.emit("cmd", idx=self.cmd_idx, op=op, f=f, raw=[0, 0])

    def sync(self, state: str = "done") -> int:
        self.cmd("CMD_SYNC", CS=0)
        if state == "wait":
            return self.emit("sync", idx=self.cmd_idx, cs="NONE", state="wait")
        return self.emit("sync", idx=self.cmd_idx, cs="NONE", state=state)

    def cfgi(self, op: str = "CFGI_STE", sid: int = SID, **f: Any) -> int:
        self.cmd(op, StreamID=sid)
        return self.emit("cfgi", op=op, sid=sid, **f)

    def tlbi(self, op: str, **f: Any) -> int:
        self.cmd(op)
        return self.emit("tlbi", op=op, n=f.pop("n", 1), **f)

    def atc_inv(self, inv_id: int, addr: int = 0, size: int = 1 << 52, sid: int = SID,
                ssid: int | None = None) -> int:
        self.cmd("ATC_INV")
        return self.emit("atc_inv", sid=sid, ssid=ssid, addr=addr, size=size, g=False, id=inv_id)

    def ste(self, qw: list[int], cached: bool = False, legal: bool = True, sid: int = SID,
            cfg: str | None = None) -> int:
        return self.emit("ste_fetch", sid=sid, addr=0x1000 + sid * 64, qw=qw, cached=cached,
                         cfg=cfg or "s1", legal=legal)

    def cd(self, qw: list[int], ssid: int = 0, cached: bool = False, legal: bool = True,
           sid: int = SID) -> int:
        return self.emit("cd_fetch", sid=sid, ssid=ssid, addr=0x9000 + ssid * 64, qw=qw,
                         cached=cached, legal=legal)

    def event(self, name: str, addr: int, sid: int = SID, ssid: int | None = None) -> int:
        return self.emit("event", name=name, code=0x10, sid=sid, ssid=ssid, addr=addr, raw=[0] * 4)

    # -- endpoint side -----------------------------------------------------------------------
    def drv(self, phase: str, dom: Domain | None, op: str = "attach", sid: int = SID,
            ssid: int | None = None, ret: int = 0, target: str = "paging") -> int:
        """A driver-probe record as the SMMU model writes it (cosim/smmu/smmu.py)."""
        return self.emit("drv", op=op, phase=phase, target=target, sid=sid, ssid=ssid,
                         ret=ret if phase == "end" else None, dom=dom, ste=None, cd=None,
                         cd_addr=None)

    def marker(self, tag: str, value: int = 0, dev: int = DEV, label: str = "") -> int:
        return self.emit("marker", dev=dev, tag=tag, value=value, label=label)

    def dma(self, iova: int, dom: Domain | None, ok: bool = True, ats: bool = False,
            atc_id: int | None = None, dev: int = DEV, sid: int = SID, ssid: int | None = None,
            rw: str = "r", err: str | None = None) -> int:
        return self.emit("dma", dev=dev, sid=sid, ssid=ssid, iova=iova,
                         pa=iova + 0x1000_0000 if ok else None, len=64, rw=rw, ats=ats, ok=ok,
                         atc_id=atc_id, dom=dom, err=err if not ok else None, src="engine",
                         seq=None)

    def atc_insert(self, entry_id: int, iova: int, dom: Domain | None, size: int = 4096,
                   ssid: int | None = None, dev: int = DEV, sid: int = SID) -> int:
        return self.emit("atc_insert", dev=dev, sid=sid, ssid=ssid, iova=iova, size=size,
                         pa=iova + 0x1000_0000, perm="rw", dom=dom, id=entry_id)

    def atc_hit(self, entry_id: int, iova: int, dom: Domain | None, ssid: int | None = None,
                dev: int = DEV, sid: int = SID) -> int:
        return self.emit("atc_hit", dev=dev, sid=sid, ssid=ssid, iova=iova, id=entry_id, dom=dom)

    # -- composite ---------------------------------------------------------------------------
    def translate(self, iova: int, dom: Domain | None, **kw: Any) -> None:
        """An untranslated DMA: the SMMU's xlate then the device's dma record."""
        ok = kw.pop("ok", True)
        self.xlate(iova, dom, ok=ok, **kw)
        self.dma(iova, dom, ok=ok, err=None if ok else "fault:F_TRANSLATION",
                 sid=kw.get("sid", SID), ssid=kw.get("ssid"))

    def write(self, path: Path, torn: str | None = None) -> Path:
        lines = [json.dumps(self.header)] + [json.dumps(r, default=_record) for r in self.recs]
        text = "\n".join(lines) + "\n"
        if torn is not None:
            text += torn
        path.write_text(text)
        return path
