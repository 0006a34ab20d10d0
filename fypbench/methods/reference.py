"""The `reference` method: the mini world's ground-truth render of each sample.

    fypbench world render --protocol fyp-1024 --sample s00p00 --out /tmp/ref

It is the ceiling row of every leaderboard and the positive control of the metric validation: the
video a perfect method would produce (the sample's motion, its prompt's appearance).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fypbench.generator import Generator, MethodUnavailable, Needs
from fypbench.sample import Sample


class ReferenceGenerator(Generator):
    name = "reference"
    needs = Needs(source_video=True)

    def __init__(self, world=None, size: int | None = None):
        from fypbench.world.mini.world import MiniWorld

        self.world = world if world is not None else MiniWorld()
        if not hasattr(self.world, "render_reference"):
            reason = getattr(self.world, "no_renderer_reason", None)
            raise MethodUnavailable(f"reference needs a world that renders ground truth; {self.world.name!r} does not"
                                    + (f" ({reason})" if reason else ""))
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 1):
            raise ValueError(f"reference: size must be a positive integer (pixels), got {size!r}")
        self.size = size or self.world.size

    def config(self) -> dict[str, Any]:
        from fypbench.world.mini import render

        return {"world": self.world.name, "size": self.size, "renderer_version": render.RENDERER_VERSION}

    def check_inputs(self, samples: Sequence[Sample]) -> None:
        super().check_inputs(samples)
        foreign = [s.id for s in samples if s.source.get("world") != self.world.name]
        if foreign:
            raise MethodUnavailable(f"reference renders {self.world.name!r}-world sources only; "
                                    f"samples from another world: {', '.join(foreign[:5])}")

    def generate(self, samples: Sequence[Sample]) -> list[np.ndarray]:
        self.check_inputs(samples)
        return [self.world.render_reference(s, size=self.size).frames for s in samples]
