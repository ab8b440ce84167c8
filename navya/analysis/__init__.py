"""Studies over many variants: pruning sweeps and per-block INT8 sensitivity."""
