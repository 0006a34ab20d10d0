"""fypbench: train, run and compare pose-guided text-to-video generators.

    fypbench --help

Heavy modules (torch, diffusers) are imported lazily by the commands that need them.
"""

__version__ = "0.1.0"
