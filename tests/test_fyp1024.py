"""The built-in fyp-1024 protocol: committed data, deterministic rebuild, renders that match the poses."""

import numpy as np
import pytest

from fypbench.cli import main
from fypbench.methods.reference import ReferenceGenerator
from fypbench.protocol import load_protocol
from fypbench.world.mini import fyp1024, splits
from fypbench.world.mini.grammar import parse
from fypbench.world.mini.world import MiniWorld, motion_spec


@pytest.fixture(scope="module")
def protocol():
    return load_protocol("fyp-1024")


def test_committed_data_validates_and_rebuild_gives_the_same_hash(protocol):
    assert len(protocol) == 1024
    assert fyp1024.build().hash == protocol.hash


def test_design_mix(protocol):
    sequences = {s.id[:3] for s in protocol.samples}
    assert len(sequences) == 64
    count = lambda key, value: sum(s.tags[key] == value for s in protocol.samples)  # noqa: E731
    assert count("motion_source", "real") == count("motion_source", "procedural") == 512
    assert count("combination", "unseen") == 256
    assert count("motion_split", "unseen") == 16 * 2 * 4 + 16  # 4 held-out humanoid clips twice + 1 walker
    for s in protocol.samples:
        parts = parse(s.prompt)
        assert splits.combination_split(parts.appearance, s.tags["motion"]) == s.tags["combination"]
        spec = motion_spec(s)
        if spec.kind == "procedural":
            assert splits.is_eval_seed(spec.seed)


def test_sample_seeds_are_distinct(protocol):
    assert len({s.seed for s in protocol.samples}) == 1024


def test_reference_render_matches_protocol_keypoints(protocol):
    world = MiniWorld()
    for sample in protocol.samples[::97]:
        video = world.render_reference(sample)
        np.testing.assert_allclose(video.keypoints, sample.keypoints, atol=1e-6)
        assert video.frames.shape == (8, 64, 64, 3)


def test_reference_generator_is_deterministic(protocol):
    generator = ReferenceGenerator()
    samples = protocol.samples[:2]
    a, b = generator.generate(samples), generator.generate(samples)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert len(generator.config_hash()) == 16


def test_world_render_writes_previews(tmp_path, capsys):
    assert main(["world", "render", "--protocol", "fyp-1024", "--sample", "s01p03", "--out", str(tmp_path)]) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["s01p03.gif", "s01p03.mp4", "s01p03_sheet.png"]
    assert all((tmp_path / n).stat().st_size > 1000 for n in names)


def test_world_render_unknown_sample_is_a_user_error(tmp_path, capsys):
    assert main(["world", "render", "--sample", "s01p3", "--out", str(tmp_path / "x")]) == 2
    assert "did you mean" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
