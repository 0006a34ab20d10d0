"""Preview media for people: mp4, gif and contact sheets (never scored; metrics read lossless frames).

    python -c "import numpy as np; from fypbench.media import write_gif; write_gif('/tmp/x.gif', np.zeros((4, 64, 64, 3), np.uint8))"
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from fypbench.io import atomic_path

PREVIEW_FPS = 8


def upscale(frames: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling of (..., H, W, 3) frames, so small renders stay sharp in previews."""
    if factor <= 1:
        return frames
    return frames.repeat(factor, axis=-3).repeat(factor, axis=-2)


def write_mp4(path: str | os.PathLike, frames: np.ndarray, fps: float = PREVIEW_FPS) -> Path:
    import imageio.v2 as imageio

    with atomic_path(path) as tmp:
        with imageio.get_writer(tmp, format="FFMPEG", mode="I", fps=fps, codec="libx264", quality=8,
                                pixelformat="yuv420p", macro_block_size=16) as writer:
            for frame in frames:
                writer.append_data(np.ascontiguousarray(frame))
    return Path(path)


def write_gif(path: str | os.PathLike, frames: np.ndarray, fps: float = PREVIEW_FPS) -> Path:
    images = [Image.fromarray(np.ascontiguousarray(f)) for f in frames]
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                       duration=int(round(1000 / fps)), loop=0)
    return Path(path)


def contact_sheet(rows: Sequence[tuple[str, np.ndarray]], label_width: int = 110, pad: int = 2) -> np.ndarray:
    """One row per (label, (F, H, W, 3) frames), frames left to right; returns a uint8 image."""
    heights = [frames.shape[1] for _, frames in rows]
    widths = [frames.shape[0] * (frames.shape[2] + pad) for _, frames in rows]
    sheet = Image.new("RGB", (label_width + max(widths), sum(h + pad for h in heights)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    y = 0
    for (label, frames), height in zip(rows, heights):
        draw.text((4, y + height // 2 - 6), label, fill=(0, 0, 0))
        x = label_width
        for frame in frames:
            sheet.paste(Image.fromarray(np.ascontiguousarray(frame)), (x, y))
            x += frame.shape[1] + pad
        y += height + pad
    return np.asarray(sheet)


def write_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")
    return Path(path)
