"""Builder of the fyp-1024 protocol: 64 pose sequences x 16 prompts, 8 frames each.

    fypbench protocol build fyp-1024

The design (deterministic: every draw comes from numpy_rng("fyp-1024", ...)):
- 64 pose sequences: 32 real mocap windows (each of the 15 DeepMimic humanoid clips twice, with different start
  times and views, plus 2 walker clips) and 32 procedural sequences (each of the 12 motions twice plus 8 more),
  with evaluation-only seeds (splits.eval_seed). 8 frames at stride 4 of a 30 fps timeline (7.5 fps, ~1 s).
- Cameras: each of the 8 views (0, +-30, +-60, +-90 degrees, 0 twice) is used by 4 real and 4 procedural
  sequences; pitch in [-8, 8] degrees; half the sequences mirrored.
- 16 prompts per sequence: 12 whose appearance/motion combination training has seen and 4 from the held-out
  combinations (splits), so the seen/unseen slices have 768/256 samples; half of the prompts name the motion's verb.
Tags: motion, motion_source (real/procedural), motion_class (upright/floor), motion_split (seen/unseen),
camera (frontal/oblique/profile), character, colour, scene, style, combination (seen/unseen), verb (yes/no).
"""

from __future__ import annotations

import numpy as np

from fypbench.protocol import Protocol
from fypbench.sample import Sample, coco17_to_openpose18
from fypbench.seeding import numpy_rng, sample_seed

NAME = "fyp-1024"
BASE_SEED = 33  # the official Follow-Your-Pose seed
NUM_FRAMES = 8
FPS = 30.0
STRIDE = 4
PROMPTS_PER_SEQUENCE = 16
UNSEEN_PROMPTS_PER_SEQUENCE = 4
VIEWS = (0.0, 30.0, -30.0, 60.0, -60.0, 90.0, -90.0, 0.0)
PITCH_RANGE = 8.0
FLOOR_MOTIONS = ("roll", "crawl", "getup_facedown", "getup_faceup", "cartwheel", "backflip")
WALKER_CLIPS = ("walker_forward", "walker_turn_right1")  # the second is a held-out motion
PROCEDURAL_EXTRA = 8
BUILDER_VERSION = 1


def camera_tag(view: float) -> str:
    view = abs(view)
    return "frontal" if view <= 30 else "oblique" if view <= 60 else "profile"


def _sequence_plan() -> list[tuple[str, str]]:
    from fypbench.world.mini.motion import PROCEDURAL_MOTIONS, REAL_CLIPS

    humanoid = [c for c in REAL_CLIPS if not c.startswith("walker")]
    walkers = [c for c in REAL_CLIPS if c in WALKER_CLIPS]
    real = [("real", c) for c in humanoid for _ in range(2)] + [("real", c) for c in walkers]
    procedural = [("procedural", m) for m in PROCEDURAL_MOTIONS for _ in range(2)]
    procedural += [("procedural", m) for m in PROCEDURAL_MOTIONS[:PROCEDURAL_EXTRA]]
    return real + procedural


def _motion_specs():
    from fypbench.world.mini import splits
    from fypbench.world.mini.motion import MotionSpec, clip_duration

    plan = _sequence_plan()
    specs = []
    for source in ("real", "procedural"):
        indices = [k for k, (kind, _) in enumerate(plan) if kind == source]
        views = np.array(VIEWS * (len(indices) // len(VIEWS) + 1))[: len(indices)]
        views = numpy_rng(NAME, "views", source).permutation(views)
        for view, k in zip(views, indices):
            kind, name = plan[k]
            rng = numpy_rng(NAME, "sequence", k)
            pitch = round(float(rng.uniform(-PITCH_RANGE, PITCH_RANGE)), 1)
            mirror = bool(rng.random() < 0.5)
            window = (NUM_FRAMES - 1) * STRIDE / FPS
            if kind == "real":
                duration = clip_duration(name)
                start = round(float(rng.uniform(0.0, max(duration - window, 0.0))), 2)
                spec = MotionSpec(kind="real", name=name, num_frames=NUM_FRAMES, fps=FPS, stride=STRIDE,
                                  start=start, mirror=mirror, view=float(view), pitch=pitch)
            else:
                spec = MotionSpec(kind="procedural", name=name, num_frames=NUM_FRAMES, fps=FPS, stride=STRIDE,
                                  start=round(float(rng.uniform(0.0, 1.0)), 2), mirror=mirror, view=float(view),
                                  pitch=pitch, amplitude=round(float(rng.uniform(0.85, 1.15)), 2),
                                  jitter=0.05, seed=splits.eval_seed(NAME, k))
            specs.append((k, spec))
    return [spec for _, spec in sorted(specs, key=lambda item: item[0])]


def build() -> Protocol:
    from fypbench.world.mini import splits
    from fypbench.world.mini.appearance import CHARACTERS, COLOURS, SCENES, STYLES
    from fypbench.world.mini.camera import keypoints_normalised
    from fypbench.world.mini.grammar import compose, random_prompt

    samples: list[Sample] = []
    for k, spec in enumerate(_motion_specs()):
        keypoints = keypoints_normalised(spec).astype(np.float32)
        openpose = coco17_to_openpose18(keypoints).astype(np.float32)
        motion_tags = {
            "motion": spec.name, "motion_source": spec.kind,
            "motion_class": "floor" if spec.name in FLOOR_MOTIONS else "upright",
            "motion_split": "unseen" if (spec.kind, spec.name) in splits.HELD_OUT_MOTIONS else "seen",
            "camera": camera_tag(spec.view),
        }
        for j in range(PROMPTS_PER_SEQUENCE):
            rng = numpy_rng(NAME, "prompt", k, j)
            want = "unseen" if j < UNSEEN_PROMPTS_PER_SEQUENCE else "seen"
            parts = random_prompt(rng, motion=spec.name, verb_probability=0.5,
                                  allow=lambda a, m, want=want: splits.combination_split(a, m) == want)
            sample_id = f"s{k:02d}p{j:02d}"
            a = parts.appearance
            tags = dict(motion_tags, character=a.character, colour=a.colour or "none", scene=a.scene,
                        style=a.style or "none", combination=want, verb="yes" if parts.verb else "no")
            samples.append(Sample(id=sample_id, prompt=compose(parts), keypoints=keypoints, openpose=openpose,
                                  seed=sample_seed(BASE_SEED, sample_id),
                                  source={"world": "mini", "motion": spec.to_dict()}, tags=tags))
    from fypbench.world.mini.motion import PROCEDURAL_MOTIONS, REAL_CLIPS

    tag_vocabulary = {
        "motion": sorted(set(REAL_CLIPS) | set(PROCEDURAL_MOTIONS)),
        "motion_source": ["procedural", "real"], "motion_class": ["floor", "upright"],
        "motion_split": ["seen", "unseen"], "camera": ["frontal", "oblique", "profile"],
        "character": sorted(CHARACTERS), "colour": ["none", *sorted(COLOURS)], "scene": sorted(SCENES),
        "style": ["none", *sorted(s for s in STYLES if s)], "combination": ["seen", "unseen"], "verb": ["no", "yes"],
    }
    return Protocol(name=NAME, base_seed=BASE_SEED, num_frames=NUM_FRAMES, fps=FPS / STRIDE, stride=STRIDE,
                    tags=tag_vocabulary, samples=samples,
                    description="64 pose sequences (32 real mocap, 32 procedural) x 16 prompts (12 seen, 4 held-out "
                                "combinations), 8 frames at 7.5 fps (stride 4 of a 30 fps timeline), mini world",
                    builder={"module": "fypbench.world.mini.fyp1024", "version": BUILDER_VERSION})


# ------------------------------------------------------------------------------------------------ subsets
DEV_SEQUENCE_STRIDE = 8


def dev128_ids() -> list[str]:
    """The `dev128` subset: every 8th pose sequence (s00, s08, ..., s56) with all 16 of its prompts.

    Whole sequences keep per-source costs (Tune-A-Video's tuning) at 8 sources, and every 8th sequence spans
    real and procedural motion (64/64 samples), floor motion, all cameras and the seen/unseen prompt splits."""
    return [f"s{k:02d}p{j:02d}" for k in range(0, 64, DEV_SEQUENCE_STRIDE) for j in range(PROMPTS_PER_SEQUENCE)]


SUBSETS = {"dev128": (dev128_ids, "every 8th pose sequence x all 16 prompts: 8 sources, 128 samples")}


def write_subsets(folder) -> None:
    """Write protocols/fyp-1024/subsets/<name>.txt for every subset rule above."""
    from pathlib import Path

    from fypbench.io import write_text_atomic

    folder = Path(folder) / "subsets"
    folder.mkdir(parents=True, exist_ok=True)
    for name, (rule, description) in SUBSETS.items():
        lines = [f"# fyp-1024 subset {name}: {description}",
                 f"# written by fypbench.world.mini.fyp1024.write_subsets (rule: {rule.__name__})", *rule()]
        write_text_atomic(folder / f"{name}.txt", "\n".join(lines) + "\n")
