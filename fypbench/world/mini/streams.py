"""Deterministic, index-addressable training streams of the mini world.

    python -c "from fypbench.world.mini.streams import PoseFreeVideos; s = PoseFreeVideos(); v, c = s[7]; print(v.shape, c)"

Item i of a stream depends only on (stream name, i): every draw comes from fypbench.seeding.numpy_rng(MODULE,
name, purpose, i), so any worker/rank/shuffle order sees the same data. Items obey the split rule of
fypbench.world.mini.splits: motions are procedural (training seed space, random view, pitch, mirror, speed,
amplitude, jitter) or real clips that are not held out (random start, view, pitch, mirror); the prompt comes from
grammar.random_prompt(..., allow=splits.train_allows); every seed is a splits.train_seed; views stay within
splits.TRAIN_VIEW_LIMIT_DEG. One 64-px frame renders in about 5 ms.

- CaptionedImages: (image uint8 (H, W, 3), caption)
- ImagePosePairs: (image, keypoints float32 (17, 3) normalised COCO-17, caption)
- PoseFreeVideos: (video uint8 (F, H, W, 3), caption)
Each exposes motion_spec(i), prompt_parts(i), appearance(i) and render(i) (the full RenderedVideo) for audits.
"""

from __future__ import annotations

import numpy as np

from fypbench.seeding import numpy_rng
from fypbench.world.mini import splits
from fypbench.world.mini.appearance import Appearance
from fypbench.world.mini.grammar import PromptParts, compose, random_prompt
from fypbench.world.mini.motion import PROCEDURAL_MOTIONS, MotionSpec, clip_duration, load_clip
from fypbench.world.mini.render import RenderedVideo, render_video

MODULE = "fypbench.world.mini.streams"
NOMINAL_LENGTH = 10**9
PROCEDURAL_FRACTION = 0.5
VERB_PROBABILITY = 0.5
PITCH_RANGE_DEG = 8.0
PROCEDURAL_SPEED = (0.7, 1.4)
PROCEDURAL_AMPLITUDE = (0.8, 1.2)
PROCEDURAL_JITTER = (0.0, 0.1)
FPS = 30.0


class _Stream:
    """Item i -> (motion spec, prompt parts, background seed), all drawn from (name, i)."""

    default_name = ""

    def __init__(self, size: int = 64, num_frames: int = 1, stride: int = 4, name: str | None = None):
        if not isinstance(size, int) or isinstance(size, bool) or size < 8:
            raise ValueError(f"size must be an integer >= 8, got {size!r}")
        if not isinstance(num_frames, int) or num_frames < 1:
            raise ValueError(f"num_frames must be an integer >= 1, got {num_frames!r}")
        if not isinstance(stride, int) or stride < 1:
            raise ValueError(f"stride must be an integer >= 1, got {stride!r}")
        self.size = size
        self.num_frames = num_frames
        self.stride = stride
        self.name = name or self.default_name
        if not self.name:
            raise ValueError("a stream needs a name")

    def __len__(self) -> int:
        return NOMINAL_LENGTH

    def _index(self, index: int) -> int:
        if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
            raise TypeError(f"stream index must be an integer, got {type(index).__name__}")
        if not 0 <= index < NOMINAL_LENGTH:
            raise IndexError(f"stream index {index} outside [0, {NOMINAL_LENGTH})")
        return int(index)

    def motion_spec(self, index: int) -> MotionSpec:
        index = self._index(index)
        rng = numpy_rng(MODULE, self.name, "motion", index)
        view = float(rng.uniform(-splits.TRAIN_VIEW_LIMIT_DEG, splits.TRAIN_VIEW_LIMIT_DEG))
        pitch = float(rng.uniform(-PITCH_RANGE_DEG, PITCH_RANGE_DEG))
        mirror = bool(rng.random() < 0.5)
        seed = splits.train_seed(self.name, index)
        common = dict(num_frames=self.num_frames, fps=FPS, stride=self.stride, mirror=mirror, view=view,
                      pitch=pitch, seed=seed)
        if rng.random() < PROCEDURAL_FRACTION:
            name = str(rng.choice(PROCEDURAL_MOTIONS))
            period = clip_duration(name, "procedural")
            return MotionSpec(kind="procedural", name=name, start=float(rng.uniform(0.0, period)),
                              speed=float(rng.uniform(*PROCEDURAL_SPEED)),
                              amplitude=float(rng.uniform(*PROCEDURAL_AMPLITUDE)),
                              jitter=float(rng.uniform(*PROCEDURAL_JITTER)), **common)
        name = str(rng.choice(splits.TRAIN_REAL_CLIPS))
        duration = clip_duration(name, "real")
        window = (self.num_frames - 1) * self.stride / FPS
        # looping clips may start anywhere; clips that hold their last frame start so the window fits
        latest = duration if load_clip(name).loop == "wrap" else max(duration - window, 0.0)
        return MotionSpec(kind="real", name=name, start=float(rng.uniform(0.0, latest)), **common)

    def prompt_parts(self, index: int) -> PromptParts:
        index = self._index(index)
        motion = self.motion_spec(index).name
        rng = numpy_rng(MODULE, self.name, "prompt", index)
        return random_prompt(rng, motion=motion, verb_probability=VERB_PROBABILITY, allow=splits.train_allows)

    def appearance(self, index: int) -> Appearance:
        return self.prompt_parts(index).appearance

    def caption(self, index: int) -> str:
        return compose(self.prompt_parts(index))

    def background_seed(self, index: int) -> int:
        return splits.train_seed(f"{self.name}/background", self._index(index))

    def render(self, index: int) -> RenderedVideo:
        return render_video(self.motion_spec(index), self.appearance(index), size=self.size,
                            seed=self.background_seed(index))


class CaptionedImages(_Stream):
    """(image uint8 (H, W, 3), caption): one frame of a random training motion."""

    default_name = "captioned-images"

    def __init__(self, size: int = 64, name: str | None = None):
        super().__init__(size=size, num_frames=1, name=name)

    def __getitem__(self, index: int) -> tuple[np.ndarray, str]:
        return self.render(index).frames[0], self.caption(index)


class ImagePosePairs(_Stream):
    """(image uint8 (H, W, 3), keypoints float32 (17, 3) normalised COCO-17, caption)."""

    default_name = "image-pose-pairs"

    def __init__(self, size: int = 64, name: str | None = None):
        super().__init__(size=size, num_frames=1, name=name)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray, str]:
        video = self.render(index)
        return video.frames[0], video.keypoints[0], self.caption(index)


class PoseFreeVideos(_Stream):
    """(video uint8 (F, H, W, 3), caption): F frames at `stride` steps of a 30 fps timeline."""

    default_name = "pose-free-videos"

    def __init__(self, size: int = 64, num_frames: int = 8, stride: int = 4, name: str | None = None):
        super().__init__(size=size, num_frames=num_frames, stride=stride, name=name)

    def __getitem__(self, index: int) -> tuple[np.ndarray, str]:
        return self.render(index).frames, self.caption(index)
