import numpy as np

from fypbench.stats import bootstrap_mean, bootstrap_statistic, paired_bootstrap_mean, paired_bootstrap_statistic


def test_bootstrap_mean_brackets_the_mean_and_is_reproducible():
    values = np.random.default_rng(0).normal(5.0, 1.0, 200)
    a, b = bootstrap_mean(values, seed=3), bootstrap_mean(values, seed=3)
    assert a == b
    assert a.ci_low < a.value < a.ci_high
    assert abs((a.ci_high - a.ci_low) - 2 * 1.96 / np.sqrt(200)) < 0.08  # normal-theory width


def test_nan_values_are_dropped_and_counted():
    est = bootstrap_mean([1.0, np.nan, 3.0])
    assert est.n == 2 and est.value == 2.0


def test_paired_bootstrap_detects_a_consistent_small_difference():
    rng = np.random.default_rng(1)
    base = rng.normal(0, 10, 300)  # large between-sample spread
    a, b = base + 0.5 + rng.normal(0, 0.1, 300), base
    paired = paired_bootstrap_mean(a, b)
    assert paired.ci_low > 0 and paired.p_not_greater == 0.0
    unpaired_a, unpaired_b = bootstrap_mean(a), bootstrap_mean(b)
    assert unpaired_a.ci_low < unpaired_b.ci_high  # the unpaired CIs overlap: pairing is what resolves it


def test_generic_statistic_matches_the_mean_fast_path():
    values = np.random.default_rng(2).uniform(size=50)
    fast = bootstrap_mean(values, replicates=300, seed=5)
    slow = bootstrap_statistic(lambda idx: values[idx].mean(), 50, replicates=300, seed=5)
    assert np.isclose(fast.ci_low, slow.ci_low) and np.isclose(fast.ci_high, slow.ci_high)
    a, b = values, values[::-1].copy()
    fast_p = paired_bootstrap_mean(a, b, replicates=300, seed=5)
    slow_p = paired_bootstrap_statistic(lambda i: a[i].mean(), lambda i: b[i].mean(), 50, replicates=300, seed=5)
    assert np.isclose(fast_p.ci_low, slow_p.ci_low)
