"""The mini world's attribute oracle: which character, colour, scene and style a frame shows (no CLIP).

    python -m fypbench.world.mini.oracle --renders 300 [--blur 1.2]

(measures the oracle's accuracy per field and per style on random ground-truth renders, optionally blurred with a
Gaussian of that radius in pixels, a generator-independent control for detail-poor frames; see `validate`).

Every prompt word is a rendering parameter (reference/mini_world.md §7), so a frame is checked against its
prompt with the renderer's own vocabulary, given the frame's (conditioning) COCO-17 keypoints:

- Scene and style: the background outside a figure mask (capsules around the skeleton with the renderer's part
  radii, the hands/feet/head beyond the keypoints, dilated by the widest style filter's reach) is compared pixel
  by pixel with the 96 references `scene.apply_style(scene.paint_scene(scene, size), style)` (a median over
  several scene seeds, so random stars and snowflakes drop out); the distance is the mean absolute difference
  with each pixel's share capped at BACKGROUND_CAP. Matching styled references measures every style cue at
  once: grayscale, 4-px/2-px blocks (minecraft/pixel art), quantised levels and black edges (cartoon), the warm
  shift (sunset), swirl and saturation (van gogh) and smoothing (watercolor), and tells a warm scene from a
  sunset. One cue is also checked on its own: a minecraft frame is flat inside its 4x4-px blocks, so a frame
  with more than MINECRAFT_MAX_WITHIN_BLOCK_SHARE of its variance inside those blocks is not read as minecraft.
  Without it, a frame that lacks fine detail (a blurred render, a generated frame without stars or fence
  edges) matches the block-averaged minecraft reference best, although it has no blocks at all.
- Character and colour, jointly over the 49 subjects (13 characters; the 4 recolourable ones also in each of
  9 colours): colours are sampled at pixels placed by the keypoints (PROBES): the torso quad (shirt) and the
  belt (trousers), scored with one shared shading factor because the renderer draws them as one part (this
  separates a blue superman from a man in blue, whose trousers are 70 % of his shirt); upper arms (shirt);
  thighs and shins (trousers); forearms and hands (skin); the top of the head (hair); the face (skin when it
  points at the camera, hair when it points away: the character's left ear is on the viewer's right exactly
  when the face points at the camera). Body probes inside the head are dropped (the head is painted nearest).
  Each pixel is compared with the subject's slot colour put through the detected style (scene.apply_style on
  flat swatches of the colour at the renderer's shading factors), for thin parts also mixed with the reference
  background at that pixel (anti-aliased and pixelated edges) at a cost. A probe's score is the median pixel
  distance. Cartoon edges are pure black and are dropped where a probe has other pixels. Shoes: the foot's
  direction is not in COCO-17, so rings of pixels around each ankle that differ from the background are
  searched for the shoe colour (the second-best pixel counts, capped).
- The posterior is joint over (scene, style) x subject: the backgrounds within CANDIDATE_NATS of the best are
  each scored together with the figure under their style (a grey background is the same in black and white and
  nearly so under watercolor; the figure's colours decide). Marginals give each field's prediction and
  confidence.

Known limits (see `validate`): black and white maps some colours to equal grey levels (red 81 vs purple 84), and
cartoon edges plus 4-level quantisation erase thin parts at 64 px, so those styles score lowest on character and
colour. `attribute_accuracy` scores a video as the fraction of frames whose field is recovered (mean over
frames, not a majority vote).
"""

from __future__ import annotations

import argparse
import functools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from fypbench.world.mini.appearance import CHARACTERS, COLOURS, PALETTE_SLOTS, RECOLOURABLE, SCENES, STYLES, Appearance
from fypbench.world.mini.grammar import parse
from fypbench.world.mini.scene import MINECRAFT_BLOCKS, apply_style, block_size, paint_scene

FIELDS = ("character", "colour", "scene", "style")
# Bumped whenever a reading can change; recorded with every figure the oracle produces.
# 2: a frame not flat inside 4x4-px blocks is not read as minecraft (MINECRAFT_MAX_WITHIN_BLOCK_SHARE).
ORACLE_VERSION = 2

# COCO-17 indices
NOSE, LEFT_EYE, RIGHT_EYE, LEFT_EAR, RIGHT_EAR = 0, 1, 2, 3, 4
LEFT_SHOULDER, RIGHT_SHOULDER, LEFT_ELBOW, RIGHT_ELBOW, LEFT_WRIST, RIGHT_WRIST = 5, 6, 7, 8, 9, 10
LEFT_HIP, RIGHT_HIP, LEFT_KNEE, RIGHT_KNEE, LEFT_ANKLE, RIGHT_ANKLE = 11, 12, 13, 14, 15, 16

# Skeleton lengths (metres) used to estimate the image scale: the longest ratio of a segment's pixel length to
# its true length (an orthographic camera only shortens segments).
SEGMENT_LENGTHS: tuple[tuple[int, int, float], ...] = (
    (LEFT_SHOULDER, RIGHT_SHOULDER, 0.366), (LEFT_HIP, RIGHT_HIP, 0.170),
    (LEFT_HIP, LEFT_KNEE, 0.4215), (RIGHT_HIP, RIGHT_KNEE, 0.4215),
    (LEFT_KNEE, LEFT_ANKLE, 0.4099), (RIGHT_KNEE, RIGHT_ANKLE, 0.4099),
    (LEFT_SHOULDER, LEFT_ELBOW, 0.275), (RIGHT_SHOULDER, RIGHT_ELBOW, 0.275),
    (LEFT_ELBOW, LEFT_WRIST, 0.259), (RIGHT_ELBOW, RIGHT_WRIST, 0.259),
)
# How far the drawn body reaches beyond its keypoints, metres: the hand beyond the wrist (7 cm + 4.2 cm radius),
# the foot around the ankle (toe 14 cm + 4.5 cm radius), the head around the ears' midpoint (11.5 cm + margin).
HAND_REACH_M = 0.07
FOOT_REACH_M = 0.19
HEAD_REACH_M = 0.13
HEAD_RADIUS_M = 0.115  # the drawn head ellipse's larger radius
# Reach of the widest spatial style filter (minecraft blocks) as a fraction of the frame side.
STYLE_REACH = 1.0 / 16.0
# A background pixel's distance counts at most this much (random stars and snowflakes, a stray limb).
BACKGROUND_CAP = 40.0
MAX_BACKGROUND_CANDIDATES = 6
REFERENCE_SEEDS = 5
CANDIDATE_NATS = 12.0  # backgrounds whose energy is within this of the best compete jointly with the figure
MIN_BACKGROUND_PIXELS = 64
# A minecraft frame's share of variance inside its blocks: 0 for a render, <= 0.06 for the shipped VAE's
# reconstructions of 71 minecraft renders; 0.05-0.82 for renders in the other styles (0.05: watercolor). The
# gate only removes the minecraft reading from frames clearly not blocky; below it the references decide.
MINECRAFT_MAX_WITHIN_BLOCK_SHARE = 0.10
# The renderer shades parts by depth (x0.85 to x1.15); van gogh modulates brightness by a further +-12 %,
# minecraft shades blocks by -5 % to +2 %.
SHADING_FACTORS = tuple(round(0.8 + 0.025 * i, 3) for i in range(18))  # 0.8 ... 1.225
STYLE_BRIGHTNESS_SPREAD = {"van gogh style": 0.12, "minecraft": 0.05}
CARTOON_BLACK = 8            # cartoon edge pixels are (0, 0, 0)
CARTOON_MIN_COLOURED = 0.15  # fraction of a probe's pixels that must be non-black to drop the black ones
# Figure share of a sampled pixel (the rest: the reference background) and the distance a mix costs: without
# the cost, half of a bright colour over a dark background passes for any mid-grey.
MIX_WEIGHTS = (1.0, 0.75, 0.5)
MIX_COSTS = (0.0, 8.0, 16.0)
MIX_COST_SCALE = {"minecraft": 0.5}  # 4-px blocks mix the figure's edges with the background far more often
# Styles whose blocks mix even the torso's pixels with the background (4 px blocks at 64 px).
TORSO_MIXING_STYLES = ("minecraft",)
# Energy scales (distances are in 0-255 intensity units; energy = distance / temperature, posterior ~ exp(-energy)).
# The background's temperature scales with how well the best reference fits (a ground-truth render fits one
# exactly, a generated frame none), with a floor.
BACKGROUND_TEMPERATURE_FLOOR = 0.05
BACKGROUND_TEMPERATURE_SHARE = 0.25
SUBJECT_TEMPERATURE = 6.0

# Colour probes: probe -> (palette slot, weight, keep black cartoon pixels when most are black, thin: its pixels
# may mix with the background). "face" shows the skin when the face points at the camera and the hair when it
# points away.
PROBES: dict[str, tuple[str, float, bool, bool]] = {
    "torso": ("shirt", 1.0, True, False), "belt": ("pants", 0.6, True, False), "arms": ("shirt", 0.4, False, True),
    "legs": ("pants", 0.8, True, True), "hands": ("skin", 0.6, False, True), "hair": ("hair", 0.5, False, True),
    "face": ("skin", 0.4, False, True),
}
# Shoes: the foot's direction is not in COCO-17, so pixels on rings around each ankle are searched for the shoe
# colour: per ankle the SHOE_RANK-th best pixel counts, capped at SHOE_CAP (a hidden foot costs every subject
# at most that much).
SHOE_WEIGHT = 0.5
SHOE_RADII_M = (0.0, 0.04, 0.08, 0.12)
SHOE_DIRECTIONS = 8
SHOE_RANK = 2
SHOE_CAP = 60.0
SHOE_BACKGROUND_TOLERANCE = 12.0


@dataclass(frozen=True)
class Attributes:
    character: str
    colour: str | None
    scene: str
    style: str

    def as_dict(self) -> dict[str, str | None]:
        return {name: getattr(self, name) for name in FIELDS}


@dataclass(frozen=True)
class MeasuredAttributes:
    """The oracle's reading of one frame: a prediction and its posterior probability per field."""

    character: str
    colour: str | None
    scene: str
    style: str
    confidence: dict[str, float] = field(default_factory=dict)
    # full posteriors, for pooling over frames: subject (character, colour) -> p and (scene, style) -> p
    subject_posterior: dict[tuple[str, str | None], float] = field(default_factory=dict, repr=False)
    background_posterior: dict[tuple[str, str], float] = field(default_factory=dict, repr=False)

    def attributes(self) -> Attributes:
        return Attributes(self.character, self.colour, self.scene, self.style)

    def correct(self, expected: Attributes) -> dict[str, bool]:
        return {name: getattr(self, name) == getattr(expected, name) for name in FIELDS}


def expected_attributes(prompt: str) -> Attributes:
    """The attributes a grammar prompt asks for (ValueError if it does not parse)."""
    appearance = parse(prompt).appearance
    return Attributes(appearance.character, appearance.colour, appearance.scene, appearance.style)


# ---------------------------------------------------------------------------------------------------------------
# Reference tables

SUBJECTS: tuple[tuple[str, str | None], ...] = tuple(
    [(character, None) for character in CHARACTERS]
    + [(character, colour) for character in RECOLOURABLE for colour in COLOURS])
BACKGROUNDS: tuple[tuple[str, str], ...] = tuple((scene, style) for scene in SCENES for style in STYLES)
MINECRAFT_BACKGROUNDS = np.array([style == "minecraft" for _, style in BACKGROUNDS])


@functools.lru_cache(maxsize=4)
def _reference_backgrounds(size: int) -> np.ndarray:
    """float32 (len(BACKGROUNDS), size, size, 3): every scene in every style.

    A scene's random elements (snowflakes, stars) move with the video's seed, so the reference is the per-pixel
    median over REFERENCE_SEEDS paintings, which leaves them out, before the style is applied.
    """
    painted = {scene: np.median(np.stack([paint_scene(scene, size, seed=seed) for seed in range(REFERENCE_SEEDS)]),
                                axis=0).round().astype(np.uint8) for scene in SCENES}
    out = np.stack([apply_style(painted[scene], style) for scene, style in BACKGROUNDS]).astype(np.float32)
    out.setflags(write=False)
    return out


@functools.lru_cache(maxsize=4)
def _subject_palettes() -> np.ndarray:
    """float32 (len(SUBJECTS), len(PALETTE_SLOTS), 3) palette colours."""
    rows = []
    for character, colour in SUBJECTS:
        palette = Appearance(character, colour, next(iter(SCENES))).palette()
        rows.append([palette[slot] for slot in PALETTE_SLOTS])
    return np.asarray(rows, np.float32)


SWATCH_HEIGHT = 8
SWATCH_WIDTH = 64


def _shading_factors(style: str) -> np.ndarray:
    spread = STYLE_BRIGHTNESS_SPREAD.get(style, 0.0)
    factors = {round(f * m, 4) for f in SHADING_FACTORS for m in (1.0 - spread, 1.0, 1.0 + spread)}
    return np.asarray(sorted(factors), np.float32)


@functools.lru_cache(maxsize=8)
def _styled_slot_colours(style: str) -> np.ndarray:
    """float32 (len(SUBJECTS), len(PALETTE_SLOTS), factors, 3): each palette colour, shaded by each
    factor, as the style renders a flat area of it (median of a swatch's interior after scene.apply_style).

    The swatches are 64 px wide rows of 8 px (aligned with the pixelation blocks), stacked vertically, so the
    median runs over the van gogh swirl and the minecraft block shading along a row.
    """
    palettes = _subject_palettes()
    colours = np.clip(palettes[:, :, None, :] * _shading_factors(style)[None, None, :, None], 0, 255)
    flat = np.floor(colours.reshape(-1, 3)).astype(np.uint8)  # the renderer truncates shaded colours
    unique, inverse = np.unique(flat, axis=0, return_inverse=True)
    image = np.repeat(unique[:, None, :], SWATCH_HEIGHT * SWATCH_WIDTH, axis=1)
    image = image.reshape(len(unique) * SWATCH_HEIGHT, SWATCH_WIDTH, 3)
    styled = apply_style(np.ascontiguousarray(image), style).astype(np.float32)
    styled = styled.reshape(len(unique), SWATCH_HEIGHT, SWATCH_WIDTH, 3)[:, 2:SWATCH_HEIGHT - 2, 2:SWATCH_WIDTH - 2]
    medians = np.median(styled.reshape(len(unique), -1, 3), axis=1)
    out = medians[inverse.reshape(-1)].reshape(colours.shape).astype(np.float32)
    out.setflags(write=False)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Geometry from keypoints


def _validate(frame: np.ndarray, keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    frame = np.asarray(frame)
    keypoints = np.asarray(keypoints, np.float64)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3 or frame.shape[0] != frame.shape[1]:
        raise ValueError(f"expected a square uint8 (H, W, 3) frame, got {frame.dtype} {frame.shape}")
    if keypoints.shape != (17, 3):
        raise ValueError(f"expected (17, 3) normalised COCO-17 keypoints, got {keypoints.shape}")
    if not np.all(np.isfinite(keypoints)):
        raise ValueError("keypoints contain non-finite values")
    return frame, keypoints


def _pixels_per_metre(points: np.ndarray) -> float:
    ratios = [float(np.hypot(*(points[a] - points[b]))) / length for a, b, length in SEGMENT_LENGTHS]
    return max(max(ratios), 1e-6)


def _segment_distance(grid: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance of every grid point (H, W, 2) to the segment a-b."""
    ab = b - a
    length2 = float(ab @ ab)
    t = np.zeros(grid.shape[:2]) if length2 < 1e-12 else np.clip(((grid - a) @ ab) / length2, 0.0, 1.0)
    return np.linalg.norm(grid - (a + t[..., None] * ab), axis=-1)


def _figure_mask(points: np.ndarray, scale: float, size: int) -> np.ndarray:
    """bool (size, size): pixels the figure may cover or a style filter may carry it to.

    Capsules around the skeleton's segments with the renderer's part radii grown by the parts beyond the
    keypoints (hands, feet, head), plus the filled torso quad, then dilated by the widest style filter's reach.
    """
    p = points
    reach = STYLE_REACH * size + 1.0
    grid = np.stack(np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5), axis=-1)
    ears = (p[LEFT_EAR] + p[RIGHT_EAR]) / 2
    shoulders = (p[LEFT_SHOULDER] + p[RIGHT_SHOULDER]) / 2
    hips = (p[LEFT_HIP] + p[RIGHT_HIP]) / 2
    mask = np.zeros((size, size), bool)

    def capsule(a: np.ndarray, b: np.ndarray, radius_m: float) -> None:
        nonlocal mask
        mask |= _segment_distance(grid, a, b) <= radius_m * scale + reach

    for shoulder, elbow, wrist in ((LEFT_SHOULDER, LEFT_ELBOW, LEFT_WRIST), (RIGHT_SHOULDER, RIGHT_ELBOW, RIGHT_WRIST)):
        capsule(p[shoulder], p[elbow], 0.05)
        hand = p[wrist] + _unit(p[wrist] - p[elbow], np.zeros(2)) * HAND_REACH_M * scale
        capsule(p[elbow], hand, 0.045)
    for hip, knee, ankle in ((LEFT_HIP, LEFT_KNEE, LEFT_ANKLE), (RIGHT_HIP, RIGHT_KNEE, RIGHT_ANKLE)):
        capsule(p[hip], p[knee], 0.075)
        capsule(p[knee], p[ankle], 0.06)
        capsule(p[ankle], p[ankle], FOOT_REACH_M)
    capsule(p[LEFT_SHOULDER], p[RIGHT_SHOULDER], 0.05)
    capsule(p[LEFT_HIP], p[RIGHT_HIP], 0.08)
    capsule(p[LEFT_SHOULDER], p[LEFT_HIP], 0.05)
    capsule(p[RIGHT_SHOULDER], p[RIGHT_HIP], 0.05)
    capsule(shoulders, hips, 0.10)
    capsule(shoulders, ears, 0.05)
    capsule(ears, ears, HEAD_REACH_M)
    for face_point in (NOSE, LEFT_EYE, RIGHT_EYE):
        capsule(p[face_point], p[face_point], 0.03)
    quad = Image.new("L", (size, size), 0)
    ImageDraw.Draw(quad).polygon([tuple(p[i]) for i in (LEFT_SHOULDER, RIGHT_SHOULDER, RIGHT_HIP, LEFT_HIP)], fill=1)
    return mask | (np.asarray(quad) > 0)


def _along(a: np.ndarray, b: np.ndarray, ts: Sequence[float]) -> list[np.ndarray]:
    return [a + (b - a) * t for t in ts]


def _unit(v: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    n = float(np.hypot(*v))
    return v / n if n > 1e-6 else fallback


def _sample_points(points: np.ndarray, scale: float) -> dict[str, list[np.ndarray]]:
    """Pixel positions (x, y) per probe (see PROBES)."""
    p = points
    ls, rs, lh, rh = p[LEFT_SHOULDER], p[RIGHT_SHOULDER], p[LEFT_HIP], p[RIGHT_HIP]
    probes: dict[str, list[np.ndarray]] = {name: [] for name in PROBES}
    # the torso quad above the belt (the belt covers the last ~17 % towards the hips)
    for v in np.linspace(0.1, 0.72, 6):
        top, bottom = ls + (lh - ls) * v, rs + (rh - rs) * v
        probes["torso"] += _along(top, bottom, np.linspace(0.15, 0.85, 5))
    probes["belt"] += _along(lh, rh, np.linspace(0.1, 0.9, 5))
    for shoulder, elbow in ((ls, p[LEFT_ELBOW]), (rs, p[RIGHT_ELBOW])):
        probes["arms"] += _along(shoulder, elbow, np.linspace(0.3, 0.75, 4))
    for hip, knee, ankle in ((lh, p[LEFT_KNEE], p[LEFT_ANKLE]), (rh, p[RIGHT_KNEE], p[RIGHT_ANKLE])):
        probes["legs"] += _along(hip, knee, np.linspace(0.2, 0.8, 5)) + _along(knee, ankle, np.linspace(0.15, 0.7, 4))
    for elbow, wrist in ((p[LEFT_ELBOW], p[LEFT_WRIST]), (p[RIGHT_ELBOW], p[RIGHT_WRIST])):
        probes["hands"] += _along(elbow, wrist, np.linspace(0.3, 0.85, 4))
        probes["hands"] += [wrist + _unit(wrist - elbow, np.zeros(2)) * d * scale for d in (0.04, 0.07)]
    # head: centre between the ears (1 cm below their level), up = away from the shoulders
    ears = (p[LEFT_EAR] + p[RIGHT_EAR]) / 2
    up = _unit(ears - (ls + rs) / 2, np.array([0.0, -1.0]))
    across = np.array([-up[1], up[0]])
    centre = ears - up * 0.01 * scale
    # the head is drawn over nearly everything (it is painted nearest): body probes inside it are dropped
    head_radius = HEAD_RADIUS_M * scale + 1.0
    for name, positions in probes.items():
        probes[name] = [xy for xy in positions if float(np.hypot(*(xy - centre))) > head_radius]
    probes["hair"] += [centre + up * 0.085 * scale + across * d * scale for d in (-0.03, 0.0, 0.03)]
    probes["face"] += [centre - up * 0.07 * scale] + [centre + across * d * scale - up * 0.01 * scale
                                                     for d in (-0.065, 0.065)]
    return probes


def _shoe_rings(points: np.ndarray, scale: float) -> list[list[np.ndarray]]:
    """Per ankle, pixel positions on rings around it (SHOE_RADII_M x SHOE_DIRECTIONS)."""
    angles = np.arange(SHOE_DIRECTIONS) * (2.0 * math.pi / SHOE_DIRECTIONS)
    directions = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return [[points[ankle] + direction * radius * scale for radius in SHOE_RADII_M for direction in directions]
            for ankle in (LEFT_ANKLE, RIGHT_ANKLE)]


def _facing_camera(points: np.ndarray, scale: float) -> float:
    """+1 face towards the camera, -1 away, 0 undecided (profile): the character's left ear appears on the
    viewer's right exactly when the face points at the camera."""
    lateral = points[LEFT_EAR] - points[RIGHT_EAR]
    up = _unit((points[LEFT_EAR] + points[RIGHT_EAR]) / 2 - (points[LEFT_SHOULDER] + points[RIGHT_SHOULDER]) / 2,
               np.array([0.0, -1.0]))
    cross = float(lateral[0] * up[1] - lateral[1] * up[0])  # image y points down
    if abs(cross) < 0.06 * scale:
        return 0.0
    return 1.0 if cross < 0 else -1.0


# ---------------------------------------------------------------------------------------------------------------
# Measurement


def _background_scores(frame: np.ndarray, figure: np.ndarray) -> np.ndarray:
    size = frame.shape[0]
    keep = ~figure
    if keep.sum() < MIN_BACKGROUND_PIXELS:
        # the figure fills the frame: fall back to the frame's border rows and columns
        keep[:] = False
        border = max(2, size // 16)
        keep[:border], keep[-border:], keep[:, :border], keep[:, -border:] = True, True, True, True
    references = _reference_backgrounds(size)[:, keep]  # (B, N, 3)
    observed = frame[keep].astype(np.float32)[None]
    distances = np.abs(references - observed).mean(axis=2)  # (B, N)
    return np.minimum(distances, BACKGROUND_CAP).mean(axis=1)


def within_block_variance_share(frame: np.ndarray, block: int) -> float:
    """Share of a frame's pixel variance (channels pooled) inside the aligned block x block cells: 0 for a
    pixelated frame, ~1 - 1/block**2 for noise. Rows and columns beyond the last whole block are left out."""
    rows, cols = frame.shape[0] // block * block, frame.shape[1] // block * block
    pixels = frame[:rows, :cols].astype(np.float64)
    cells = pixels.reshape(rows // block, block, cols // block, block, -1)
    within = float(((cells - cells.mean(axis=(1, 3), keepdims=True)) ** 2).mean())
    total = float(pixels.var(axis=(0, 1)).mean())
    return within / total if total > 1e-9 else 0.0


def _pixel_indices(xys: list[np.ndarray], size: int) -> np.ndarray:
    """(N, 2) distinct (row, column) indices of the positions inside the frame, in first-seen order."""
    if not xys:
        return np.zeros((0, 2), int)
    cells = np.floor(np.asarray(xys, np.float64)).astype(int)[:, ::-1]
    cells = cells[np.all((cells >= 0) & (cells < size), axis=1)]
    _, first = np.unique(cells, axis=0, return_index=True)
    return cells[np.sort(first)]


def _probe_distances(frame: np.ndarray, cells: np.ndarray, background: np.ndarray, candidates: np.ndarray,
                     style: str, mixing: bool, black: str = "drop") -> np.ndarray | None:
    """(N, S, K) distance of each sampled pixel to each subject's candidate colours (with `mixing`, the best
    figure/background mix plus its cost), or None when the probe has no usable pixel.

    Cartoon edges are pure black. black="drop": black pixels are dropped where the probe has enough others, else
    the probe gives no evidence; "keep_if_most": as "drop", but a probe that is mostly black keeps them (black
    clothes on a large part); "keep": always kept.
    """
    observed = frame[cells[:, 0], cells[:, 1]].astype(np.float32)
    back = background[cells[:, 0], cells[:, 1]].astype(np.float32)
    if style == "cartoon" and black != "keep":
        coloured = observed.max(axis=1) > CARTOON_BLACK
        if coloured.sum() >= max(2, CARTOON_MIN_COLOURED * len(observed)):
            observed, back = observed[coloured], back[coloured]
        elif black == "drop":
            return None
    if len(observed) == 0:
        return None
    count = len(MIX_WEIGHTS) if mixing else 1
    mix = np.asarray(MIX_WEIGHTS[:count], np.float32)[None, :, None, None, None]  # (1, M, 1, 1, 1)
    cost = np.asarray(MIX_COSTS[:count], np.float32)[None, :, None, None] * MIX_COST_SCALE.get(style, 1.0)
    mixed = mix * candidates[None, None] + (1.0 - mix) * back[:, None, None, None, :]  # (N, M, S, K, 3)
    distance = np.sqrt(((mixed - observed[:, None, None, None, :]) ** 2).sum(axis=-1)) + cost  # (N, M, S, K)
    return distance.min(axis=1)


def _probe_scores(frame: np.ndarray, points: np.ndarray, scale: float, style: str,
                  background: np.ndarray) -> dict[str, np.ndarray]:
    """Per probe, (len(SUBJECTS),) median distance of the probe's pixels to each subject's styled colour.

    The torso and the belt are one drawn part with one shading factor: they are scored together ("torso"
    includes the belt) with that factor shared.
    """
    references = _styled_slot_colours(style)  # (S, slots, F, 3)
    slot_index = {name: i for i, name in enumerate(PALETTE_SLOTS)}
    facing = _facing_camera(points, scale)
    samples = _sample_points(points, scale)
    medians: dict[str, np.ndarray] = {}
    skin, hair = references[:, slot_index["skin"]], references[:, slot_index["hair"]]
    for probe, (slot, _, keep_black, thin) in PROBES.items():
        if probe == "face":
            candidates = skin if facing > 0 else hair if facing < 0 else np.concatenate([skin, hair], axis=1)
        else:
            candidates = references[:, slot_index[slot]]  # (S, F, 3)
        distances = _probe_distances(frame, _pixel_indices(samples[probe], frame.shape[0]), background,
                                     candidates, style, thin or style in TORSO_MIXING_STYLES,
                                     "keep_if_most" if keep_black else "drop")
        if distances is not None:
            medians[probe] = np.median(distances, axis=0)  # (S, K)
    scores = {probe: PROBES[probe][1] * median.min(axis=1) for probe, median in medians.items()
              if probe not in ("torso", "belt")}
    shoes = references[:, slot_index["shoes"]]
    per_ankle = []
    for ring in _shoe_rings(points, scale):
        cells = _pixel_indices(ring, frame.shape[0])
        # only pixels that differ from the reference background can be the shoe
        differs = np.abs(frame[cells[:, 0], cells[:, 1]].astype(np.float32)
                         - background[cells[:, 0], cells[:, 1]]).max(axis=1) > SHOE_BACKGROUND_TOLERANCE
        cells = cells[differs]
        if len(cells) < SHOE_RANK:
            continue
        # black cartoon pixels are kept: a black shoe and an edge look the same
        distances = _probe_distances(frame, cells, background, shoes, style, True, "keep")
        nearest = np.sort(distances.min(axis=2), axis=0)[SHOE_RANK - 1]  # (S,)
        per_ankle.append(np.minimum(nearest, SHOE_CAP))
    if per_ankle:
        scores["shoes"] = SHOE_WEIGHT * np.mean(per_ankle, axis=0)
    if "torso" in medians or "belt" in medians:
        shared = sum(PROBES[probe][1] * medians[probe] for probe in ("torso", "belt") if probe in medians)
        scores["torso"] = shared.min(axis=1)
    return scores


def _subject_scores(frame: np.ndarray, points: np.ndarray, scale: float, style: str,
                    background: np.ndarray) -> np.ndarray:
    total = np.zeros(len(SUBJECTS), np.float64)
    for score in _probe_scores(frame, points, scale, style, background).values():
        total += score
    return total


def _marginal(posterior: np.ndarray, labels: Sequence[object]) -> dict[object, float]:
    out: dict[object, float] = {}
    for label, prob in zip(labels, posterior):
        out[label] = out.get(label, 0.0) + float(prob)
    return out


def measure_attributes(frame: np.ndarray, keypoints: np.ndarray) -> MeasuredAttributes:
    """Read character, colour, scene and style off one frame, given the frame's normalised COCO-17 keypoints.

    frame: uint8 (H, W, 3), square; keypoints: (17, 3) x, y in [0, 1], visibility 0/1.
    The posterior is joint over (scene, style) x subject: the backgrounds within CANDIDATE_NATS of the best
    compete, each scored together with the figure under its style, because some backgrounds look alike in
    several styles (a grey background is the same in black and white).
    """
    frame, keypoints = _validate(frame, keypoints)
    size = frame.shape[0]
    points = keypoints[:, :2] * size  # pixel units: x, y
    scale = _pixels_per_metre(points)
    figure = _figure_mask(points, scale, size)

    background_scores = _background_scores(frame, figure)
    if within_block_variance_share(frame, block_size(size, size, MINECRAFT_BLOCKS)) > MINECRAFT_MAX_WITHIN_BLOCK_SHARE:
        background_scores[MINECRAFT_BACKGROUNDS] = np.inf
    order = np.argsort(background_scores, kind="stable")
    best = float(background_scores[order[0]])
    temperature = max(BACKGROUND_TEMPERATURE_FLOOR, BACKGROUND_TEMPERATURE_SHARE * best)
    background_energy = (background_scores - best) / temperature
    candidates = [int(b) for b in order[:MAX_BACKGROUND_CANDIDATES] if background_energy[b] <= CANDIDATE_NATS]
    energy = np.full((len(BACKGROUNDS), len(SUBJECTS)), np.inf)
    references = _reference_backgrounds(size)
    pixels = frame[figure].astype(np.float32)
    figure_chroma = float((pixels.max(axis=1) - pixels.min(axis=1)).mean()) if len(pixels) else 0.0
    for b in candidates:
        style = BACKGROUNDS[b][1]
        subject_scores = _subject_scores(frame, points, scale, style, references[b])
        energy[b] = background_energy[b] + subject_scores / SUBJECT_TEMPERATURE
        if style == "black and white":
            # a black-and-white frame has no colour anywhere (a grey figure on a grey background is otherwise
            # the same in black and white and without style)
            energy[b] += figure_chroma / SUBJECT_TEMPERATURE
    joint = np.exp(-(energy - energy.min()))
    joint /= joint.sum()
    background_p, subject_p = joint.sum(axis=1), joint.sum(axis=0)

    scene_p = _marginal(background_p, [scene for scene, _ in BACKGROUNDS])
    style_p = _marginal(background_p, [style for _, style in BACKGROUNDS])
    character_p = _marginal(subject_p, [character for character, _ in SUBJECTS])
    scene = max(scene_p, key=lambda k: scene_p[k])
    style = max(style_p, key=lambda k: style_p[k])
    character = max(character_p, key=lambda k: character_p[k])
    colour_p = _marginal([p if c == character else 0.0 for (c, _), p in zip(SUBJECTS, subject_p)],
                         [colour for _, colour in SUBJECTS])
    colour = max((col for (c, col) in SUBJECTS if c == character), key=lambda col: colour_p[col])
    confidence = {
        "character": character_p[character],
        "colour": colour_p[colour] / max(character_p[character], 1e-300),
        "scene": scene_p[scene],
        "style": style_p[style],
    }
    return MeasuredAttributes(
        character=str(character), colour=colour, scene=str(scene), style=str(style), confidence=confidence,
        subject_posterior={subject: float(p) for subject, p in zip(SUBJECTS, subject_p)},
        background_posterior={bg: float(p) for bg, p in zip(BACKGROUNDS, background_p)})


def attribute_accuracy(frames: np.ndarray, keypoints: np.ndarray, prompt: str) -> dict[str, float]:
    """Per field, the fraction of frames whose measured value equals the prompt's (mean over frames);
    "all": the fraction of frames with every field right.

    frames: uint8 (F, H, W, 3); keypoints: (F, 17, 3) normalised COCO-17 (the conditioning pose).
    """
    frames = np.asarray(frames)
    keypoints = np.asarray(keypoints)
    if frames.ndim != 4 or keypoints.ndim != 3 or len(frames) != len(keypoints) or len(frames) == 0:
        raise ValueError(f"expected (F, H, W, 3) frames and (F, 17, 3) keypoints with the same F >= 1, got "
                         f"{frames.shape} and {keypoints.shape}")
    expected = expected_attributes(prompt)
    hits = np.zeros((len(frames), len(FIELDS)), np.float64)
    for index, (frame, points) in enumerate(zip(frames, keypoints)):
        correct = measure_attributes(frame, points).correct(expected)
        hits[index] = [correct[name] for name in FIELDS]
    out = {name: float(hits[:, i].mean()) for i, name in enumerate(FIELDS)}
    out["all"] = float(hits.all(axis=1).mean())
    return out


# ---------------------------------------------------------------------------------------------------------------
# Validation on ground-truth renders


def validation_render(index: int, size: int = 64):
    """(frame, keypoints, prompt) of validation render `index`: a random motion (real or procedural, any view
    in +-90 degrees, pitch, mirror) and a random prompt, drawn from ("oracle-validation", index)."""
    from fypbench.seeding import numpy_rng
    from fypbench.world.mini.grammar import compose, random_prompt
    from fypbench.world.mini.motion import PROCEDURAL_MOTIONS, REAL_CLIPS, MotionSpec, clip_duration
    from fypbench.world.mini.render import render_video

    rng = numpy_rng("fypbench.world.mini.oracle", "validation", index)
    if rng.random() < 0.5:
        name = str(rng.choice(REAL_CLIPS))
        spec = MotionSpec("real", name, num_frames=1, start=float(rng.uniform(0, clip_duration(name))),
                          view=float(rng.uniform(-90, 90)), pitch=float(rng.uniform(-8, 8)),
                          mirror=bool(rng.random() < 0.5))
    else:
        name = str(rng.choice(PROCEDURAL_MOTIONS))
        spec = MotionSpec("procedural", name, num_frames=1, start=float(rng.uniform(0, 2)),
                          view=float(rng.uniform(-90, 90)), pitch=float(rng.uniform(-8, 8)),
                          mirror=bool(rng.random() < 0.5), jitter=0.05, seed=index)
    parts = random_prompt(rng, motion=name)
    video = render_video(spec, parts.appearance, size=size, seed=int(rng.integers(0, 2**31)))
    return video.frames[0], video.keypoints[0], compose(parts)


def validate(renders: int = 300, size: int = 64, start: int = 0, blur: float = 0.0) -> dict[str, dict[str, float]]:
    """Accuracy of the oracle on validation renders start.. start+renders-1 (see validation_render), each blurred
    with a Gaussian of radius `blur` px first if > 0: {"all": {field: accuracy, "read as minecraft": share},
    "<style>": {field: accuracy, "renders": count, "read as minecraft": share}, ...}."""
    hits: dict[str, dict[str, float]] = {}
    for index in range(start, start + renders):
        frame, keypoints, prompt = validation_render(index, size)
        if blur > 0:
            frame = np.asarray(Image.fromarray(frame).filter(ImageFilter.GaussianBlur(blur)))
        expected = expected_attributes(prompt)
        measured = measure_attributes(frame, keypoints)
        correct = measured.correct(expected)
        for group in ("all", expected.style or "none"):
            row = hits.setdefault(group, {name: 0.0 for name in (*FIELDS, "renders", "read as minecraft")})
            row["renders"] += 1
            row["read as minecraft"] += float(measured.style == "minecraft")
            for name in FIELDS:
                row[name] += float(correct[name])
    return {group: {name: (value if name == "renders" else value / row["renders"]) for name, value in row.items()}
            for group, row in hits.items()}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Measure the attribute oracle on ground-truth renders.")
    parser.add_argument("--renders", type=int, default=300)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--blur", type=float, default=0.0, help="Gaussian blur radius (px) applied to every render")
    args = parser.parse_args(argv)
    if args.blur < 0:
        parser.error(f"--blur must be >= 0, got {args.blur}")
    began = time.perf_counter()
    accuracy = validate(args.renders, args.size, args.start, args.blur)
    seconds = time.perf_counter() - began
    columns = (*FIELDS, "read as minecraft")
    print(f"{'style':<20} {'renders':>7} " + " ".join(f"{name[:17]:>17}" for name in columns))
    for group in ["all", *sorted(g for g in accuracy if g != "all")]:
        row = accuracy[group]
        print(f"{group:<20} {int(row['renders']):>7} " + " ".join(f"{row[name]:>17.3f}" for name in columns))
    print(f"({args.renders} renders at {args.size} px, blur radius {args.blur} px, oracle version {ORACLE_VERSION}, "
          f"{seconds:.1f} s)")


if __name__ == "__main__":
    main()
