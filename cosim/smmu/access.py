"""The attributes of one device access, as the SMMU sees them on an incoming transaction.

SMMUv3 §3.1 / §13: a transaction carries read/write direction, InD (instruction) and PnU
(privileged) attributes; permission checks in the walker and the ATS permission report use them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Access:
    """Direction and attributes of one access (read and write may both be set for ATS)."""

    read: bool = True
    write: bool = False
    exec: bool = False
    priv: bool = False

    @property
    def code(self) -> str:
        """Short form used in trace records: 'r'|'w'|'x' (+ 'p' if privileged)."""
        c = "x" if self.exec else ("w" if self.write else "r")
        return c + ("p" if self.priv else "")
