"""Lazy registries: names map to "module:object" strings, so listing imports nothing heavy.

    fypbench ls methods
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from fypbench.errors import did_you_mean


@dataclass(frozen=True)
class Entry:
    name: str
    target: str  # "package.module:object"
    summary: str

    def load(self) -> Any:
        module_name, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module_name), attr)


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, target: str, summary: str) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = Entry(name, target, summary)

    def names(self) -> list[str]:
        return list(self._entries)

    def entries(self) -> list[Entry]:
        return list(self._entries.values())

    def get(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise did_you_mean(name, self._entries, self.kind) from None

    def load(self, name: str) -> Any:
        return self.get(name).load()

    def __contains__(self, name: str) -> bool:
        return name in self._entries


METHODS = Registry("method")
METHODS.register("reference", "fypbench.methods.reference:ReferenceGenerator",
                 "Ground-truth renders of the mini world (ceiling row; positive control of the metrics)")

METHODS.register("followpose", "fypbench.models.followpose.generator:FollowPoseGenerator",
                 "Follow-Your-Pose: inflated base UNet + pose encoder, two-stage training, DDIM + CFG, pose in both branches")
METHODS.register("followpose-stage1", "fypbench.models.followpose.generator:FollowPoseStage1Generator",
                 "Follow-Your-Pose after stage 1 only: 2D base + pose encoder, each frame sampled independently")
METHODS.register("base-no-pose", "fypbench.models.followpose.generator:BaseNoPoseGenerator",
                 "The base text-to-image model per frame without pose (floor row; paired with followpose-stage1)")
METHODS.register("controlnet", "fypbench.baselines.controlnet:ControlNetGenerator",
                 "ControlNet (OpenPose-18), per frame, shared initial noise; sd: lllyasviel/sd-controlnet-openpose")
METHODS.register("t2i-adapter", "fypbench.baselines.t2i_adapter:T2IAdapterGenerator",
                 "T2I-Adapter (keypose COCO-17; openpose variant), per frame, shared noise; sd: TencentARC keypose")
METHODS.register("tune-a-video", "fypbench.baselines.tune_a_video:TuneAVideoGenerator",
                 "Tune-A-Video: one-shot tuning on the sample's source video, DDIM inversion, no pose input")
METHODS.register("masactrl", "fypbench.baselines.masactrl:MasaCtrlGenerator",
                 "MasaCtrl: frames 1..F-1 read frame 0's self-attention keys/values; pose via T2I-Adapter")

# Training recipes: name -> "module:run" with run(preset, output_dir, resume, overrides) -> exported folder.
RECIPES = Registry("training recipe")
RECIPES.register("vae", "fypbench.training.vae:run", "the base model's AutoencoderKL (mini: 4x, 64 px)")
RECIPES.register("base", "fypbench.training.base:run", "the base text-to-image UNet (+ text encoder) on the VAE")
RECIPES.register("evaluator-clip", "fypbench.training.evaluator_clip:run",
                 "the mini world's evaluator CLIP (CLIP score / frame consistency), independent of every generator")
RECIPES.register("followpose-stage1", "fypbench.models.followpose.train:run_stage1",
                 "Follow-Your-Pose stage 1: the pose encoder on image-pose pairs, base frozen")
RECIPES.register("followpose-stage2", "fypbench.models.followpose.train:run_stage2",
                 "Follow-Your-Pose stage 2: attn1/attn2 queries + temporal modules on pose-free videos")
RECIPES.register("controlnet", "fypbench.baselines.controlnet:run", "ControlNet on image-pose pairs")
RECIPES.register("t2i-adapter", "fypbench.baselines.t2i_adapter:run", "T2I-Adapter on image-pose pairs")

WORLDS = Registry("world")
WORLDS.register("mini", "fypbench.world.mini.world:MiniWorld",
                "Offline CPU world: mannequin renders of mocap + procedural motion, tiny in-house models")
WORLDS.register("sd", "fypbench.world.sd:SdWorld",
                "Stable Diffusion 1.5 + official Follow-Your-Pose + hub baselines, 512 px, GPU; local folders or "
                "the local HF cache only (FYPBENCH_SD_*)")
