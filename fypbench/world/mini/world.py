"""The mini world as a component bundle: resolution, frame count, the renderer of ground truth and sources.

    python -c "from fypbench.world.mini.world import MiniWorld; print(MiniWorld())"

A sample of a mini-world protocol carries `source = {"world": "mini", "motion": MotionSpec.to_dict()}`;
its appearance is the prompt's (parsed by the grammar), its background randomness its seed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fypbench.sample import Sample

SOURCE_FIELDS = ("world", "motion")


def validate_source(source: dict[str, Any]) -> None:
    """Raise ValueError naming the bad field of a mini-world source reference."""
    from fypbench.world.mini.motion import MotionSpec

    unknown = set(source) - set(SOURCE_FIELDS)
    if unknown:
        raise ValueError(f"unknown field {sorted(unknown)[0]!r}")
    if "motion" not in source:
        raise ValueError("field 'motion' is missing")
    MotionSpec.from_dict(source["motion"])


def motion_spec(sample: Sample):
    from fypbench.world.mini.motion import MotionSpec

    if sample.source is None or sample.source.get("world") != "mini":
        raise ValueError(f"sample {sample.id!r} has no mini-world source reference")
    return MotionSpec.from_dict(sample.source["motion"])


WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "weights" / "mini"
# Methods whose weights come from more than one training recipe, in order.
TRAINING_RECIPES = {"followpose": ("followpose-stage1", "followpose-stage2")}
WEIGHTS_ENV = "FYPBENCH_MINI_WEIGHTS"  # another folder of mini-world weights (base/, followpose/, controlnet/, ...)


def default_weights_dir() -> Path:
    """The shipped weights, or the folder $FYPBENCH_MINI_WEIGHTS names (e.g. weights you retrained)."""
    override = os.environ.get(WEIGHTS_ENV)
    return Path(override) if override else WEIGHTS_DIR


@dataclass(frozen=True)
class MiniWorld:
    name: str = "mini"
    size: int = 64
    num_frames: int = 8
    weights_dir: Path = field(default_factory=default_weights_dir)

    def base_model(self) -> str:
        """The base text-to-image pipeline folder every method stands on (fypbench.base.load_base reads it);
        MethodUnavailable, naming the train command, while it is not trained."""
        from fypbench.generator import MethodUnavailable

        folder = self.weights_dir / "base"
        if not (folder / "model_index.json").is_file():
            raise MethodUnavailable(f"no mini-world base model at {folder}; train it with "
                                    f"`{self._train_command(('vae', 'base'), folder)}`")
        return str(folder)

    def method_weights(self, method: str, variant: str | None = None) -> Path:
        """The shipped weights folder of a method trained in this world; a clear error when it is missing.
        `variant` is not used: the mini world trains one folder per method, whose manifest names its
        conditioning (a generator refuses a variant that disagrees with it)."""
        from fypbench.generator import MethodUnavailable

        folder = self.weights_dir / method
        if not folder.is_dir():
            recipes = TRAINING_RECIPES.get(method, (method,))
            raise MethodUnavailable(f"{method}: no mini-world weights at {folder}; train them with "
                                    f"`{self._train_command(recipes, folder)}`")
        return folder

    def _train_command(self, recipes: tuple[str, ...], folder: Path) -> str:
        """The commands that train into `folder`: the last recipe exports there (the presets' own export folder
        is the shipped one, so another weights folder is named explicitly)."""
        export = "" if self.weights_dir == WEIGHTS_DIR else f" --set export.dir={folder}"
        return " && ".join(f"fypbench train {recipe} --world mini" + (export if i == len(recipes) - 1 else "")
                           for i, recipe in enumerate(recipes))

    def render_reference(self, sample: Sample, size: int | None = None):
        """The ground-truth video of a sample: its motion, its prompt's appearance, its seed's background."""
        from fypbench.world.mini.grammar import parse
        from fypbench.world.mini.render import render_video

        appearance = parse(sample.prompt).appearance
        return render_video(motion_spec(sample), appearance, size=size or self.size, seed=sample.seed)

    def render_source(self, sample: Sample, size: int | None = None):
        """The neutral-appearance source video of a sample's motion (Tune-A-Video and FOMM inputs)."""
        from fypbench.world.mini.appearance import NEUTRAL
        from fypbench.world.mini.render import render_video

        return render_video(motion_spec(sample), NEUTRAL, size=size or self.size, seed=0)
