"""Previews of one protocol sample as the mini world sees it.

    fypbench world render --protocol fyp-1024 --sample s00p00 --out /tmp/s00p00

Writes <id>.mp4 and <id>.gif (ground truth beside its Follow-Your-Pose skeleton) and <id>_sheet.png (rows:
ground truth, keypose skeleton (COCO-17, Follow-Your-Pose style), OpenPose-18 skeleton, neutral source video).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from fypbench.media import contact_sheet, upscale, write_gif, write_mp4, write_png
from fypbench.sample import Sample

PREVIEW_SIDE = 256


def write_sample_previews(world, sample: Sample, out: str | os.PathLike, size: int = 64) -> list[Path]:
    from fypbench.world.mini.skeleton import draw_keypose_video, draw_openpose_video

    out = Path(out)
    reference = world.render_reference(sample, size=size).frames
    keypose = draw_keypose_video(sample.keypoints, size)
    openpose = draw_openpose_video(sample.openpose, size)
    source = world.render_source(sample, size=size).frames
    factor = max(1, PREVIEW_SIDE // size)
    side_by_side = upscale(np.concatenate([reference, keypose], axis=2), factor)
    paths = [write_mp4(out / f"{sample.id}.mp4", side_by_side), write_gif(out / f"{sample.id}.gif", side_by_side)]
    sheet = contact_sheet([(f"{sample.id} truth", upscale(reference, 2)), ("keypose (FYP)", upscale(keypose, 2)),
                           ("openpose-18", upscale(openpose, 2)), ("source (neutral)", upscale(source, 2))])
    paths.append(write_png(out / f"{sample.id}_sheet.png", sheet))
    return paths
