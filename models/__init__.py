"""Method models that live in their own folder (installed as `fypbench.models`)."""
