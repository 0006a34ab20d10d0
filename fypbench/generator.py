"""The one interface every method implements.

    fypbench ls methods

A generator turns protocol samples into videos. It declares what it needs (a source video, per-video
tuning), exposes a JSON config that is hashed into cache keys, and is built from a world's components:
methods never branch on the world's name.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from fypbench.sample import Sample


@dataclass(frozen=True)
class Needs:
    """What a method needs beyond prompt + pose."""

    source_video: bool = False  # a neutral-appearance video of the sample's motion (Tune-A-Video, FOMM)
    per_video_tuning: bool = False  # expensive per-source work, cached and scheduled by the runner


class MethodUnavailable(RuntimeError):
    """A method cannot run here (missing weights, missing source video, ...); the message says why."""


def config_hash(config: dict[str, Any]) -> str:
    """A short, stable hash of a JSON config (sorted keys)."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


def check_video(video: np.ndarray, num_frames: int, size: tuple[int, int] | None = None) -> np.ndarray:
    """Validate one generated video: uint8, (F, H, W, 3)."""
    if not isinstance(video, np.ndarray) or video.dtype != np.uint8:
        raise TypeError(f"a video must be a uint8 numpy array, got {type(video).__name__} "
                        f"{getattr(video, 'dtype', '')}")
    if video.ndim != 4 or video.shape[-1] != 3 or video.shape[0] != num_frames:
        raise ValueError(f"a video must have shape ({num_frames}, H, W, 3), got {video.shape}")
    if size is not None and video.shape[1:3] != tuple(size):
        raise ValueError(f"video frames are {video.shape[1:3]}, expected {tuple(size)}")
    return video


def with_world_defaults(cls: type[Generator], world, options: dict[str, Any]) -> dict[str, Any]:
    """`options` over the world's option defaults (`world.method_defaults()`, e.g. the sd world's preset and
    device), keeping only the defaults the method accepts. A world without defaults (mini) changes nothing."""
    defaults = getattr(world, "method_defaults", None)
    if defaults is None:
        return dict(options)
    accepted = cls.option_names()
    merged = {k: v for k, v in defaults().items() if accepted is not None and k in accepted}
    merged.update(options)
    return merged


class Generator(ABC):
    """Base class of every method.

    Subclasses set `name` and `needs`, implement `config()` and `generate(samples)`.
    `generate` returns one uint8 (F, H, W, 3) array per sample, in order, and must be deterministic given
    the samples (initial noise from `fypbench.seeding.initial_noise(sample.seed, ...)`).
    """

    name: ClassVar[str]
    needs: ClassVar[Needs] = Needs()

    @classmethod
    def from_world(cls, world, **options: Any) -> "Generator":
        """Build the method from a world's components (base model, method weights, frame size).

        `options` are the method's own keyword arguments (same names on every generator where they mean
        the same thing: num_inference_steps, guidance_scale, negative_prompt, size, device, dtype; `batch_size`
        = samples denoised together by the video models, `frames_per_batch` = frames per UNet call by the
        per-frame methods).
        """
        return cls(world=world, **with_world_defaults(cls, world, options))

    @classmethod
    def option_names(cls) -> frozenset[str] | None:
        """The keyword options `from_world` accepts (None: it cannot tell, its constructor takes **kwargs)."""
        names: set[str] = set()
        for function in (cls.from_world, cls.__init__):
            parameters = list(inspect.signature(function).parameters.values())
            names |= {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
            if not any(p.kind is p.VAR_KEYWORD for p in parameters):
                break  # from_world names everything it takes; the constructor's names are not reachable
        else:
            return None
        return frozenset(names - {"self", "world"})

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """Everything that changes the output (weights id/hash, steps, guidance, resolution...)."""

    def config_hash(self) -> str:
        return config_hash({"method": self.name, **self.config()})

    def check_inputs(self, samples: Sequence[Sample]) -> None:
        """Raise MethodUnavailable / ValueError for samples this method cannot generate."""
        if self.needs.source_video:
            missing = [s.id for s in samples if s.source is None]
            if missing:
                raise MethodUnavailable(f"{self.name} needs a source video; samples without one: "
                                        f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")

    @abstractmethod
    def generate(self, samples: Sequence[Sample]) -> list[np.ndarray]:
        """One uint8 (F, H, W, 3) video per sample, in the same order."""
