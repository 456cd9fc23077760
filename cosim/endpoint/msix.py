"""MSI-X table and Pending Bit Array (BAR2), and interrupt delivery as a DMA write.

PCIe Base spec, MSI-X: a vector whose Mask bit (or the Function Mask) is set latches its
Pending bit instead of sending; clearing the mask with the Pending bit set sends the message
and clears the bit. With MSI-X Enable clear the function may not use MSI-X: the event is lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from cosim.arch.endpoint_regs import MSIX_PBA_OFF, MSIX_TABLE_OFF, MSIX_VECTORS
from cosim.arch.pcie import (
    MSIX_CTRL_MASKED,
    MSIX_ENTRY_ADDR_HI,
    MSIX_ENTRY_ADDR_LO,
    MSIX_ENTRY_CTRL,
    MSIX_ENTRY_DATA,
    MSIX_ENTRY_SIZE,
)

log = logging.getLogger("cosim.endpoint")

_WORDS_PER_ENTRY = MSIX_ENTRY_SIZE // 4
_PBA_BYTES = 8 * ((MSIX_VECTORS + 63) // 64)
_CTRL_WORD = MSIX_ENTRY_CTRL // 4


class MsixTable:
    """Table words are stored as 32-bit words: [addr_lo, addr_hi, data, ctrl] per vector."""

    def __init__(self, send: Callable[[int, int], None], enabled: Callable[[], bool],
                 function_masked: Callable[[], bool]) -> None:
        self._send = send  # (address, data) -> the DMA write of the message
        self._enabled = enabled
        self._function_masked = function_masked
        self.reset()

    def reset(self) -> None:
        # Vector Control's Mask bit resets to 1; everything else to 0.
        self.words = [0] * (MSIX_VECTORS * _WORDS_PER_ENTRY)
        for v in range(MSIX_VECTORS):
            self.words[v * _WORDS_PER_ENTRY + _CTRL_WORD] = MSIX_CTRL_MASKED
        self.pending = 0

    # -- state -------------------------------------------------------------------------------

    def masked(self, vector: int) -> bool:
        return self._function_masked() or bool(
            self.words[vector * _WORDS_PER_ENTRY + _CTRL_WORD] & MSIX_CTRL_MASKED)

    def address(self, vector: int) -> int:
        base = vector * _WORDS_PER_ENTRY
        return (self.words[base + MSIX_ENTRY_ADDR_HI // 4] << 32) | \
            self.words[base + MSIX_ENTRY_ADDR_LO // 4]

    def data(self, vector: int) -> int:
        return self.words[vector * _WORDS_PER_ENTRY + MSIX_ENTRY_DATA // 4]

    # -- events ------------------------------------------------------------------------------

    def signal(self, vector: int) -> None:
        """The function wants to interrupt on `vector`."""
        if not 0 <= vector < MSIX_VECTORS:
            return
        if not self._enabled():
            log.info("MSI-X vector %d lost: MSI-X Enable is clear", vector)
            return
        if self.masked(vector):
            self.pending |= 1 << vector
            return
        self._send(self.address(vector), self.data(vector))

    def unmasked(self) -> None:
        """A mask changed: send every pending vector that is no longer masked."""
        if not self._enabled():
            return
        for v in range(MSIX_VECTORS):
            if self.pending >> v & 1 and not self.masked(v):
                self.pending &= ~(1 << v)
                self._send(self.address(v), self.data(v))

    # -- BAR access --------------------------------------------------------------------------

    def mmio_read(self, offset: int, size: int) -> int | None:
        """Value read, or None when nothing is decoded there (the caller counts it)."""
        if size not in (4, 8) or offset % size:
            return None
        table_end = MSIX_TABLE_OFF + MSIX_VECTORS * MSIX_ENTRY_SIZE
        if MSIX_TABLE_OFF <= offset < table_end:
            i = (offset - MSIX_TABLE_OFF) // 4
            value = self.words[i]
            if size == 8:
                value |= self.words[i + 1] << 32
            return value
        if MSIX_PBA_OFF <= offset < MSIX_PBA_OFF + _PBA_BYTES:
            shift = (offset - MSIX_PBA_OFF) * 8
            return (self.pending >> shift) & ((1 << (8 * size)) - 1)
        return None

    def mmio_write(self, offset: int, size: int, value: int) -> bool:
        """Apply a table write (the PBA is read-only); False when nothing is decoded there."""
        if size not in (4, 8) or offset % size:
            return False
        table_end = MSIX_TABLE_OFF + MSIX_VECTORS * MSIX_ENTRY_SIZE
        if MSIX_TABLE_OFF <= offset < table_end:
            i = (offset - MSIX_TABLE_OFF) // 4
            self.words[i] = value & 0xFFFFFFFF
            if size == 8:
                self.words[i + 1] = (value >> 32) & 0xFFFFFFFF
            # Only the Mask bit of Vector Control is writable; the rest is reserved.
            for w in (i, i + 1) if size == 8 else (i,):
                if w % _WORDS_PER_ENTRY == _CTRL_WORD:
                    self.words[w] &= MSIX_CTRL_MASKED
            self.unmasked()
            return True
        if MSIX_PBA_OFF <= offset < MSIX_PBA_OFF + _PBA_BYTES:
            return True  # read-only: writes ignored
        return False
