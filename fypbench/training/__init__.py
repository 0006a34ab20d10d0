"""Training recipes that are not method-specific (vae, base) and the loop utilities every recipe shares.

    python -m fypbench.training.vae --preset debug && python -m fypbench.training.base --preset debug

Each recipe module exposes `run(preset="mini", output_dir=None, resume=True, overrides=None) -> Path`.
"""

RECIPES = {"vae": "fypbench.training.vae:run", "base": "fypbench.training.base:run"}
