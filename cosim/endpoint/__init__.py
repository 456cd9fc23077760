"""cosim-pcie-ep: the ATS-capable PCIe endpoint model (docs/endpoint.md)."""
