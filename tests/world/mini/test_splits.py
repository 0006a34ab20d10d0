"""The split rule: training streams never contain what protocols hold out; the protocol helpers agree."""

from __future__ import annotations

import numpy as np
import pytest

from fypbench.seeding import SEED_BITS
from fypbench.world.mini import splits
from fypbench.world.mini.appearance import CHARACTERS, NEUTRAL, SCENES, STYLES, Appearance
from fypbench.world.mini.grammar import VERBS
from fypbench.world.mini.motion import PROCEDURAL_MOTIONS, REAL_CLIPS, MotionSpec
from fypbench.world.mini.streams import CaptionedImages, ImagePosePairs, PoseFreeVideos

ITEMS_PER_STREAM = 800  # x 3 streams = 2400 items


def test_tables_are_as_documented():
    assert "walker_turn_right1" in splits.HELD_OUT_CLIPS and len(splits.HELD_OUT_CLIPS) == 5
    assert splits.HELD_OUT_MOTIONS == {("real", name) for name in splits.HELD_OUT_CLIPS}
    assert set(splits.TRAIN_REAL_CLIPS) | set(splits.HELD_OUT_CLIPS) == set(REAL_CLIPS)
    assert ("hulk", "on the moon") in splits.HELD_OUT_CHARACTER_SCENE
    share = len(splits.HELD_OUT_CHARACTER_SCENE) / (len(CHARACTERS) * len(SCENES))
    assert 0.09 <= share <= 0.11
    for index in (0, 1):
        counts: dict[str, int] = {}
        for pair in splits.HELD_OUT_CHARACTER_SCENE:
            counts[pair[index]] = counts.get(pair[index], 0) + 1
        assert max(counts.values()) <= 2
    assert all(style for style, _ in splits.HELD_OUT_STYLE_CHARACTER)
    assert all(motion not in splits.HELD_OUT_CLIPS for motion, _ in splits.HELD_OUT_MOTION_CHARACTER)
    # the neutral source appearance stays trainable
    assert splits.train_allows(NEUTRAL, "walk")


def test_seed_spaces_are_disjoint_and_checkable():
    train = [splits.train_seed(stream, i) for stream in ("a", "b") for i in range(500)]
    evals = [splits.eval_seed("fyp-1024", i) for i in range(500)]
    evals += [splits.eval_seed("x", "motion", i) for i in range(500)]
    assert not any(splits.is_eval_seed(s) for s in train)
    assert all(splits.is_eval_seed(s) for s in evals)
    assert all(0 <= s < 2**SEED_BITS for s in train + evals)
    assert len(set(train)) == len(train) and len(set(evals)) == len(evals)
    assert splits.train_seed("a", 3) == splits.train_seed("a", 3) != splits.train_seed("b", 3)
    assert splits.eval_seed("p", 1) == splits.eval_seed("p", 1) != splits.eval_seed("p", 2)
    with pytest.raises(ValueError):
        splits.is_eval_seed(2**SEED_BITS)
    with pytest.raises(ValueError):
        splits.train_seed("a", -1)
    with pytest.raises(ValueError):
        splits.eval_seed()


@pytest.mark.parametrize("stream", [CaptionedImages(), ImagePosePairs(), PoseFreeVideos()],
                         ids=lambda s: type(s).__name__)
def test_training_streams_contain_nothing_held_out(stream):
    held_out_pairs = 0
    procedural = real = 0
    for index in range(ITEMS_PER_STREAM):
        spec = stream.motion_spec(index)
        parts = stream.prompt_parts(index)
        a = parts.appearance
        assert (spec.kind, spec.name) not in splits.HELD_OUT_MOTIONS
        assert spec.kind != "real" or spec.name in splits.TRAIN_REAL_CLIPS
        assert not splits.is_eval_seed(spec.seed)
        assert not splits.is_eval_seed(stream.background_seed(index))
        assert abs(spec.view) <= splits.TRAIN_VIEW_LIMIT_DEG
        assert (a.character, a.scene) not in splits.HELD_OUT_CHARACTER_SCENE
        assert (a.style, a.character) not in splits.HELD_OUT_STYLE_CHARACTER
        for motion, character in splits.HELD_OUT_MOTION_CHARACTER:
            assert not (a.character == character and VERBS[spec.name] == VERBS[motion])
        assert parts.verb in (None, VERBS[spec.name])
        assert splits.train_allows(a, spec.name) and splits.train_allows_spec(spec)
        assert splits.combination_split(a, spec.name) == "seen"
        held_out_pairs += bool(splits.held_out_pairs(a, None))
        procedural += spec.kind == "procedural"
        real += spec.kind == "real"
    assert held_out_pairs == 0
    assert procedural > ITEMS_PER_STREAM // 4 and real > ITEMS_PER_STREAM // 4


def test_protocol_helpers_are_consistent():
    rng = np.random.default_rng(0)
    motions = list(VERBS)
    unseen = 0
    for _ in range(3000):
        character = str(rng.choice(list(CHARACTERS)))
        appearance = Appearance(character, None, str(rng.choice(list(SCENES))), str(rng.choice(list(STYLES))))
        motion = str(rng.choice(motions))
        kinds = splits.held_out_pairs(appearance, motion)
        split = splits.combination_split(appearance, motion)
        assert (split == "unseen") == bool(kinds)
        assert splits.train_allows(appearance, motion) == (not kinds and motion not in splits.HELD_OUT_CLIPS)
        tags = splits.split_tags(appearance, motion, 30.0)
        assert tags["combination_split"] == split and tags["held_out_pairs"] == ",".join(kinds)
        assert tags["motion_split"] == ("unseen" if motion in splits.HELD_OUT_CLIPS else "seen")
        unseen += split == "unseen"
    assert 0.1 < unseen / 3000 < 0.4
    hulk_moon = Appearance("hulk", None, "on the moon")
    assert splits.held_out_pairs(hulk_moon, None) == ("character_scene",)
    assert not splits.train_allows(hulk_moon, None)
    # motion x character pairs compare verbs: the procedural dance shares "dancing" with dance_a
    astronaut = Appearance("astronaut", None, "in the park")
    assert splits.combination_split(astronaut, "dance") == "unseen"
    assert splits.combination_split(astronaut, "walk") == "seen"
    assert splits.view_split(90.0) == "seen" and splits.view_split(-90.0) == "seen"
    assert splits.view_split(120.0) == "unseen" and splits.view_split(180.0) == "unseen"
    assert splits.view_split(360.0) == "seen"
    with pytest.raises(ValueError):
        splits.motion_split("fly")


def test_train_allows_spec():
    assert splits.train_allows_spec(MotionSpec("real", "walk", seed=splits.train_seed("s", 0)))
    assert not splits.train_allows_spec(MotionSpec("real", "cartwheel"))
    assert not splits.train_allows_spec(MotionSpec("procedural", "walk", seed=splits.eval_seed("p", 0)))
    assert not splits.train_allows_spec(MotionSpec("procedural", "walk", view=135.0))
    assert all(splits.train_allows_spec(MotionSpec("procedural", name)) for name in PROCEDURAL_MOTIONS)
