"""The SMMUv3 model (Arm IHI 0070): see docs/architecture.md for how the parts fit.

What devices see of it (Access, results, completions, invalidations) lives in
cosim/translation_agent.py, shared with the endpoint.
"""

from .options import SmmuOptions
from .smmu import SMMUv3
from .translation import Translation

__all__ = ["SMMUv3", "SmmuOptions", "Translation"]
