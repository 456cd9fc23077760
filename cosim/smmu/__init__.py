"""The SMMUv3 model (Arm IHI 0070): see docs/architecture.md for how the parts fit."""

from .access import Access
from .ats import AtcInvalidation, AtsCompletion
from .options import SmmuOptions
from .smmu import SMMUv3
from .translation import Translation

__all__ = ["SMMUv3", "SmmuOptions", "Access", "Translation", "AtsCompletion",
           "AtcInvalidation"]
