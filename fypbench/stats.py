"""Uncertainty for leaderboards: percentile bootstrap over sample ids, plain and paired.

    python -c "import numpy as np; from fypbench.stats import bootstrap_mean; print(bootstrap_mean(np.arange(10.0)))"

Resampling unit = sample id (metrics.md §6). Paired comparisons resample the ids jointly, so both methods are
scored on the same resampled set, on the intersection of the samples both completed. The RNG seed is fixed and
recorded, so a CI is reproducible.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

DEFAULT_REPLICATES = 2000
DEFAULT_SEED = 20240401
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Estimate:
    value: float
    ci_low: float
    ci_high: float
    n: int
    replicates: int
    seed: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass(frozen=True)
class PairedEstimate:
    difference: float  # statistic(A) - statistic(B) on the common samples
    ci_low: float
    ci_high: float
    p_not_greater: float  # share of replicates with difference <= 0
    n: int
    replicates: int
    seed: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _percentiles(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return float("nan"), float("nan")
    alpha = (1.0 - CONFIDENCE) / 2
    low, high = np.quantile(finite, [alpha, 1.0 - alpha])
    return float(low), float(high)


def _indices(n: int, replicates: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(replicates, n))


def bootstrap_mean(values: Sequence[float] | np.ndarray, replicates: int = DEFAULT_REPLICATES,
                   seed: int = DEFAULT_SEED) -> Estimate:
    """Mean of per-sample values (NaN values are dropped first and not counted in n)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0, replicates, seed)
    means = values[_indices(values.size, replicates, seed)].mean(axis=1)
    low, high = _percentiles(means)
    return Estimate(float(values.mean()), low, high, int(values.size), replicates, seed)


def bootstrap_statistic(statistic: Callable[[np.ndarray], float], n: int, replicates: int = DEFAULT_REPLICATES,
                        seed: int = DEFAULT_SEED) -> Estimate:
    """Any statistic of a set of samples given as an index array (e.g. pooled AP over the samples' frames)."""
    if n == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0, replicates, seed)
    value = float(statistic(np.arange(n)))
    draws = np.array([statistic(idx) for idx in _indices(n, replicates, seed)], dtype=np.float64)
    low, high = _percentiles(draws)
    return Estimate(value, low, high, n, replicates, seed)


def paired_bootstrap_mean(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray,
                          replicates: int = DEFAULT_REPLICATES, seed: int = DEFAULT_SEED) -> PairedEstimate:
    """mean(a) - mean(b) over samples where both are finite (a[i], b[i] belong to the same sample)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values need the same shape, got {a.shape} and {b.shape}")
    keep = np.isfinite(a) & np.isfinite(b)
    diff = a[keep] - b[keep]
    if diff.size == 0:
        return PairedEstimate(float("nan"), float("nan"), float("nan"), float("nan"), 0, replicates, seed)
    draws = diff[_indices(diff.size, replicates, seed)].mean(axis=1)
    low, high = _percentiles(draws)
    return PairedEstimate(float(diff.mean()), low, high, float((draws <= 0).mean()), int(diff.size), replicates,
                          seed)


def paired_bootstrap_statistic(statistic_a: Callable[[np.ndarray], float],
                               statistic_b: Callable[[np.ndarray], float], n: int,
                               replicates: int = DEFAULT_REPLICATES, seed: int = DEFAULT_SEED) -> PairedEstimate:
    """statistic_a - statistic_b with both evaluated on the same resampled index set (common samples 0..n-1)."""
    if n == 0:
        return PairedEstimate(float("nan"), float("nan"), float("nan"), float("nan"), 0, replicates, seed)
    full = np.arange(n)
    value = float(statistic_a(full) - statistic_b(full))
    draws = np.array([statistic_a(idx) - statistic_b(idx) for idx in _indices(n, replicates, seed)])
    low, high = _percentiles(draws)
    return PairedEstimate(value, low, high, float((draws <= 0).mean()), n, replicates, seed)
