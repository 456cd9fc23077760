"""`python -m cosim.endpoint.regs --c-header`: the command guest-tests/include/cosim_ep.h names
as its generator. The register map and the generator live in cosim/arch/endpoint_regs.py."""

from __future__ import annotations

import sys

from cosim.arch.endpoint_regs import main

if __name__ == "__main__":
    sys.exit(main())
