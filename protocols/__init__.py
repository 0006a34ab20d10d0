"""Built-in protocol data (installed as `fypbench.protocols`): one folder per protocol."""

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent
