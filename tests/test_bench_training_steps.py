"""benchmarks/bench_training_steps.py loads each export into the method's own generator, next to the shipped one."""

import pytest

from tests.benchmark_scripts import load_benchmark


@pytest.mark.parametrize("method, shipped", [("followpose-stage1", "followpose"), ("controlnet", "controlnet"),
                                             ("t2i-adapter", "t2i-adapter")])
def test_exports_load_into_the_methods_generator(method, shipped):
    from fypbench.registry import METHODS, WORLDS

    bench, world = load_benchmark("bench_training_steps"), WORLDS.load("mini")()
    folder = world.method_weights(shipped)
    default = bench.make_generator(method, world, None, {"unconditional_pose": True})
    export = bench.make_generator(method, world, folder, {"unconditional_pose": False})
    assert type(default) is type(export) is METHODS.load(method)
    assert default.unconditional_pose and not export.unconditional_pose
    assert default.config()["weights"] == export.config()["weights"]  # no folder = the shipped one


def test_bad_arguments_are_usage_errors(capsys):
    bench = load_benchmark("bench_training_steps")
    for argv in (["--run-dir", "r", "--method", "masactrl", "a=b"], ["--run-dir", "r", "shipped=x"],
                 ["--run-dir", "r", "a=x", "a=y"], ["--run-dir", "r", "nofolder"]):
        with pytest.raises(SystemExit) as exit_info:
            bench.parse_args(argv)
        assert exit_info.value.code == 2
    assert bench.parse_args(["--run-dir", "r", "a=x"]).method == "followpose-stage1"
