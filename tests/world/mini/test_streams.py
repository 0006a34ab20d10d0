"""Training streams: deterministic, index-addressable, right shapes and dtypes, captions that parse."""

from __future__ import annotations

import numpy as np
import pytest

from fypbench.world.mini.camera import keypoints_normalised
from fypbench.world.mini.grammar import compose, parse
from fypbench.world.mini.streams import NOMINAL_LENGTH, CaptionedImages, ImagePosePairs, PoseFreeVideos


def _same(a, b) -> bool:
    if isinstance(a, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b))
    return a == b


def test_shapes_and_dtypes():
    image, caption = CaptionedImages()[0]
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8 and isinstance(caption, str)
    image, keypoints, caption = ImagePosePairs(size=32)[1]
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    assert keypoints.shape == (17, 3) and keypoints.dtype == np.float32
    assert set(np.unique(keypoints[:, 2])) <= {0.0, 1.0}
    video, caption = PoseFreeVideos(num_frames=4, stride=2)[2]
    assert video.shape == (4, 64, 64, 3) and video.dtype == np.uint8
    assert len(CaptionedImages()) == len(PoseFreeVideos()) == NOMINAL_LENGTH


@pytest.mark.parametrize("make", [CaptionedImages, ImagePosePairs, PoseFreeVideos])
def test_items_depend_only_on_name_and_index(make):
    forward = make()
    items = {i: forward[i] for i in (0, 1, 2, 3)}
    backward = make()
    for i in (3, 1, 2, 0, 3):  # another order, a repeat, another instance
        assert _same(backward[i], items[i])
    assert not _same(items[0], items[1])
    other = make(name="another-stream")
    assert not _same(other[0], items[0])
    assert other.motion_spec(0) != forward.motion_spec(0)


def test_large_indices_and_bad_indices():
    stream = CaptionedImages()
    image, caption = stream[NOMINAL_LENGTH - 1]
    assert image.shape == (64, 64, 3)
    with pytest.raises(IndexError):
        stream[NOMINAL_LENGTH]
    with pytest.raises(IndexError):
        stream[-1]
    with pytest.raises(TypeError):
        stream[1.5]
    with pytest.raises(ValueError):
        CaptionedImages(size=4)
    with pytest.raises(ValueError):
        PoseFreeVideos(num_frames=0)


def test_audit_helpers_agree_with_items():
    pairs = ImagePosePairs()
    for index in range(6):
        image, keypoints, caption = pairs[index]
        spec, parts = pairs.motion_spec(index), pairs.prompt_parts(index)
        assert caption == compose(parts) and parse(caption) == parts
        assert pairs.appearance(index) == parts.appearance
        assert spec.num_frames == 1
        np.testing.assert_array_equal(keypoints, keypoints_normalised(spec)[0])
        np.testing.assert_array_equal(image, pairs.render(index).frames[0])
    videos = PoseFreeVideos(num_frames=8, stride=4)
    spec = videos.motion_spec(0)
    assert (spec.num_frames, spec.stride, spec.fps) == (8, 4, 30.0)


def test_streams_mix_motion_kinds_and_vary_the_camera():
    stream = PoseFreeVideos()
    specs = [stream.motion_spec(i) for i in range(200)]
    assert {s.kind for s in specs} == {"real", "procedural"}
    assert len({s.name for s in specs}) > 15
    assert any(s.mirror for s in specs) and not all(s.mirror for s in specs)
    assert np.std([s.view for s in specs]) > 20.0
    procedural = [s for s in specs if s.kind == "procedural"]
    assert len({round(s.amplitude, 3) for s in procedural}) > 10 and any(s.jitter > 0 for s in procedural)
    real = [s for s in specs if s.kind == "real"]
    assert len({round(s.start, 3) for s in real}) > 10
