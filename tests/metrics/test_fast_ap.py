import numpy as np
import pytest

from fypbench.metrics.fast_ap import KeypointAPTable
from fypbench.metrics.pose import FrameDetections, coco_keypoint_ap


def _frames(seed, n=60, ties=False):
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n):
        gt = np.zeros((17, 3))
        gt[:, :2] = rng.uniform(10, 54, size=(17, 2))
        gt[:, 2] = np.where(rng.random(17) < 0.9, 2.0, 0.0)
        if i % 17 == 0:
            gt[:, 2] = 0.0  # no visible GT: ignored by COCOeval
        k = int(rng.integers(0, 4))
        dets = gt[None, :, :].repeat(k, 0).copy()
        dets[..., :2] += rng.normal(0, rng.uniform(0.5, 8.0), size=(k, 17, 2))
        dets[..., 2] = 1.0
        scores = rng.choice([0.5, 0.9], size=k) if ties else rng.uniform(size=k)
        frames.append((gt, FrameDetections(dets, scores)))
    return frames


@pytest.mark.parametrize("seed,ties", [(0, False), (1, False), (2, True), (3, True)])
def test_matches_cocoeval(seed, ties):
    frames = _frames(seed, ties=ties)
    expected = coco_keypoint_ap(frames)
    got = KeypointAPTable(frames).ap()
    for key in ("ap", "ap50", "ap75", "ar"):
        assert got[key] == pytest.approx(expected[key], abs=1e-9), key


def test_resampled_images_match_cocoeval_on_the_resampled_frames():
    frames = _frames(5)
    table = KeypointAPTable(frames)
    kept = [f for f in frames if f[0][:, 2].any()]
    pick = np.random.default_rng(0).integers(0, len(kept), len(kept))
    assert table.ap(pick)["ap"] == pytest.approx(coco_keypoint_ap([kept[i] for i in pick])["ap"], abs=1e-9)


def test_no_detections_is_zero_and_no_images_is_nan():
    frames = [(f[0], FrameDetections.empty()) for f in _frames(6, n=5)]
    assert KeypointAPTable(frames).ap()["ap"] == 0.0
    assert np.isnan(KeypointAPTable([]).ap()["ap"])
