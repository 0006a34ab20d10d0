"""The evaluator-CLIP recipe trains, exports a folder the CLIP metrics load, and resumes."""

from __future__ import annotations

import json

import numpy as np

from fypbench.metrics.base import VideoItem, score_items
from fypbench.metrics.clip_metrics import LOCAL_PROVENANCE_FILE, ClipScore, load_local_clip
from fypbench.metrics.clip_vocab import build_vocab
from fypbench.training import evaluator_clip
from tests.metrics.helpers import ToyCaptionedImages, ToyCaptionedMotions, make_sample


def test_recipe_trains_exports_and_resumes(tmp_path):
    overrides = {"data.target": "tests.metrics.helpers:ToyCaptionedImages", "data.cache_dir": str(tmp_path / "cache"),
                 "train.steps": 4}
    export = evaluator_clip.run("debug", tmp_path / "out", overrides=overrides)
    provenance = json.loads((export / LOCAL_PROVENANCE_FILE).read_text())
    assert provenance["model_id"] == evaluator_clip.MODEL_ID and provenance["seed"] == 1
    assert provenance["held_out_retrieval"]["n_items"] == 16
    assert provenance["training"]["final_step"] == 4
    assert set(provenance["held_out_attribute_discrimination"]) == {"character", "colour", "scene", "style"}
    assert provenance["held_out_attribute_discrimination"]["colour"]["n_pairs"] == 16 * 8
    assert set(provenance["files"]) == {"open_clip_model.safetensors", "open_clip_config.json", "compact_vocab.json"}
    config = json.loads((export / "open_clip_config.json").read_text())
    assert config["model_cfg"]["text_cfg"]["vocab_size"] == build_vocab()["vocab_size"]

    embedder = load_local_clip(export)
    image, caption = ToyCaptionedImages(16)[0]
    item = VideoItem("reference", make_sample(prompt=caption, num_frames=2), np.stack([image, image]))
    (row,) = score_items([ClipScore(embedder)], [item])
    assert 0.0 <= row["value"] <= 100.0
    # the exported weights reproduce the training-time preprocessing exactly (input already at the model size -> no resize)
    normalise = evaluator_clip.PixelNormaliser(tuple(embedder.preprocess_cfg["mean"]),
                                               tuple(embedder.preprocess_cfg["std"]))
    np.testing.assert_allclose(embedder._pixels(image[None]).numpy(), normalise(image[None]).numpy(), atol=1e-6)

    first_weights = (export / "open_clip_model.safetensors").read_bytes()
    again = evaluator_clip.run("debug", tmp_path / "out", overrides=overrides)  # resumes at step 4: no training
    assert (again / "open_clip_model.safetensors").read_bytes() == first_weights


def test_contrastive_loss_without_negatives_is_open_clips_clip_loss():
    import open_clip
    import torch

    generator = torch.Generator().manual_seed(0)
    images = torch.nn.functional.normalize(torch.randn(8, 16, generator=generator), dim=1).requires_grad_()
    texts = torch.nn.functional.normalize(torch.randn(8, 16, generator=generator), dim=1)
    scale = torch.tensor(12.0)
    ours = evaluator_clip.contrastive_loss(images, texts, scale)
    reference = open_clip.ClipLoss()(images, texts, scale)
    torch.testing.assert_close(ours, reference)
    (grad,) = torch.autograd.grad(ours, images)
    (reference_grad,) = torch.autograd.grad(open_clip.ClipLoss()(images, texts, scale), images)
    torch.testing.assert_close(grad, reference_grad)
    # a negative text equal to an image's own caption competes with it: the loss rises
    assert evaluator_clip.contrastive_loss(images, texts, scale, texts[:2]) > ours


def test_hard_negatives_change_exactly_the_attribute_and_do_not_depend_on_the_batch():
    from fypbench.world.mini.grammar import parse

    captions = list(ToyCaptionedMotions.COLOURS)
    negatives = evaluator_clip.HardNegatives(captions, ["verb"], seed=1)
    drawn = negatives(5, [0, 1, 2, 3])
    assert len(drawn) == 3  # the verbless caption (index 2) has no verb to change
    for caption, negative in zip([captions[0], captions[1], captions[3]], drawn):
        true, changed = parse(caption), parse(negative)
        assert changed.verb not in (None, true.verb) and changed.appearance == true.appearance
    assert negatives(5, [3, 0]) == [drawn[2], drawn[0]]  # per (seed, step, dataset index), not batch position
    assert negatives(6, [0, 1, 3, 0, 1, 3]) != negatives(5, [0, 1, 3, 0, 1, 3])  # new draws each step


def test_recipe_with_hard_negatives_trains_and_records_the_loss(tmp_path):
    overrides = {"data.target": "tests.metrics.helpers:ToyCaptionedMotions", "data.cache_dir": str(tmp_path / "cache"),
                 "train.steps": 3, "loss.hard_negatives": ["verb"]}
    export = evaluator_clip.run("debug", tmp_path / "out", overrides=overrides)
    provenance = json.loads((export / LOCAL_PROVENANCE_FILE).read_text())
    assert provenance["loss"] == "CLIP InfoNCE + hard text negatives (verb)"
    assert provenance["training"]["config"]["loss"] == {"hard_negatives": ["verb"]}
    assert "verb" in provenance["held_out_attribute_discrimination"]


def test_unknown_hard_negative_attribute_is_a_one_line_user_error(tmp_path):
    import pytest

    from fypbench.errors import UserError

    with pytest.raises(UserError, match="loss.hard_negatives"):
        evaluator_clip.run("debug", tmp_path / "out", overrides={"loss.hard_negatives": ["mood"]})
    assert not (tmp_path / "out").exists()
