"""cosim: an Arm SMMUv3 and an ATS-capable PCIe endpoint modelled in Python, driven by a
real Linux guest in a patched QEMU over ZeroMQ."""

__version__ = "0.1.0"
