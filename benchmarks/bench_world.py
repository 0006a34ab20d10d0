"""Speed of the mini world on one core: forward kinematics and rendering per frame.

    OMP_NUM_THREADS=1 python benchmarks/bench_world.py

Prints FK ms/frame (real clips and procedural motions), render ms/frame at 64 px (plain, and with a scene and a
style) and at 256 px, the OpenPose/keypose map ms/frame at 512 px, and the ratio to the 10 ms budget of a 64-px
frame, then the fyp-1024 protocol build and load/validate time and the ground-truth render time per protocol
sample. Times are the median of several repeats (wall clock, time.perf_counter).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

from fypbench.sample import coco17_to_openpose18  # noqa: E402
from fypbench.world.mini import motion  # noqa: E402
from fypbench.world.mini.appearance import STYLES, Appearance  # noqa: E402
from fypbench.world.mini.camera import keypoints_normalised  # noqa: E402
from fypbench.world.mini.motion import MotionSpec  # noqa: E402
from fypbench.world.mini.render import render_video  # noqa: E402
from fypbench.world.mini.skeleton import draw_keypose_video, draw_openpose_video  # noqa: E402

BUDGET_MS_64 = 10.0
FRAMES = 16


def median_ms(action: Callable[[], object], repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def fk_ms_per_frame(kind: str, names: tuple[str, ...]) -> float:
    specs = [MotionSpec(kind, name, num_frames=FRAMES) for name in names]

    def run() -> None:
        for spec in specs:
            motion.forward_kinematics(motion.motion_frames(spec))

    return median_ms(run) / (len(specs) * FRAMES)


def render_ms_per_frame(size: int, scene: str, styles: tuple[str, ...]) -> float:
    spec = MotionSpec("real", "dance_a", num_frames=FRAMES, view=30.0)
    looks = [Appearance("girl", None, scene, style) for style in styles]
    motion.pose_sequence(spec)  # warm the clip cache; every render still runs FK through the cached sequence

    def run() -> None:
        for look in looks:
            render_video(spec, look, size=size, seed=1)

    return median_ms(run, repeats=3) / (len(looks) * FRAMES)


def main() -> None:
    print(f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, {FRAMES} frames per sequence")
    real = fk_ms_per_frame("real", motion.REAL_CLIPS)
    procedural = fk_ms_per_frame("procedural", motion.PROCEDURAL_MOTIONS)
    print(f"FK (sample + forward kinematics), real clips:       {real:.3f} ms/frame")
    print(f"FK (sample + forward kinematics), procedural:       {procedural:.3f} ms/frame")
    plain64 = render_ms_per_frame(64, "grey simple background", ("",))
    styled64 = render_ms_per_frame(64, "in the park", STYLES)
    plain256 = render_ms_per_frame(256, "grey simple background", ("",))
    styled256 = render_ms_per_frame(256, "in the park", STYLES)
    print(f"render 64 px, plain background, no style:           {plain64:.2f} ms/frame")
    print(f"render 64 px, park scene, mean over all 8 styles:   {styled64:.2f} ms/frame")
    print(f"render 256 px, plain background, no style:          {plain256:.2f} ms/frame")
    print(f"render 256 px, park scene, mean over all 8 styles:  {styled256:.2f} ms/frame")
    per_style = {}
    for style in STYLES:
        per_style[style] = render_ms_per_frame(64, "in the park", (style,))
        print(f"  64 px, park scene, style {style or 'none'!r:24s} {per_style[style]:.2f} ms/frame")
    kp = keypoints_normalised(MotionSpec("real", "walk", num_frames=FRAMES))
    keypose = median_ms(lambda: draw_keypose_video(kp, 512)) / FRAMES
    openpose = median_ms(lambda: draw_openpose_video(coco17_to_openpose18(kp), 512)) / FRAMES
    print(f"keypose map 512 px:                                 {keypose:.2f} ms/frame")
    print(f"openpose map 512 px:                                {openpose:.2f} ms/frame")
    worst64 = max(plain64, styled64, *per_style.values())
    print(f"64-px budget {BUDGET_MS_64:.0f} ms/frame: slowest case {worst64:.2f} ms "
          f"= {worst64 / BUDGET_MS_64:.2f} x budget ({'within' if worst64 <= BUDGET_MS_64 else 'OVER'})")
    from fypbench.protocol import load_protocol
    from fypbench.world.mini.fyp1024 import build
    from fypbench.world.mini.world import MiniWorld

    start = time.perf_counter()
    protocol = build()
    build_s = time.perf_counter() - start
    print(f"protocol build fyp-1024 (1024 samples, FK + prompts, in memory): {build_s:.2f} s")
    start = time.perf_counter()
    load_protocol("fyp-1024")
    print(f"protocol load + full validation + hash:                  {time.perf_counter() - start:.2f} s")
    world = MiniWorld()
    subset = protocol.samples[::16]
    start = time.perf_counter()
    for sample in subset:
        world.render_reference(sample)
    per_video = (time.perf_counter() - start) / len(subset)
    print(f"ground-truth render of a protocol sample (8 frames, 64 px): {per_video * 1000:.1f} ms/video "
          f"-> {per_video * len(protocol):.1f} s for all 1024")


if __name__ == "__main__":
    main()
