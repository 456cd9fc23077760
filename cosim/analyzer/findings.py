"""What the rules report: violations (the run is dirty) and warnings (worth a look, not proof)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .view import TraceView, fmt_t

# rule id -> (check letter, one-line statement)
RULES = {
    "inv1-old-domain": ("a", "after the attach returned, a translation from another domain than "
                             "the attached one was served, used or still held by the device"),
    "inv2-invalidated-atc": ("b", "after ATC_INV + CMD_SYNC completed, the device used an ATC "
                                  "entry the invalidation covered"),
    "inv2-invalidated-tlb": ("b", "caching modes: after the driver's invalidation of a domain's "
                                  "range returned, the SMMU served a translation of it from a "
                                  "TLB entry loaded before the call began"),
    "inv3-abort-during-attach": ("c", "during an attach, an abort or fault at an address both "
                                      "the old and the new domain map"),
    "inv3-neither-domain": ("c", "during an attach, the device got a translation from a domain "
                                 "that is neither the old nor the new one (a torn mix)"),
    "inv3-other-stream": ("c", "during an attach that changes one stream's domain, another "
                               "stream of the device (a PASID relying on ATS) failed at an "
                               "address its own domain maps, or had ATS Enable cleared under "
                               "it"),
    "entry-update": ("d", "the SMMU fetched an STE/CD state during an update that is illegal or "
                          "matches neither the old nor the new entry in a bit it uses"),
    "protocol-cfgi": ("f", "the driver's attach returned with an STE/CD the SMMU had fetched "
                           "changed in memory and no completed CFGI + CMD_SYNC since"),
    "protocol-cfgi-step": ("f", "an STE/CD was invalidated twice with no completed CMD_SYNC "
                                "between: a step of its update was written before the SMMU was "
                                "known to see the previous one"),
    "protocol-atc-sync": ("f", "the driver's attach returned before a CMD_SYNC completed "
                               "after an ATC_INV it issued"),
    "protocol-atc-order": ("f", "the attach's last ATC_INV came before its last configuration "
                                "invalidation, so the ATC can refill from the old domain"),
    "stale-cache": ("e", "caching mode: a translation was served from a cache entry that a "
                         "completed invalidation had removed"),
}
MAX_LISTED = 20  # offending record indices kept per violation


@dataclass
class Violation:
    rule: str
    index: int               # first offending record
    sid: int | None
    ssid: int | None
    message: str
    entries: dict[str, Any] = field(default_factory=dict)
    records: list[int] = field(default_factory=list)
    count: int = 1
    attach: int | None = None
    warning: bool = False
    # Where the rule found it, for a stable report order among findings at one record: the
    # rules' order, then each rule's own (see analysis.run).
    order: tuple = field(default=(), compare=False, repr=False)

    @property
    def check(self) -> str:
        return RULES[self.rule][0]

    def add(self, index: int) -> None:
        self.count += 1
        if len(self.records) < MAX_LISTED:
            self.records.append(index)

    def add_many(self, indices: list[int], count: int) -> None:
        """`count` more offences, the first of them at `indices` (in order)."""
        self.count += count
        room = MAX_LISTED - len(self.records)
        if room > 0:
            self.records.extend(indices[:room])

    def to_json(self, view: TraceView, timeline: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {
            "rule": self.rule, "check": self.check, "t": view.t_of(self.index),
            "line": view.line_of(self.index), "sid": self.sid, "ssid": self.ssid,
            "attach": self.attach, "count": self.count, "message": self.message,
            "entries": self.entries, "lines": [view.line_of(i) for i in self.records],
        }
        if timeline:
            d["timeline"] = view.timeline(self.index)
        return d

    def headline(self, view: TraceView) -> str:
        where = f"sid={self.sid}" + ("" if self.ssid is None else f" ssid={self.ssid}")
        more = f" (+{self.count - 1} more)" if self.count > 1 else ""
        att = f" attach #{self.attach}" if self.attach is not None else ""
        return (f"[{self.check}] {self.rule} at {fmt_t(view.t_of(self.index))} line "
                f"{view.line_of(self.index)} {where}{att}{more}: {self.message}")


class Collector:
    """Groups repeated offences (e.g. every DMA of a traffic generator) into one violation."""

    def __init__(self) -> None:
        self.items: list[Violation] = []
        self._by_group: dict[tuple, Violation] = {}

    def seen(self, group: tuple, index: int) -> Violation | None:
        """The violation already reported for this group, counting one more offence."""
        v = self._by_group.get(group)
        if v is not None:
            v.add(index)
        return v

    def get(self, group: tuple) -> Violation | None:
        return self._by_group.get(group)

    def new(self, group: tuple, v: Violation) -> Violation:
        v.records = [v.index]
        self._by_group[group] = v
        self.items.append(v)
        return v
