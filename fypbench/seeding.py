"""Seeds derived from (base seed, sample id[, method name]) only.

Never from process rank, batch position, job order or wall time: a sample's initial noise is the same
for every method (paired comparisons) and for every process count.
"""

from __future__ import annotations

import hashlib

import numpy as np

SEED_BITS = 63


def derive_seed(*parts: object) -> int:
    """A stable 63-bit seed from the parts' text (sha256; independent of PYTHONHASHSEED)."""
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little") >> (64 - SEED_BITS)


def sample_seed(base_seed: int, sample_id: str) -> int:
    """The per-sample seed stored in a protocol: fixes the sample's initial noise for every method."""
    return derive_seed("sample", base_seed, sample_id)


def method_seed(sample_seed_value: int, method: str, purpose: str = "") -> int:
    """Method-private randomness (e.g. a method's own augmentation) for one sample."""
    return derive_seed("method", sample_seed_value, method, purpose)


def numpy_rng(*parts: object) -> np.random.Generator:
    return np.random.default_rng(derive_seed(*parts))


def initial_noise(seed: int, shape: tuple[int, ...], dtype=None, device=None):
    """The shared initial latent noise of a sample: a CPU torch generator seeded by the sample seed.

    Drawn on the CPU in float32 and then moved, so every device and dtype starts from the same numbers.
    """
    import torch

    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    noise = torch.randn(shape, generator=generator, dtype=torch.float32)
    return noise.to(device=device or "cpu", dtype=dtype or torch.float32)
