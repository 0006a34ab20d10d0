"""The mini world's attribute oracle: which character, colour, scene and style a frame shows (no CLIP).

    python -m fypbench.world.mini.oracle --renders 300

(the command measures the oracle's per-field accuracy on random ground-truth renders; see `validate`).

Every prompt word is a rendering parameter (reference/mini_world.md §7), so a frame can be checked against its
prompt by comparing colours with the renderer's own vocabulary:

- scene and style, jointly: the background away from the figure (outside the keypoints' bounding box, grown by
  the body's extent beyond its joints and the widest style filter's reach) is compared pixel by pixel with the
  96 reference backgrounds `scene.apply_style(scene.paint_scene(scene, size), style)`. The distance is the
  mean absolute difference over the best 90 % of those pixels (random stars and snowflakes differ from video to
  video). Matching the styled references measures every style cue at once: grayscale, 4-px/2-px blocks
  (minecraft/pixel art), quantised levels and black edges (cartoon), the warm shift (sunset), the swirl and
  saturation (van gogh) and the smoothing (watercolor), and it separates a warm scene from a sunset.
- character and colour, jointly over the 49 subjects (13 characters, the 4 recolourable ones also in 9 colours):
  colours are sampled at points derived from the keypoints: the torso quad and upper arms (shirt), the belt,
  thighs and shins (trousers), forearms and hands (skin), the top of the head (hair), the face (skin when the
  face is towards the camera, hair when it is away, decided by the ears' left/right order) and below the
  ankles (shoes). A sample is compared with the subject's slot colour put through the detected style (the style
  filter applied to flat swatches of the colour at several shading factors, since the renderer darkens far
  parts and draws highlight/shadow stripes), also as a mix with the reference background at that pixel
  (anti-aliased and pixelated edges). A slot's score is the median sample distance; a subject's score the
  weighted sum over slots.

Scores become posteriors with a softmax (temperatures below) and are marginalised per field, which gives each
field's confidence. `attribute_accuracy` scores a whole video as the fraction of frames whose field is
recovered (the mean over frames, not a majority vote).
"""

from __future__ import annotations

import argparse
import functools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from fypbench.world.mini.appearance import CHARACTERS, COLOURS, PALETTE_SLOTS, RECOLOURABLE, SCENES, STYLES, Appearance
from fypbench.world.mini.grammar import parse
from fypbench.world.mini.scene import apply_style, paint_scene

FIELDS = ("character", "colour", "scene", "style")

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
# How far the drawn body reaches beyond its joints' bounding box (head top, hands, toes, limb radius), metres.
BODY_REACH_M = 0.24
# Reach of the widest spatial style filter (minecraft blocks) as a fraction of the frame side.
STYLE_REACH = 1.0 / 16.0
BACKGROUND_TRIM = 0.9          # fraction of background pixels kept (the best-matching ones)
MIN_BACKGROUND_PIXELS = 64
SHADING_FACTORS = (0.6, 0.7, 0.78, 0.86, 0.94, 1.0, 1.08, 1.16, 1.25, 1.35)
MIX_WEIGHTS = (1.0, 0.75, 0.5)  # figure share of a sampled pixel (the rest: reference background)
# Softmax temperatures (distances are in 0-255 intensity units).
BACKGROUND_TEMPERATURE = 2.0
SUBJECT_TEMPERATURE = 6.0

SLOT_WEIGHTS: dict[str, float] = {"shirt": 1.0, "pants": 1.0, "skin": 0.6, "hair": 0.5, "face": 0.5, "shoes": 0.5}


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


@functools.lru_cache(maxsize=4)
def _reference_backgrounds(size: int) -> np.ndarray:
    """float32 (len(BACKGROUNDS), size, size, 3): every scene in every style (scene seed 0)."""
    painted = {scene: paint_scene(scene, size, seed=0) for scene in SCENES}
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


@functools.lru_cache(maxsize=8)
def _styled_slot_colours(style: str) -> np.ndarray:
    """float32 (len(SUBJECTS), len(PALETTE_SLOTS), len(SHADING_FACTORS), 3): each palette colour, shaded by each
    factor, as the style renders a flat area of it (median of a swatch's interior after scene.apply_style).

    The swatches are 64 px wide rows of 8 px (aligned with the pixelation blocks), stacked vertically, so the
    median runs over the van gogh swirl and the minecraft block shading along a row.
    """
    palettes = _subject_palettes()
    colours = np.clip(palettes[:, :, None, :] * np.asarray(SHADING_FACTORS, np.float32)[None, None, :, None], 0, 255)
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


def _figure_box(points: np.ndarray, visible: np.ndarray, scale: float, size: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) pixel box (exclusive end) that contains the figure and the style filters' reach."""
    reach = BODY_REACH_M * scale + STYLE_REACH * size + 1.0
    used = points[visible] if np.any(visible) else points
    low = np.floor(used.min(axis=0) - reach).astype(int)
    high = np.ceil(used.max(axis=0) + reach).astype(int) + 1
    x0, y0 = np.clip(low, 0, size)
    x1, y1 = np.clip(high, 0, size)
    return int(x0), int(y0), int(x1), int(y1)


def _along(a: np.ndarray, b: np.ndarray, ts: Sequence[float]) -> list[np.ndarray]:
    return [a + (b - a) * t for t in ts]


def _unit(v: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    n = float(np.hypot(*v))
    return v / n if n > 1e-6 else fallback


def _sample_points(points: np.ndarray, scale: float) -> dict[str, list[np.ndarray]]:
    """Pixel positions (x, y) per colour slot; "face" is skin or hair depending on the head's orientation."""
    p = points
    ls, rs, lh, rh = p[LEFT_SHOULDER], p[RIGHT_SHOULDER], p[LEFT_HIP], p[RIGHT_HIP]
    slots: dict[str, list[np.ndarray]] = {name: [] for name in SLOT_WEIGHTS}
    # shirt: the torso quad above the belt, and the upper arms
    for v in (0.15, 0.35, 0.55, 0.7):
        top, bottom = ls + (lh - ls) * v, rs + (rh - rs) * v
        slots["shirt"] += _along(top, bottom, (0.2, 0.5, 0.8))
    for shoulder, elbow in ((ls, p[LEFT_ELBOW]), (rs, p[RIGHT_ELBOW])):
        slots["shirt"] += _along(shoulder, elbow, (0.4, 0.6))
    # trousers: the belt along the hip line, thighs, shins
    slots["pants"] += _along(lh, rh, (0.25, 0.5, 0.75))
    for hip, knee, ankle in ((lh, p[LEFT_KNEE], p[LEFT_ANKLE]), (rh, p[RIGHT_KNEE], p[RIGHT_ANKLE])):
        slots["pants"] += _along(hip, knee, (0.35, 0.6)) + _along(knee, ankle, (0.3, 0.6))
    # skin: forearms and hands
    for elbow, wrist in ((p[LEFT_ELBOW], p[LEFT_WRIST]), (p[RIGHT_ELBOW], p[RIGHT_WRIST])):
        slots["skin"] += _along(elbow, wrist, (0.45, 0.75))
        slots["skin"].append(wrist + _unit(wrist - elbow, np.zeros(2)) * 0.06 * scale)
    # head: centre between the ears (1 cm below their level), up = away from the shoulders
    ears = (p[LEFT_EAR] + p[RIGHT_EAR]) / 2
    up = _unit(ears - (ls + rs) / 2, np.array([0.0, -1.0]))
    across = np.array([-up[1], up[0]])
    centre = ears - up * 0.01 * scale
    slots["hair"] += [centre + up * 0.085 * scale + across * d * scale for d in (-0.03, 0.0, 0.03)]
    slots["face"] += [centre - up * 0.07 * scale] + [centre + across * d * scale - up * 0.01 * scale
                                                    for d in (-0.065, 0.065)]
    # shoes: a little beyond each ankle along the shin
    for knee, ankle in ((p[LEFT_KNEE], p[LEFT_ANKLE]), (p[RIGHT_KNEE], p[RIGHT_ANKLE])):
        slots["shoes"].append(ankle + _unit(ankle - knee, np.array([0.0, 1.0])) * 0.075 * scale)
    return slots


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


def _softmax(scores: np.ndarray, temperature: float) -> np.ndarray:
    z = -(scores - scores.min()) / temperature
    e = np.exp(z)
    return e / e.sum()


def _background_scores(frame: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    size = frame.shape[0]
    keep = np.ones((size, size), bool)
    x0, y0, x1, y1 = box
    keep[y0:y1, x0:x1] = False
    if keep.sum() < MIN_BACKGROUND_PIXELS:
        # the figure fills the frame: fall back to the frame's border rows and columns
        keep[:] = False
        border = max(2, size // 16)
        keep[:border], keep[-border:], keep[:, :border], keep[:, -border:] = True, True, True, True
    references = _reference_backgrounds(size)[:, keep]  # (B, N, 3)
    observed = frame[keep].astype(np.float32)[None]
    distances = np.abs(references - observed).mean(axis=2)  # (B, N)
    kept = max(1, int(math.ceil(BACKGROUND_TRIM * distances.shape[1])))
    return np.partition(distances, kept - 1, axis=1)[:, :kept].mean(axis=1)


def _read(frame: np.ndarray, xy: np.ndarray) -> tuple[np.ndarray, bool]:
    size = frame.shape[0]
    x, y = int(math.floor(xy[0])), int(math.floor(xy[1]))
    if not (0 <= x < size and 0 <= y < size):
        return np.zeros(3, np.float32), False
    return frame[y, x].astype(np.float32), True


def _slot_scores(frame: np.ndarray, points: np.ndarray, scale: float, style: str,
                 background: np.ndarray) -> dict[str, np.ndarray]:
    """Per slot, (len(SUBJECTS),) median distance of the slot's samples to each subject's styled colour."""
    references = _styled_slot_colours(style)  # (S, slots, F, 3)
    slot_index = {name: i for i, name in enumerate(PALETTE_SLOTS)}
    facing = _facing_camera(points, scale)
    samples = _sample_points(points, scale)
    mix = np.asarray(MIX_WEIGHTS, np.float32)[:, None, None, None]  # (M, 1, 1, 1)
    scores: dict[str, np.ndarray] = {}
    for slot in SLOT_WEIGHTS:
        if slot == "face":
            palette_slots = ["skin"] if facing > 0 else ["hair"] if facing < 0 else ["skin", "hair"]
        else:
            palette_slots = [slot]
        candidates = np.concatenate([references[:, slot_index[s]] for s in palette_slots], axis=1)  # (S, K, 3)
        per_sample = []
        for xy in samples[slot]:
            observed, inside = _read(frame, xy)
            if not inside:
                continue
            back, _ = _read(background, xy)
            mixed = mix * candidates[None] + (1.0 - mix) * back[None, None, None]  # (M, S, K, 3)
            distance = np.sqrt(((mixed - observed) ** 2).sum(axis=-1))  # (M, S, K)
            per_sample.append(distance.min(axis=(0, 2)))
        if per_sample:
            scores[slot] = np.median(np.stack(per_sample), axis=0)
    return scores


def _subject_scores(frame: np.ndarray, points: np.ndarray, scale: float, style: str,
                    background: np.ndarray) -> np.ndarray:
    total = np.zeros(len(SUBJECTS), np.float64)
    for slot, score in _slot_scores(frame, points, scale, style, background).items():
        total += SLOT_WEIGHTS[slot] * score
    return total


def measure_attributes(frame: np.ndarray, keypoints: np.ndarray) -> MeasuredAttributes:
    """Read character, colour, scene and style off one frame, given the frame's normalised COCO-17 keypoints.

    frame: uint8 (H, W, 3), square; keypoints: (17, 3) x, y in [0, 1], visibility 0/1.
    """
    frame, keypoints = _validate(frame, keypoints)
    size = frame.shape[0]
    points = keypoints[:, :2] * size  # pixel units: x, y
    visible = keypoints[:, 2] > 0.5
    scale = _pixels_per_metre(points)
    box = _figure_box(points, visible, scale, size)

    background_p = _softmax(_background_scores(frame, box), BACKGROUND_TEMPERATURE)
    best_background = int(np.argmax(background_p))
    scene_p = {scene: 0.0 for scene in SCENES}
    style_p = {style: 0.0 for style in STYLES}
    for (scene, style), prob in zip(BACKGROUNDS, background_p):
        scene_p[scene] += float(prob)
        style_p[style] += float(prob)
    style = max(style_p, key=style_p.get)
    scene = max(scene_p, key=scene_p.get)
    reference = _reference_backgrounds(size)[BACKGROUNDS.index((scene, style))
                                             if (scene, style) in BACKGROUNDS else best_background]

    subject_p = _softmax(_subject_scores(frame, points, scale, style, reference), SUBJECT_TEMPERATURE)
    character_p = {character: 0.0 for character in CHARACTERS}
    for (character, _), prob in zip(SUBJECTS, subject_p):
        character_p[character] += float(prob)
    character = max(character_p, key=character_p.get)
    colour_p: dict[str | None, float] = {}
    for (subject_character, colour), prob in zip(SUBJECTS, subject_p):
        if subject_character == character:
            colour_p[colour] = colour_p.get(colour, 0.0) + float(prob)
    colour = max(colour_p, key=lambda c: colour_p[c])
    confidence = {
        "character": character_p[character],
        "colour": colour_p[colour] / max(character_p[character], 1e-12),
        "scene": scene_p[scene],
        "style": style_p[style],
    }
    return MeasuredAttributes(
        character=character, colour=colour, scene=scene, style=style, confidence=confidence,
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


def validate(renders: int = 300, size: int = 64, start: int = 0) -> dict[str, float]:
    """Per-field accuracy of the oracle on `renders` validation renders (see validation_render)."""
    hits = {name: 0 for name in FIELDS}
    for index in range(start, start + renders):
        frame, keypoints, prompt = validation_render(index, size)
        correct = measure_attributes(frame, keypoints).correct(expected_attributes(prompt))
        for name in FIELDS:
            hits[name] += int(correct[name])
    return {name: hits[name] / renders for name in FIELDS}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Measure the attribute oracle on ground-truth renders.")
    parser.add_argument("--renders", type=int, default=300)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args(argv)
    began = time.perf_counter()
    accuracy = validate(args.renders, args.size)
    seconds = time.perf_counter() - began
    print(" ".join(f"{name}={value:.3f}" for name, value in accuracy.items()),
          f"(renders={args.renders}, size={args.size}, {seconds:.1f} s)")


if __name__ == "__main__":
    main()
