"""The architecture's declarations: every layout and identity the model, the analysis, the
tests' reference driver and the C header generators share, each declared once."""
