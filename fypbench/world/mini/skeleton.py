"""Pose conditioning maps: Follow-Your-Pose keypose (COCO-17) and OpenPose-18 (ControlNet), any resolution.

    python -c "from fypbench.world.mini.skeleton import draw_keypose; from fypbench.world.mini.camera import keypoints_normalised; from fypbench.world.mini.motion import MotionSpec; print(draw_keypose(keypoints_normalised(MotionSpec('real', 'walk'))[0], 512).max())"

Keypoints are normalised (x, y in [0, 1] of the width and height, third value visibility/score); a link is drawn
only when both of its ends have visibility >= `threshold`. Both styles draw on a black background and are
deterministic (PIL, no anti-aliasing).

Keypose (reference/followpose.md §8): the 19 mmpose COCO links in mmpose order, coloured as they appear in the
released FYP examples (RGB): the subject's left limbs (0, 255, 0), right limbs (0, 128, 255), torso, face and ear
links (255, 153, 51); lines ~1.2 % of the shorter side wide (at least 1 px) with round ends, no joint circles.

OpenPose (ControlNet v1.1 annotator `draw_bodypose`): 18 keypoints in OpenPose-18 order
(fypbench.sample.coco17_to_openpose18), joint circles in the 18-colour table first, then the 17 limbs as filled
ellipses blended over the canvas at 60 % opacity. The annotator's 4-px stick half-width and circle radius refer to
a 512-px map; they scale with the shorter side here (at least 1 px).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from fypbench.sample import COCO17_NAMES, coco17_to_openpose18
from fypbench.world.mini.scene import SizeLike, height_width

RGB = tuple[int, int, int]

KEYPOSE_LEFT: RGB = (0, 255, 0)
KEYPOSE_RIGHT: RGB = (0, 128, 255)
KEYPOSE_CENTRE: RGB = (255, 153, 51)
KEYPOSE_WIDTH_FRACTION = 0.012

_COCO = {name: i for i, name in enumerate(COCO17_NAMES)}
# (joint a, joint b, colour) in mmpose's COCO skeleton order
KEYPOSE_LINKS: tuple[tuple[int, int, RGB], ...] = tuple(
    (_COCO[a], _COCO[b], colour) for a, b, colour in (
        ("left_ankle", "left_knee", KEYPOSE_LEFT), ("left_knee", "left_hip", KEYPOSE_LEFT),
        ("right_ankle", "right_knee", KEYPOSE_RIGHT), ("right_knee", "right_hip", KEYPOSE_RIGHT),
        ("left_hip", "right_hip", KEYPOSE_CENTRE), ("left_shoulder", "left_hip", KEYPOSE_CENTRE),
        ("right_shoulder", "right_hip", KEYPOSE_CENTRE), ("left_shoulder", "right_shoulder", KEYPOSE_CENTRE),
        ("left_shoulder", "left_elbow", KEYPOSE_LEFT), ("right_shoulder", "right_elbow", KEYPOSE_RIGHT),
        ("left_elbow", "left_wrist", KEYPOSE_LEFT), ("right_elbow", "right_wrist", KEYPOSE_RIGHT),
        ("left_eye", "right_eye", KEYPOSE_CENTRE), ("nose", "left_eye", KEYPOSE_CENTRE),
        ("nose", "right_eye", KEYPOSE_CENTRE), ("left_eye", "left_ear", KEYPOSE_CENTRE),
        ("right_eye", "right_ear", KEYPOSE_CENTRE), ("left_ear", "left_shoulder", KEYPOSE_CENTRE),
        ("right_ear", "right_shoulder", KEYPOSE_CENTRE),
    ))

# OpenPose-18 limbs (0-based; the annotator's 1-based limbSeq minus one, first 17) and colour table
OPENPOSE_LIMBS: tuple[tuple[int, int], ...] = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13),
    (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)
OPENPOSE_COLOURS: tuple[RGB, ...] = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0), (0, 255, 0),
    (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255),
    (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)
OPENPOSE_REFERENCE_SIDE = 512
OPENPOSE_STICK = 4   # ellipse half-width at 512 px
OPENPOSE_RADIUS = 4  # joint circle radius at 512 px
OPENPOSE_LIMB_OPACITY = 0.6


def _keypoints(keypoints: np.ndarray, count: int) -> np.ndarray:
    points = np.asarray(keypoints, dtype=np.float64)
    if points.shape == (count, 2):
        points = np.concatenate([points, np.ones((count, 1))], axis=1)
    if points.shape != (count, 3):
        raise ValueError(f"expected ({count}, 3) keypoints (x, y, visibility), got {points.shape}")
    return points


def keypose_line_width(height: int, width: int) -> int:
    return max(1, round(KEYPOSE_WIDTH_FRACTION * min(height, width)))


def draw_keypose(keypoints17: np.ndarray, size: SizeLike, threshold: float = 0.5) -> np.ndarray:
    """Follow-Your-Pose style COCO-17 map: uint8 (H, W, 3) on black."""
    points = _keypoints(keypoints17, 17)
    height, width = height_width(size)
    image = Image.new("RGB", (width, height), (0, 0, 0))
    draw = ImageDraw.Draw(image)
    line = keypose_line_width(height, width)
    pixel = np.stack([points[:, 0] * width - 0.5, points[:, 1] * height - 0.5], axis=1)
    visible = points[:, 2] >= threshold
    for a, b, colour in KEYPOSE_LINKS:
        if not (visible[a] and visible[b]):
            continue
        start, end = tuple(pixel[a]), tuple(pixel[b])
        draw.line([start, end], fill=colour, width=line)
        if line >= 3:  # round ends, as OpenCV draws thick lines
            radius = (line - 1) / 2.0
            for x, y in (start, end):
                draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colour)
    return np.asarray(image, dtype=np.uint8).copy()


def _ellipse_polygon(centre: tuple[int, int], half_length: int, half_width: int,
                     angle_deg: int) -> list[tuple[float, float]]:
    """The outline cv2.ellipse2Poly would give (1-degree steps), as float points."""
    angle = math.radians(angle_deg)
    c, s = math.cos(angle), math.sin(angle)
    points = []
    for step in range(0, 361):
        t = math.radians(step)
        x, y = half_length * math.cos(t), half_width * math.sin(t)
        points.append((centre[0] + x * c - y * s, centre[1] + x * s + y * c))
    return points


def draw_openpose(keypoints18: np.ndarray, size: SizeLike, threshold: float = 0.5) -> np.ndarray:
    """ControlNet-style OpenPose-18 body map: uint8 (H, W, 3) on black."""
    points = _keypoints(keypoints18, 18)
    height, width = height_width(size)
    scale = min(height, width) / OPENPOSE_REFERENCE_SIDE
    stick = max(1, round(OPENPOSE_STICK * scale))
    radius = max(1, round(OPENPOSE_RADIUS * scale))
    visible = points[:, 2] >= threshold
    canvas = Image.new("RGB", (width, height), (0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    for index in range(18):
        if visible[index]:
            x, y = int(points[index, 0] * width), int(points[index, 1] * height)
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=OPENPOSE_COLOURS[index])
    pixels = np.asarray(canvas, dtype=np.float32).copy()
    for limb, (a, b) in enumerate(OPENPOSE_LIMBS):
        if not (visible[a] and visible[b]):
            continue
        xs = points[[a, b], 0] * width
        ys = points[[a, b], 1] * height
        length = math.hypot(xs[0] - xs[1], ys[0] - ys[1])
        angle = math.degrees(math.atan2(ys[0] - ys[1], xs[0] - xs[1]))
        polygon = np.asarray(_ellipse_polygon((int(xs.mean()), int(ys.mean())), int(length / 2), stick, int(angle)))
        # rasterise in the polygon's bounding box only, clipped to the canvas
        x0, y0 = max(0, int(math.floor(polygon[:, 0].min()))), max(0, int(math.floor(polygon[:, 1].min())))
        x1 = min(width, int(math.ceil(polygon[:, 0].max())) + 1)
        y1 = min(height, int(math.ceil(polygon[:, 1].max())) + 1)
        if x1 <= x0 or y1 <= y0:
            continue
        mask_image = Image.new("L", (x1 - x0, y1 - y0), 0)
        ImageDraw.Draw(mask_image).polygon([(x - x0, y - y0) for x, y in polygon], fill=255)
        mask = np.asarray(mask_image) > 0
        region = pixels[y0:y1, x0:x1]
        colour = np.asarray(OPENPOSE_COLOURS[limb], np.float32)
        region[mask] = np.round((1.0 - OPENPOSE_LIMB_OPACITY) * region[mask] + OPENPOSE_LIMB_OPACITY * colour)
    return pixels.astype(np.uint8)


def draw_keypose_video(keypoints: np.ndarray, size: SizeLike, threshold: float = 0.5) -> np.ndarray:
    """(F, 17, 3) -> uint8 (F, H, W, 3)."""
    keypoints = np.asarray(keypoints)
    if keypoints.ndim != 3:
        raise ValueError(f"expected (F, 17, 3) keypoints, got {keypoints.shape}")
    return np.stack([draw_keypose(frame, size, threshold) for frame in keypoints])


def draw_openpose_video(keypoints: np.ndarray, size: SizeLike, threshold: float = 0.5) -> np.ndarray:
    """(F, 18, 3) -> uint8 (F, H, W, 3)."""
    keypoints = np.asarray(keypoints)
    if keypoints.ndim != 3:
        raise ValueError(f"expected (F, 18, 3) keypoints, got {keypoints.shape}")
    return np.stack([draw_openpose(frame, size, threshold) for frame in keypoints])


def draw_openpose_from_coco(keypoints17: np.ndarray, size: SizeLike, threshold: float = 0.5) -> np.ndarray:
    """COCO-17 keypoints -> OpenPose-18 (neck = shoulder midpoint) -> map; (17, 3) or (F, 17, 3)."""
    keypoints18 = coco17_to_openpose18(np.asarray(keypoints17))
    if keypoints18.ndim == 3:
        return draw_openpose_video(keypoints18, size, threshold)
    return draw_openpose(keypoints18, size, threshold)
