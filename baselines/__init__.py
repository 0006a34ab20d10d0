"""Baseline methods, one self-contained file each (installed as `fypbench.baselines`)."""
