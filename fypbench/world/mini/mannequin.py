"""The mannequin figure renderer: capsule limbs, torso + belt, head with hair and face, as an RGBA layer.

    python -c "from fypbench.world.mini.render import render_video; from fypbench.world.mini.motion import MotionSpec; from fypbench.world.mini.appearance import NEUTRAL; print(render_video(MotionSpec('real', 'walk'), NEUTRAL).frames.shape)"

Input: one frame's projected joints (camera.CameraView.project: normalised x, y and depth in metres, in
motion.JOINT_NAMES order) and the framing scale (normalised units per metre). The figure is drawn with PIL at
`supersample` times the target size, parts in painter's order by depth (far first, far parts darker, a
highlight and a shadow stripe along each limb), then box-filtered down to the target size. The result is a
premultiplied RGBA float layer whose alpha is the figure's pixel coverage, so compositing needs no black mask:
`out = layer[..., :3] + (1 - layer[..., 3:]) * background`.

The face (eyes, nose, mouth) is always drawn when it points at the camera, hair otherwise: without it a 2D
pose detector confuses left and right far more often (reference/metrics.md §4).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from PIL import Image, ImageDraw

from fypbench.world.mini.motion import JOINT_INDEX

RGB = tuple[int, int, int]

# (joint a, joint b, radius in metres, palette slot); reference/mini_world.md §5
LIMBS: tuple[tuple[str, str, float, str], ...] = (
    ("right_hip", "right_knee", 0.075, "pants"), ("right_knee", "right_ankle", 0.058, "pants"),
    ("right_ankle", "right_toe", 0.045, "shoes"),
    ("left_hip", "left_knee", 0.075, "pants"), ("left_knee", "left_ankle", 0.058, "pants"),
    ("left_ankle", "left_toe", 0.045, "shoes"),
    ("right_shoulder", "right_elbow", 0.050, "shirt"), ("right_elbow", "right_wrist", 0.040, "skin"),
    ("right_wrist", "right_hand", 0.042, "skin"),
    ("left_shoulder", "left_elbow", 0.050, "shirt"), ("left_elbow", "left_wrist", 0.040, "skin"),
    ("left_wrist", "left_hand", 0.042, "skin"),
    ("neck", "head", 0.045, "skin"),
)
TORSO_EDGE_RADIUS = 0.05
SPINE_RADIUS = 0.10
BELT_RADIUS = 0.08
HEAD_RADIUS = (0.105, 0.115)  # across, along the head's up axis (metres)
EYE_RADIUS = 0.016
EYE_WHITE: RGB = (250, 250, 250)
PUPIL: RGB = (40, 30, 30)
MOUTH: RGB = (150, 60, 60)
LIGHT_DIRECTION = np.array([-1.0, -1.0]) / math.sqrt(2.0)  # light from the upper left of the image


def default_supersample(size: int) -> int:
    return 3 if size <= 128 else 2


def _shade(colour: RGB, factor: float) -> tuple[int, int, int, int]:
    return (*(int(min(255.0, max(0.0, c * factor))) for c in colour), 255)


class _Canvas:
    """PIL drawing in supersampled pixel coordinates for one frame."""

    def __init__(self, projected: np.ndarray, scale: float, size: int, supersample: int):
        self.side = size * supersample
        self.image = Image.new("RGBA", (self.side, self.side), (0, 0, 0, 0))
        self.draw = ImageDraw.Draw(self.image)
        self.metre = scale * self.side  # supersampled pixels per metre
        # normalised [0, 1] spans the pixel edges; PIL puts integer coordinates at pixel centres
        self.xy = projected[:, :2] * self.side - 0.5
        self.depth = projected[:, 2]

    def point(self, joint: str) -> np.ndarray:
        return self.xy[JOINT_INDEX[joint]]

    def disc(self, centre: np.ndarray, radius: float, fill: tuple[int, ...]) -> None:
        x, y = centre
        self.draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=fill)

    def capsule(self, a: np.ndarray, b: np.ndarray, radius: float, fill: tuple[int, ...], stripes: bool) -> None:
        self.draw.line([tuple(a), tuple(b)], fill=fill, width=max(1, round(2 * radius)))
        self.disc(a, radius, fill)
        self.disc(b, radius, fill)
        if not stripes or radius <= 2.0:
            return
        direction = b - a
        length = float(np.hypot(*direction))
        if length < 1e-6:
            return
        normal = np.array([-direction[1], direction[0]]) / length
        if float(normal @ LIGHT_DIRECTION) < 0:
            normal = -normal
        rgb = fill[:3]
        lit = normal * radius * 0.45
        self.draw.line([tuple(a + lit), tuple(b + lit)], fill=_shade(rgb, 1.2), width=max(1, round(0.55 * radius)))
        dark = -normal * radius * 0.6
        self.draw.line([tuple(a + dark), tuple(b + dark)], fill=_shade(rgb, 0.78),
                       width=max(1, round(0.35 * radius)))

    def ellipse_polygon(self, centre: np.ndarray, up: np.ndarray, across: float, along: float,
                        start_deg: float = 0.0, end_deg: float = 360.0, count: int = 24) -> list[tuple[float, float]]:
        right = np.array([-up[1], up[0]])
        angles = np.radians(np.linspace(start_deg, end_deg, count))
        points = centre + np.cos(angles)[:, None] * across * right + np.sin(angles)[:, None] * along * up
        return [tuple(p) for p in points]


def _torso(canvas: _Canvas, palette: Mapping[str, RGB], factor: float) -> None:
    shirt = _shade(palette["shirt"], factor)
    ls, rs = canvas.point("left_shoulder"), canvas.point("right_shoulder")
    lh, rh = canvas.point("left_hip"), canvas.point("right_hip")
    canvas.draw.polygon([tuple(ls), tuple(rs), tuple(rh), tuple(lh)], fill=shirt)
    edge = TORSO_EDGE_RADIUS * canvas.metre
    for a, b in ((ls, rs), (rs, rh), (rh, lh), (lh, ls)):
        canvas.capsule(a, b, edge, shirt, stripes=False)
    shoulders, hips = (ls + rs) / 2, (lh + rh) / 2
    canvas.capsule(shoulders * 0.85 + hips * 0.15, hips, SPINE_RADIUS * canvas.metre, shirt, stripes=False)
    canvas.capsule(lh, rh, BELT_RADIUS * canvas.metre, _shade(palette["pants"], factor), stripes=False)


def _head(canvas: _Canvas, palette: Mapping[str, RGB], factor: float) -> None:
    head, neck, nose = canvas.point("head"), canvas.point("neck"), canvas.point("nose")
    up = head - neck
    norm = float(np.hypot(*up))
    up = up / norm if norm > 1e-6 else np.array([0.0, -1.0])
    across, along = HEAD_RADIUS[0] * canvas.metre, HEAD_RADIUS[1] * canvas.metre
    skin, hair = _shade(palette["skin"], factor), _shade(palette["hair"], factor)
    canvas.draw.polygon(canvas.ellipse_polygon(head, up, across, along), fill=skin)
    depth_head = canvas.depth[JOINT_INDEX["head"]]
    facing = canvas.depth[JOINT_INDEX["nose"]] < depth_head
    if not facing:
        canvas.draw.polygon(canvas.ellipse_polygon(head, up, across, along), fill=hair)
        return
    # Hair: an arc of the head outline centred between "up" and "back", wider the more the head is in profile.
    nose_offset = nose - head
    profile = min(1.0, float(np.hypot(*nose_offset)) / (0.1 * canvas.metre))
    back = -nose_offset / (np.hypot(*nose_offset) + 1e-9)
    centre_dir = up + profile * back
    centre_dir = centre_dir / (np.hypot(*centre_dir) + 1e-9)
    right = np.array([-up[1], up[0]])
    centre_angle = math.degrees(math.atan2(float(centre_dir @ up), float(centre_dir @ right)))
    half_span = 70.0 + 35.0 * profile
    canvas.draw.polygon(canvas.ellipse_polygon(head, up, across * 1.06, along * 1.06,
                                               centre_angle - half_span, centre_angle + half_span, 16), fill=hair)
    eye = EYE_RADIUS * canvas.metre
    for name in ("left_eye", "right_eye"):
        if canvas.depth[JOINT_INDEX[name]] < depth_head:
            x, y = canvas.point(name)
            canvas.draw.ellipse([x - 1.4 * eye, y - eye, x + 1.4 * eye, y + eye], fill=(*EYE_WHITE, 255))
            canvas.disc(np.array([x, y]), 0.8 * eye, (*PUPIL, 255))
    canvas.disc(nose, eye, _shade(palette["skin"], 0.8 * factor))
    mouth = nose - up * 0.035 * canvas.metre
    half = 2.2 * eye * (1.0 - 0.5 * profile)
    canvas.draw.line([tuple(mouth - right * half), tuple(mouth + right * half)], fill=(*MOUTH, 255),
                     width=max(1, round(eye)))


def render_figure(projected: np.ndarray, scale: float, palette: Mapping[str, RGB], size: int,
                  supersample: int | None = None) -> np.ndarray:
    """One frame's figure: float32 (size, size, 4), premultiplied RGB in [0, 1] and alpha = coverage.

    projected: (len(JOINT_NAMES), 3) normalised x, y and depth (metres, larger = farther);
    scale: normalised units per metre (camera.Framing.scale); palette: skin, shirt, pants, shoes, hair.
    """
    projected = np.asarray(projected, np.float64)
    if projected.shape != (len(JOINT_INDEX), 3):
        raise ValueError(f"expected ({len(JOINT_INDEX)}, 3) projected joints, got {projected.shape}")
    missing = {"skin", "shirt", "pants", "shoes", "hair"} - set(palette)
    if missing:
        raise ValueError(f"palette lacks {sorted(missing)}")
    supersample = supersample or default_supersample(size)
    canvas = _Canvas(projected, scale, size, supersample)
    depth_mid = float(np.mean(canvas.depth))

    def depth_of(*joints: str) -> float:
        return float(np.mean([canvas.depth[JOINT_INDEX[j]] for j in joints]))

    # (depth, order, kind, limb index); order breaks ties deterministically
    items: list[tuple[float, int, str, int]] = [
        (depth_of("left_shoulder", "right_shoulder", "left_hip", "right_hip"), 0, "torso", -1)]
    neck_depth = depth_of("neck", "head")
    for index, (a, b, _, _) in enumerate(LIMBS):
        items.append((depth_of(a, b), index + 1, "limb", index))
    items.append((min(depth_of("head"), neck_depth) - 0.01, len(LIMBS) + 1, "head", -1))
    items.sort(key=lambda item: (-item[0], item[1]))
    for depth, _, kind, index in items:
        factor = 1.0 - 0.6 * float(np.clip(depth - depth_mid, -0.25, 0.25))
        if kind == "torso":
            _torso(canvas, palette, factor)
        elif kind == "head":
            _head(canvas, palette, factor)
        else:
            a, b, radius, slot = LIMBS[index]
            canvas.capsule(canvas.point(a), canvas.point(b), radius * canvas.metre,
                           _shade(palette[slot], factor), stripes=True)
    # Transparent pixels are (0, 0, 0, 0) and drawn ones opaque, so the raw RGB is already premultiplied and
    # a box average gives premultiplied colour and coverage.
    pixels = np.asarray(canvas.image, dtype=np.uint16).reshape(size, supersample, size, supersample, 4)
    return (pixels.sum(axis=(1, 3), dtype=np.uint32).astype(np.float32) / (255.0 * supersample * supersample))
