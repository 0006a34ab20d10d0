"""Procedural scene backgrounds and style post-filters of the mini world, at any resolution.

    python -c "from fypbench.world.mini.scene import paint_scene, apply_style; print(apply_style(paint_scene('on the moon', 64, seed=1), 'cartoon').shape)"

Backgrounds (reference/mini_world.md §5): a vertical sky gradient, a ground band from 78 % of the height, and a
scene painter (sea line, waves, snowflakes, trees, stars + planet, dunes, ice, bushes, buildings, peaks; the plain
backgrounds have none). Every position is a fraction of the frame, so a scene looks the same at every resolution;
random elements (snowflakes, stars) are drawn from (scene, seed) via fypbench.seeding.

Styles are deterministic post-filters of a whole frame (no randomness, so videos stay temporally stable): warm
colour transform (sunset), swirl brightness modulation + saturation (van gogh), block pixelation with a fixed
per-block shading (minecraft, 16 blocks across) or with posterised colours (pixel art, 32 blocks across),
flat colours (4 fixed levels per channel) with black edges (cartoon), grayscale (black and white), median
filter + smoothing (watercolor).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from fypbench.seeding import numpy_rng
from fypbench.world.mini.appearance import SCENES, STYLES

HORIZON = 0.78  # ground band starts at this fraction of the height
SizeLike = int | tuple[int, int]


def height_width(size: SizeLike) -> tuple[int, int]:
    """An int side or an (height, width) pair -> (height, width), both >= 1."""
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        height = width = int(size)
    elif isinstance(size, (tuple, list)) and len(size) == 2 and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in size):
        height, width = int(size[0]), int(size[1])
    else:
        raise ValueError(f"size must be an int or a (height, width) pair of ints, got {size!r}")
    if height < 1 or width < 1:
        raise ValueError(f"size must be positive, got {size!r}")
    return height, width


def _paint_extra(draw: ImageDraw.ImageDraw, extra: str, height: int, width: int, rng: np.random.Generator) -> None:
    h, w = float(height), float(width)
    horizon = HORIZON * h
    dot = max(1.0, min(h, w) / 128.0)
    if extra == "sea_line":
        draw.rectangle([0, 0.6 * h, w, horizon], fill=(40, 120, 190))
    elif extra == "waves":
        step = max(2.0, h / 24.0)
        for y in np.arange(horizon, h, step):
            draw.line([(0, y), (w, y)], fill=(70, 140, 200), width=max(1, round(h / 128)))
    elif extra == "flakes":
        for fx, fy in rng.random((40, 2)):
            x, y = fx * w, fy * h
            draw.ellipse([x, y, x + dot, y + dot], fill=(255, 255, 255))
    elif extra == "trees":
        for x in np.linspace(0, w, 7):
            draw.rectangle([x - w / 40, horizon - 0.35 * h, x + w / 40, horizon], fill=(90, 60, 30))
            draw.ellipse([x - w / 9, horizon - 0.55 * h, x + w / 9, horizon - 0.3 * h], fill=(40, 110, 40))
    elif extra == "stars":
        star = max(1, round(dot))
        for fx, fy in rng.random((50, 2)):
            x, y = int(fx * w), int(fy * horizon)
            draw.rectangle([x, y, x + star - 1, y + star - 1], fill=(255, 255, 255))
        draw.ellipse([0.75 * w, 0.08 * h, 0.9 * w, 0.23 * h], fill=(60, 110, 200))
    elif extra == "dunes":
        draw.chord([-0.2 * w, horizon - 0.15 * h, 0.6 * w, horizon + 0.15 * h], 180, 360, fill=(230, 180, 100))
        draw.chord([0.4 * w, horizon - 0.1 * h, 1.2 * w, horizon + 0.1 * h], 180, 360, fill=(210, 160, 80))
    elif extra == "ice":
        draw.polygon([(0, horizon), (0.2 * w, horizon - 0.2 * h), (0.4 * w, horizon)], fill=(210, 235, 250))
        draw.polygon([(0.55 * w, horizon), (0.8 * w, horizon - 0.25 * h), (w, horizon)], fill=(200, 230, 245))
    elif extra == "bushes":
        for x in np.linspace(0, w, 6):
            draw.ellipse([x - w / 12, horizon - h / 14, x + w / 12, horizon + h / 30], fill=(50, 130, 50))
    elif extra == "buildings":
        gap = max(1.0, w / 128.0)
        for i, x in enumerate(np.linspace(0, w, 6)[:-1]):
            top = h * (0.3 + 0.25 * ((i * 37) % 5) / 5)
            draw.rectangle([x + gap, horizon - top, x + w / 5 - gap, horizon], fill=(120 + 10 * i, 110, 100))
    elif extra == "peaks":
        draw.polygon([(0, horizon), (0.3 * w, horizon - 0.45 * h), (0.6 * w, horizon)], fill=(120, 110, 120))
        draw.polygon([(0.4 * w, horizon), (0.75 * w, horizon - 0.35 * h), (1.1 * w, horizon)], fill=(100, 95, 105))
        draw.polygon([(0.25 * w, horizon - 0.37 * h), (0.3 * w, horizon - 0.45 * h), (0.35 * w, horizon - 0.37 * h)],
                     fill=(250, 250, 250))
    else:
        raise ValueError(f"unknown scene painter {extra!r}")


def paint_scene(scene: str, size: SizeLike, seed: int = 0) -> np.ndarray:
    """The scene's background, uint8 (H, W, 3). Same (scene, size, seed) -> same pixels."""
    if scene not in SCENES:
        raise ValueError(f"unknown scene {scene!r} (known: {', '.join(SCENES)})")
    height, width = height_width(size)
    top, bottom, ground, extra = SCENES[scene]
    weight = np.linspace(0.0, 1.0, height)[:, None, None]
    sky = np.asarray(top, np.float64) * (1.0 - weight) + np.asarray(bottom, np.float64) * weight
    pixels = np.broadcast_to(sky, (height, width, 3)).copy()
    pixels[int(round(HORIZON * height)):] = ground
    image = Image.fromarray(np.round(pixels).astype(np.uint8))
    if extra is not None:
        rng = numpy_rng("fypbench.world.mini.scene", scene, seed)
        _paint_extra(ImageDraw.Draw(image), extra, height, width, rng)
    return np.asarray(image, dtype=np.uint8).copy()


# ---------------------------------------------------------------------------------------------------------------
# Styles

MINECRAFT_BLOCKS = 16   # blocks across the shorter side
PIXEL_ART_BLOCKS = 32
CARTOON_LEVELS = 4  # per channel: 0, 85, 170, 255
CARTOON_EDGE_THRESHOLD = 48


def block_size(height: int, width: int, blocks: int) -> int:
    """Side in pixels of the square blocks a pixelating style (minecraft, pixel art) uses: `blocks` across the
    shorter side."""
    return max(1, round(min(width, height) / blocks))


def _pixelate(image: Image.Image, blocks: int) -> tuple[Image.Image, int]:
    width, height = image.size
    block = block_size(height, width, blocks)
    cells = (-(-width // block), -(-height // block))
    small = image.resize(cells, Image.Resampling.BOX)
    big = small.resize((cells[0] * block, cells[1] * block), Image.Resampling.NEAREST)
    return big.crop((0, 0, width, height)), block


def _block_shading(height: int, width: int, block: int) -> np.ndarray:
    """A fixed per-block brightness pattern (no randomness): the 'textured blocks' of the minecraft style."""
    rows = np.arange(height)[:, None] // block
    cols = np.arange(width)[None, :] // block
    pattern = ((rows * 7 + cols * 13 + rows * cols * 3) % 5) / 4.0  # in [0, 1]
    return 0.95 + 0.07 * pattern


def _sunset(pixels: np.ndarray) -> np.ndarray:
    warm = pixels.astype(np.float32) * np.array([1.1, 0.8, 0.6], np.float32) + np.array([40, 10, 0], np.float32)
    return np.clip(np.round(warm), 0, 255).astype(np.uint8)


def _van_gogh(pixels: np.ndarray) -> np.ndarray:
    height, width = pixels.shape[:2]
    yy = (np.arange(height, dtype=np.float32)[:, None] + 0.5) / height
    xx = (np.arange(width, dtype=np.float32)[None, :] + 0.5) / width
    swirl = 6.0 * np.sin(12.0 * xx + 2.0 * np.sin(9.0 * yy))
    modulated = pixels.astype(np.float32) * (1.0 + 0.12 * np.sin(swirl))[..., None]
    image = Image.fromarray(np.clip(np.round(modulated), 0, 255).astype(np.uint8)).convert("HSV")
    hue, saturation, value = image.split()
    saturation = saturation.point(lambda v: min(255, int(v * 1.5)))
    return np.asarray(Image.merge("HSV", (hue, saturation, value)).convert("RGB"))


def _cartoon(image: Image.Image) -> np.ndarray:
    # Fixed levels per channel rather than a per-frame palette (median cut): colours keep their hue and do
    # not flicker from frame to frame.
    pixels = np.asarray(image, np.float32)
    step = 255.0 / (CARTOON_LEVELS - 1)
    flat = (np.round(pixels / step) * step).round().astype(np.uint8)
    edges = np.asarray(image.convert("L").filter(ImageFilter.FIND_EDGES)) > CARTOON_EDGE_THRESHOLD
    flat[edges] = 0
    return flat


def apply_style(frame: np.ndarray, style: str) -> np.ndarray:
    """uint8 (H, W, 3) -> uint8 (H, W, 3) in the given style ("" = unchanged copy)."""
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r} (known: {', '.join(map(repr, STYLES))})")
    pixels = np.asarray(frame)
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"expected a uint8 (H, W, 3) frame, got {pixels.dtype} {pixels.shape}")
    if style == "":
        return pixels.copy()
    if style == "at sunset":
        return _sunset(pixels)
    if style == "van gogh style":
        return _van_gogh(pixels)
    image = Image.fromarray(pixels)
    if style == "minecraft":
        blocky, block = _pixelate(image, MINECRAFT_BLOCKS)
        shaded = np.asarray(blocky, np.float32) * _block_shading(pixels.shape[0], pixels.shape[1], block)[..., None]
        return np.clip(np.round(shaded), 0, 255).astype(np.uint8)
    if style == "pixel art":
        blocky, _ = _pixelate(image, PIXEL_ART_BLOCKS)
        return np.asarray(ImageOps.posterize(blocky, 3)).copy()
    if style == "cartoon":
        return _cartoon(image)
    if style == "black and white":
        return np.asarray(ImageOps.grayscale(image).convert("RGB")).copy()
    if style == "watercolor painting":
        # a median rather than the sketch's mode filter: the same flattening of small detail, 10x faster
        median_size = 3 if min(pixels.shape[:2]) < 128 else 5
        return np.asarray(image.filter(ImageFilter.MedianFilter(median_size)).filter(ImageFilter.SMOOTH_MORE)).copy()
    raise AssertionError(f"style {style!r} has no filter")
