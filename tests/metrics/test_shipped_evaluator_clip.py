"""The shipped mini-world evaluator CLIP: its manifest matches its files, and it prefers the true prompt."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fypbench.metrics.base import VideoItem, score_items
from fypbench.metrics.clip_metrics import LOCAL_PROVENANCE_FILE, MINI_CLIP_DIR, ClipScore, file_sha256, load_local_clip
from fypbench.metrics.validity import attribute_alternatives

MAX_BYTES = 5 * 1024 * 1024


@pytest.fixture(scope="module")
def embedder():
    return load_local_clip()  # the default folder: the shipped weights


def test_manifest_matches_the_shipped_files():
    manifest = json.loads((MINI_CLIP_DIR / LOCAL_PROVENANCE_FILE).read_text())
    assert manifest["model_id"] == "fypbench-mini-evaluator-clip" and manifest["seed"] == 1
    assert manifest["data"]["kwargs"]["name"] == "evaluator-clip"  # not the generators' stream
    assert manifest["training"]["command"].startswith("fypbench train evaluator_clip")
    for name, entry in manifest["files"].items():
        assert file_sha256(MINI_CLIP_DIR / name) == entry["sha256"], name
    total = sum((MINI_CLIP_DIR / name).stat().st_size for name in manifest["files"])
    assert total <= MAX_BYTES


def test_true_prompt_scores_higher_than_a_changed_one(embedder):
    from fypbench.methods.reference import ReferenceGenerator
    from fypbench.protocol import load_protocol

    protocol = load_protocol("fyp-1024")
    samples = [protocol.sample(i) for i in ("s00p00", "s17p05", "s40p02", "s63p09")]
    videos = [v[::4] for v in ReferenceGenerator().generate(samples)]  # 2 frames each: cheap
    metric = ClipScore(embedder)
    wins, total = 0, 0
    for sample, video in zip(samples, videos):
        (true_row,) = score_items([metric], [VideoItem("reference", sample, video)])
        for attribute in ("character", "scene", "style"):
            changed = attribute_alternatives(sample.prompt, attribute)
            items = [VideoItem("control", _with_prompt(sample, p), video) for p in changed]
            values = [row["value"] for row in score_items([metric], items)]
            wins += sum(true_row["value"] > v for v in values)
            total += len(values)
    assert wins == total, f"true prompt won {wins} of {total}"


def _with_prompt(sample, prompt):
    import dataclasses

    return dataclasses.replace(sample, prompt=prompt)


def test_embeddings_are_unit_vectors(embedder):
    frames = np.zeros((2, 64, 64, 3), np.uint8)
    images = embedder.embed_images(frames)
    texts, truncated = embedder.embed_texts(["A panda, on the moon"])
    np.testing.assert_allclose(np.linalg.norm(images, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)
    assert truncated == [False]
    assert embedder.config()["tokenizer"]["vocab_size"] < 128
