"""A tiny captioned-image dataset for tests: a coloured square on a coloured background, captioned.

    python -c "from tests.training.synthetic import Squares; print(Squares(16)[0][1])"

Same interface as fypbench.world.mini.streams.CaptionedImages: `ds[i] -> (uint8 (size, size, 3), caption)`,
deterministic in i.
"""

from __future__ import annotations

import numpy as np

from fypbench.seeding import numpy_rng

COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 70, 220), "yellow": (230, 210, 40)}
BACKGROUNDS = {"black": (10, 10, 10), "white": (245, 245, 245)}


class Squares:
    def __init__(self, size: int = 16):
        self.size = int(size)

    def __len__(self) -> int:
        return 100_000

    def __getitem__(self, index: int) -> tuple[np.ndarray, str]:
        rng = numpy_rng("test-squares", index)
        colour = list(COLOURS)[int(rng.integers(len(COLOURS)))]
        background = list(BACKGROUNDS)[int(rng.integers(len(BACKGROUNDS)))]
        image = np.empty((self.size, self.size, 3), np.uint8)
        image[:] = BACKGROUNDS[background]
        side = self.size // 2
        top, left = rng.integers(0, self.size - side + 1, 2)
        image[top:top + side, left:left + side] = COLOURS[colour]
        return image, f"a {colour} square on {background}"
