"""Sampling and the evaluation helpers: OMP_NUM_THREADS=1 python -m pytest tests/base/test_sample_evaluate.py -q"""

from __future__ import annotations

import numpy as np
import pytest

from fypbench.base.components import build_components
from fypbench.base.evaluate import TemplateKeypoints, derangement, eval_items, psnr, render_items, summarise
from fypbench.base.sample import image_grid, latent_noise, sample_images
from fypbench.seeding import initial_noise
from fypbench.world.mini.splits import is_eval_seed


@pytest.fixture(scope="module")
def components():
    return build_components("debug", seed=0).eval()


def test_images_depend_on_prompt_and_seed_only(components):
    prompts, seeds = ["a red square", "a blue square", "a man"], [11, 12, 13]
    together = sample_images(components, prompts, seeds, steps=2, guidance=3.0, batch_size=3)
    alone = sample_images(components, prompts[1:2], seeds[1:2], steps=2, guidance=3.0)
    split = sample_images(components, prompts, seeds, steps=2, guidance=3.0, batch_size=2)
    assert together.shape == (3, 16, 16, 3) and together.dtype == np.uint8
    assert np.abs(together[1].astype(int) - alone[0].astype(int)).max() <= 1
    assert np.abs(together.astype(int) - split.astype(int)).max() <= 1
    assert not np.array_equal(together[0], together[2])
    assert latent_noise([5], (4, 8, 8)).equal(initial_noise(5, (1, 4, 8, 8)))
    with pytest.raises(ValueError, match="2 prompts but 1 seeds"):
        sample_images(components, prompts[:2], seeds[:1])


def test_image_grid():
    images = np.zeros((5, 4, 6, 3), np.uint8)
    grid = image_grid(images, columns=3, padding=1)
    assert grid.shape == (2 * 4 + 3, 3 * 6 + 4, 3) and grid[0, 0, 0] == 255 and grid[1, 1, 0] == 0
    with pytest.raises(ValueError, match="uint8"):
        image_grid(images.astype(float))


def test_eval_items_are_held_out_and_deterministic():
    items = eval_items(6)
    assert [i.prompt for i in items] == [i.prompt for i in eval_items(6)]
    assert eval_items(2, start=4)[1].prompt == items[5].prompt
    assert all(is_eval_seed(i.noise_seed) and is_eval_seed(i.background_seed) for i in items)
    assert all(is_eval_seed(i.spec.seed) for i in items if i.spec.kind == "procedural")
    order = derangement(7)
    assert sorted(order) == list(range(7)) and not np.any(order == np.arange(7))


def test_psnr_and_summary():
    a = np.full((2, 4, 4, 3), 100, np.uint8)
    b = a.copy()
    b[1] += 10
    values = psnr(a, b)
    assert values[0] > 90 and values[1] == pytest.approx(10 * np.log10(255 ** 2 / 100))
    hits = np.array([[1, 1, 1, 0], [1, 0, 1, 1]], bool)
    row = summarise(hits)
    assert row["scene"] == 1.0 and row["style"] == 0.5 and row["character+colour"] == 0.5 and row["n"] == 2


def test_template_keypoints_find_the_figure():
    items = eval_items(4)
    frames, keypoints = render_items(items)
    found = TemplateKeypoints(64, bank=200)(frames)
    assert found.shape == (4, 17, 3)
    # the matched pose's hips lie near the true hips (in frame fractions)
    hips = lambda k: k[:, 11:13, :2].mean(axis=1)  # noqa: E731
    assert np.median(np.linalg.norm(hips(found) - hips(keypoints), axis=1)) < 0.15


def test_report_table_shows_every_figure():
    from fypbench.base.evaluate import FIELDS, format_report

    row = {name: 0.5 for name in (*FIELDS, "scene+style", "character+colour")} | {"n": 4}
    report = {"weights": "w", "version": "v1", "seconds": 1.0, "steps": 25, "oracle_version": 2,
              "vae": {"renders": 4, "psnr_mean_db": 27.5, "psnr_median_db": 28.0, "psnr_of_mean_mse_db": 26.0,
                      "oracle_raw": row, "oracle_reconstructed": row, "oracle_ratio": row,
                      "by_style": {"cartoon": {"psnr_db": 20.0, "style_read_raw": 1.0,
                                               "style_read_reconstructed": 0.25}}},
              "base": {"prompts": 4, "unseen_prompts": 1, "ceiling": row | {"detected": 0.5}, "floor": row,
                       "ceiling_gt_keypoints": row, "floor_gt_keypoints": row,
                       "generated": {"5.0": row | {"seen": row, "unseen": {}},
                                     "3.0": row | {"seen": row, "unseen": {},
                                                   "style_read_by_style": {"none": 0.25, "cartoon": 1.0},
                                                   "style_misread_as": {"minecraft": 3}}}}}
    text = format_report(report)
    assert "attribute oracle version 2" in text
    assert "PSNR 27.50 dB mean" in text and "cartoon 20.0 dB (style read 1.00 -> 0.25)" in text
    assert "generated g=5.0" in text and "seen g=5.0" in text and "unseen g=5.0" not in text
    assert "style read by prompted style, g=3.0: none 0.25, cartoon 1.00" in text
    assert "wrong styles read, g=3.0: minecraft 3" in text and "g=5.0: " not in text


def test_oracle_reads_the_prompted_style_off_ground_truth_renders():
    from fypbench.base.evaluate import oracle_hits, styles_of

    items = eval_items(6)
    frames, keypoints = render_items(items)
    prompts = [item.prompt for item in items]
    hits, read = oracle_hits(frames, keypoints, prompts, read_styles=True)
    assert hits.shape == (6, 4) and np.array_equal(hits, oracle_hits(frames, keypoints, prompts))
    assert list(read) == list(styles_of(prompts)) and hits[:, 1].all()
    wrong_prompts = [prompts[(i + 1) % 6] for i in range(6)]  # another item's style, where it differs
    _, read_again = oracle_hits(frames, keypoints, wrong_prompts, read_styles=True)
    assert list(read_again) == list(read)  # what is read depends on the frame, not the prompt
