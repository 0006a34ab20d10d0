"""Helpers for the metric tests: tiny random open_clip models, stub embedders, samples."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from fypbench.sample import Sample, coco17_to_openpose18

TINY_CLIP_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def tiny_clip_model(seed: int = 0):
    import torch
    from open_clip.model import CLIP

    torch.manual_seed(seed)
    return CLIP(**TINY_CLIP_CFG).eval()


def save_tiny_clip(folder):
    from fypbench.metrics.clip_metrics import save_local_clip

    save_local_clip(tiny_clip_model(), TINY_CLIP_CFG, folder, {"model_id": "tiny-test-clip", "seed": 0},
                    preprocess_cfg={"size": 32})
    return folder


class StubEmbedder:
    """Embeds each frame as a fixed vector chosen by the frame's first pixel value; texts from a table."""

    def __init__(self, image_vectors: dict[int, Sequence[float]], text_vectors: dict[str, Sequence[float]],
                 tag: str = "stub"):
        self.image_vectors = {k: np.asarray(v, dtype=np.float64) for k, v in image_vectors.items()}
        self.text_vectors = {k: np.asarray(v, dtype=np.float64) for k, v in text_vectors.items()}
        self.tag = tag
        self.image_calls = 0
        self.frames_embedded = 0

    def config(self) -> dict[str, Any]:
        return {"model_id": self.tag}

    def embed_images(self, frames: np.ndarray) -> np.ndarray:
        self.image_calls += 1
        self.frames_embedded += len(frames)
        vectors = np.stack([self.image_vectors[int(f[0, 0, 0])] for f in frames])
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def embed_texts(self, texts: Sequence[str]) -> tuple[np.ndarray, list[bool]]:
        vectors = np.stack([self.text_vectors[t] for t in texts])
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True), [False] * len(texts)


def frames_with_codes(codes: Sequence[int], size: int = 8) -> np.ndarray:
    """A video whose frame t is filled with the value codes[t] (the stub embedder's key)."""
    return np.stack([np.full((size, size, 3), code, np.uint8) for code in codes])


def make_sample(sample_id: str = "s0", prompt: str = "a man is walking", keypoints: np.ndarray | None = None,
                num_frames: int = 4, seed: int = 0) -> Sample:
    if keypoints is None:
        rng = np.random.default_rng(seed)
        keypoints = np.concatenate([rng.uniform(0.2, 0.8, (num_frames, 17, 2)), np.ones((num_frames, 17, 1))],
                                   axis=2)
    keypoints = np.asarray(keypoints, dtype=np.float32)
    return Sample(id=sample_id, prompt=prompt, keypoints=keypoints, openpose=coco17_to_openpose18(keypoints),
                  seed=seed)


class ToyCaptionedImages:
    """A captioned-image dataset (ds[i] -> (uint8 HxWx3, caption)) for the evaluator CLIP recipe's test."""

    COLOURS = {"A man, wearing red clothes, in the park": (200, 30, 30),
               "A man, wearing blue clothes, in the park": (30, 70, 200),
               "A man, wearing green clothes, in the park": (40, 150, 60),
               "A man, wearing yellow clothes, in the park": (230, 200, 40)}

    def __init__(self, size: int = 16, name: str = "toy"):
        self.size = size
        self.name = name  # accepted like the world's streams' name; the toy items do not depend on it

    def __len__(self) -> int:
        return 10_000

    def __getitem__(self, index: int) -> tuple[np.ndarray, str]:
        caption = list(self.COLOURS)[index % len(self.COLOURS)]
        rng = np.random.default_rng(index)
        image = np.clip(np.array(self.COLOURS[caption]) + rng.normal(0, 20, (self.size, self.size, 3)), 0, 255)
        return image.astype(np.uint8), caption


class ToyCaptionedMotions(ToyCaptionedImages):
    """ToyCaptionedImages whose captions also carry a verb clause (for the hard-negative option)."""

    COLOURS = {"A man, wearing red clothes, is walking in the park": (200, 30, 30),
               "A man, wearing blue clothes, is running in the park": (30, 70, 200),
               "A man, wearing green clothes, in the park": (40, 150, 60),
               "A man, wearing yellow clothes, is jumping in the park": (230, 200, 40)}
