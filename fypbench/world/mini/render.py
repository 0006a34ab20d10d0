"""Render a mini-world video: (motion spec, appearance) -> frames, keypoints and the figure's alpha mask.

    python -c "from fypbench.world.mini.render import render_video; from fypbench.world.mini.motion import MotionSpec; from fypbench.world.mini.appearance import Appearance; v = render_video(MotionSpec('real', 'run'), Appearance('spider man', None, 'on the moon', 'cartoon')); print(v.frames.shape, v.keypoints.shape, v.mask.mean())"

Per frame: the mannequin layer (mannequin.render_figure, drawn at the target size with supersampling) is alpha
composited over the scene background (scene.paint_scene, painted once per video from `seed`), then the style
filter (scene.apply_style) is applied to the whole frame. `mask` is the figure's alpha before the style filter.
Deterministic: the same inputs give identical bytes (no global random state; numpy and PIL only).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fypbench.world.mini import camera, mannequin, motion, scene
from fypbench.world.mini.appearance import Appearance
from fypbench.world.mini.motion import MotionSpec

# Bump whenever a change to motion, camera, mannequin, scene or style code changes rendered pixels: it is part of
# the `reference` method's config hash, so cached ground-truth videos are regenerated.
RENDERER_VERSION = 1


@dataclass(frozen=True, eq=False)
class RenderedVideo:
    frames: np.ndarray     # uint8 (F, H, W, 3)
    keypoints: np.ndarray  # float32 (F, 17, 3) normalised, identical to camera.keypoints_normalised(spec)
    mask: np.ndarray       # float32 (F, H, W) figure alpha in [0, 1]


def render_video(spec: MotionSpec, appearance: Appearance, size: int = 64, seed: int = 0) -> RenderedVideo:
    """Render `spec` with `appearance` as square frames of side `size`; `seed` fixes the scene's random parts."""
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 8:
        raise ValueError(f"size must be an integer >= 8, got {size!r}")
    size = int(size)
    sequence = motion.pose_sequence(spec)
    view = camera.view_for(spec, sequence)
    projected = view.project(sequence.joints)
    palette = appearance.palette()
    background = scene.paint_scene(appearance.scene, size, seed).astype(np.float32) / 255.0
    frames = np.empty((spec.num_frames, size, size, 3), np.uint8)
    mask = np.empty((spec.num_frames, size, size), np.float32)
    for index in range(spec.num_frames):
        layer = mannequin.render_figure(projected[index], view.framing.scale, palette, size)
        alpha = layer[..., 3]
        composite = layer[..., :3] + (1.0 - alpha[..., None]) * background
        frame = np.clip(np.round(composite * 255.0), 0, 255).astype(np.uint8)
        frames[index] = scene.apply_style(frame, appearance.style)
        mask[index] = np.clip(alpha, 0.0, 1.0)
    return RenderedVideo(frames=frames, keypoints=camera.coco_keypoints(projected), mask=mask)
