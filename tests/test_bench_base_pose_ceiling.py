"""benchmarks/bench_base_pose_ceiling.py: the frozen base started from the ground truth's noised latents."""

import numpy as np
import pytest

from tests.benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def world_and_sample():
    from fypbench.protocol import load_protocol, select_samples
    from fypbench.registry import WORLDS

    samples, _ = select_samples(load_protocol("fyp-1024"), "dev128", 1)
    return WORLDS.load("mini")(), samples[0]


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0**2 / mse)


def test_strength_zero_is_the_vae_round_trip_of_the_truth(world_and_sample):
    bench, (world, sample) = load_benchmark("bench_base_pose_ceiling"), world_and_sample
    truth = world.render_reference(sample).frames
    (round_trip,) = bench.truth_denoiser(world, 0.0).generate([sample])
    assert round_trip.shape == truth.shape and round_trip.dtype == np.uint8
    # 31.6 dB here (the VAE's bar is 28); frames reversed score 15.3, colour channels swapped 25.3
    assert psnr(round_trip, truth) > 28
    assert psnr(round_trip[::-1], truth) < psnr(round_trip, truth) - 3


def test_redrawing_departs_from_the_truth_deterministically(world_and_sample):
    bench, (world, sample) = load_benchmark("bench_base_pose_ceiling"), world_and_sample
    low, high = bench.truth_denoiser(world, 0.2), bench.truth_denoiser(world, 0.6)
    assert low.config_hash() != high.config_hash()
    truth = world.render_reference(sample).frames
    (first,), (again,), (far,) = low.generate([sample]), low.generate([sample]), high.generate([sample])
    np.testing.assert_array_equal(first, again)
    assert psnr(first, truth) > psnr(far, truth)


def test_bad_arguments_are_usage_errors():
    bench = load_benchmark("bench_base_pose_ceiling")
    for argv in (["--run-dir", "r", "--strengths", "1.0"], ["--run-dir", "r", "--strengths", "-0.1"],
                 ["--run-dir", "r", "--limit", "-1"], []):
        with pytest.raises(SystemExit) as exit_info:
            bench.parse_args(argv)
        assert exit_info.value.code == 2
    assert bench.parse_args(["--run-dir", "r"]).strengths == [0.0, 0.2, 0.4, 0.6, 0.8]


def test_an_unknown_subset_or_too_large_limit_exits_2_before_any_generation(tmp_path, capsys):
    bench = load_benchmark("bench_base_pose_ceiling")
    for argv in (["--subset", "nosuchsubset"], ["--limit", "129"]):
        assert bench.main(["--run-dir", str(tmp_path / "run"), *argv]) == 2
        assert capsys.readouterr().err.startswith("error: ")
    assert not (tmp_path / "run").exists()
