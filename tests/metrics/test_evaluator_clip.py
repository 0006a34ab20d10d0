"""The evaluator-CLIP recipe trains, exports a folder the CLIP metrics load, and resumes."""

from __future__ import annotations

import json

import numpy as np

from fypbench.metrics.base import VideoItem, score_items
from fypbench.metrics.clip_metrics import LOCAL_PROVENANCE_FILE, ClipScore, load_local_clip
from fypbench.metrics.clip_vocab import build_vocab
from fypbench.training import evaluator_clip
from tests.metrics.helpers import ToyCaptionedImages, make_sample


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
