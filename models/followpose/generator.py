"""The `followpose` and `followpose-stage1` generators, and the folder format of trained Follow-Your-Pose weights.

    python -c "from fypbench.models.followpose.generator import FollowPoseGenerator; from fypbench.world.mini.world import MiniWorld; print(FollowPoseGenerator.from_world(MiniWorld()).config())"

`followpose` (FollowPoseGenerator): the inflated video UNet + pose encoder, DDIM (eta 0) with classifier-free
guidance, pose features in both CFG branches, batched over samples; a sample's initial latents are
`initial_noise(sample.seed, (C, F, h, w))`, i.i.d. over frames as in the official sampler. Conditioning maps:
`draw_keypose_video(sample.keypoints, size)` (COCO-17, the official style).

`followpose-stage1` (FollowPoseStage1Generator): the stage-1-only model sampled per frame: every frame is
generated independently by the 2D base UNet + the trained pose encoder (no temporal modules, no stage-2
weights), from its own slice of the same noise tensor (`noise_mode="independent"`) or from frame 0's slice for
every frame (`noise_mode="shared"`). It is the per-frame comparison row of the frame-consistency claim.

Where the weights come from:
- mini world (`from_world`): the world's base pipeline + the trained deltas in `world.method_weights("followpose")`
  (`fypbench train followpose --stage 1` then `--stage 2`).
- sd world (`from_world`): the world's SD base + `world.method_weights("followpose")`, the official release folder
  (`weight_sources` finds `followyourpose_checkpoint-1000/` and `pose_encoder.pth`) or a deltas folder; the "sd"
  sampler preset. `base-no-pose` runs on the base alone when the world has no Follow-Your-Pose weights.
- explicit (`from_pretrained`): a base pipeline folder or a hub id in the local cache, plus either a deltas
  folder (`weights=`) or the official release (`checkpoint=` the `followyourpose_checkpoint-1000` folder or its
  `pytorch_model.bin`, `pose_encoder=` `pose_encoder.pth`; every key accounted for, strict).

A deltas folder (written by the training recipes) holds only what the base does not: `followpose.json`
(architecture, trained stages, the base it was trained on), `deltas.safetensors` (pose encoder, concat
projections, attn_temp, norm_temp, conv_temporal, and the stage-2-trained attn1.to_q / attn2.to_q) and
`manifest.json` (sha256 of the files, training command and config). A folder with stages [1] only (stage 2
skipped) loads as the inflated model without temporal modules.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fypbench.errors import UserError
from fypbench.generator import Generator, MethodUnavailable, Needs, with_world_defaults
from fypbench.io import write_json_atomic
from fypbench.sample import Sample

DELTAS_CONFIG = "followpose.json"
DELTAS_WEIGHTS = "deltas.safetensors"
DELTAS_FORMAT = 1
MANIFEST_NAME = "manifest.json"
NOISE_MODES = ("independent", "shared")
STAGE2_KEY_MARKERS = ("attn1.to_q.", "attn2.to_q.")
TEMPORAL_KEY_MARKERS = (".attn_temp.", ".norm_temp.", ".conv_temporal.")
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class Preset:
    """Sampling defaults of a world size class."""

    num_inference_steps: int
    guidance_scale: float
    batch_size: int


PRESETS: dict[str, Preset] = {
    # the mini base's sampling defaults (fypbench.base.sample: 25 steps, guidance 5.0 chosen on held-out prompts)
    "mini": Preset(num_inference_steps=25, guidance_scale=5.0, batch_size=8),
    # the official pose_sample.yaml: DDIM 50 steps, CFG 12.5
    "sd": Preset(num_inference_steps=50, guidance_scale=12.5, batch_size=1),
}


# ------------------------------------------------------------------------------------------ weights identity
@lru_cache(maxsize=64)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    from fypbench.base.components import sha256_file

    return sha256_file(Path(path))


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file, cached per (path, size, mtime) within the process (official checkpoints are GBs)."""
    stat = Path(path).stat()
    return _sha256_cached(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


def resolve_base_folder(base: str | os.PathLike) -> Path:
    """A base pipeline folder, or a hub id resolved in the local Hugging Face cache (offline)."""
    from fypbench.base.components import _resolve_folder

    return _resolve_folder(base)


def base_identity(folder: str | os.PathLike) -> str:
    """A short id of a base pipeline folder: its manifest's version (the mini base), else a hash over the
    sha256 of its unet, text_encoder and vae files (SD folders have no manifest)."""
    from fypbench.base.components import folder_version

    folder = Path(folder)
    manifest = folder / MANIFEST_NAME
    if manifest.is_file():
        try:
            return str(json.loads(manifest.read_text())["version"])
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{manifest}: unreadable manifest ({exc})") from None
    hashes = {p.relative_to(folder).as_posix(): file_sha256(p)
              for part in ("unet", "text_encoder", "vae") for p in sorted((folder / part).rglob("*")) if p.is_file()}
    if not hashes:
        raise UserError(f"{folder}: no unet/text_encoder/vae files to identify the base model by")
    return folder_version(hashes)


# --------------------------------------------------------------------------------------------- deltas I/O
def is_stage2_key(name: str) -> bool:
    return any(marker in name for marker in STAGE2_KEY_MARKERS)


def is_temporal_key(name: str) -> bool:
    return any(marker in name for marker in TEMPORAL_KEY_MARKERS)


def tensors_version(deltas: Deltas, names: Sequence[str]) -> str:
    """A short id of the named tensors of a deltas folder (names, dtypes, shapes and bytes)."""
    import hashlib

    digest = hashlib.sha256()
    for name in sorted(names):
        tensor = deltas.tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}:".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()[:16]


def delta_names(model, stages: Sequence[int]) -> list[str]:
    """State-dict names of the tensors that `stages` train or create: stage 1 the pose encoder (and concat
    projections); stage 2 attn_temp, norm_temp, conv_temporal (those the model has) and the 2D tensors it
    fine-tunes (attn1.to_q, attn2.to_q). Everything else is the base UNet's."""
    from fypbench.models.followpose.unet3d import UNET_PREFIX

    names = []
    for name in model.state_dict():
        if not name.startswith(UNET_PREFIX):
            names.append(name)  # pose encoder, concat projections
        elif 2 in stages and (is_temporal_key(name) or is_stage2_key(name)):
            names.append(name)
    return names


def save_deltas(model, folder: str | os.PathLike, *, stages: Sequence[int], base_version: str,
                float16: bool, record: Mapping[str, Any] | None = None) -> Path:
    """Write a deltas folder atomically (followpose.json, deltas.safetensors, manifest.json)."""
    from safetensors.torch import save_file

    from fypbench.base.components import file_hashes, folder_version, save_folder_atomic

    stages = sorted({int(s) for s in stages})
    if stages not in ([1], [1, 2]):
        raise ValueError(f"a deltas folder holds stage 1 or stages 1 and 2, got {stages}")
    state = model.state_dict()
    dtype = torch.float16 if float16 else torch.float32
    tensors = {name: state[name].detach().to("cpu", dtype).contiguous() for name in delta_names(model, stages)}
    unet_config = {k: v for k, v in dict(model.unet.unet2d.config).items() if not k.startswith("_")}
    header = {"format": DELTAS_FORMAT, "followpose": model.config.to_dict(), "stages": stages,
              "base": {"version": base_version, "unet_config": json.loads(json.dumps(unet_config, default=list))}}

    def write(staging: Path) -> None:
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(staging, 0o777 & ~mask)  # mkdtemp makes 0700; give the folder the usual mode
        save_file(tensors, str(staging / DELTAS_WEIGHTS))
        os.chmod(staging / DELTAS_WEIGHTS, 0o666 & ~mask)
        write_json_atomic(staging / DELTAS_CONFIG, header)
        hashes = file_hashes(staging)
        manifest = {"format": "followpose deltas", "version": folder_version(hashes), "files": hashes,
                    "float16": bool(float16), "tensors": len(tensors),
                    "parameters": int(sum(t.numel() for t in tensors.values())), **header, **dict(record or {})}
        write_json_atomic(staging / MANIFEST_NAME, manifest)

    return save_folder_atomic(write, folder)


@dataclass(frozen=True)
class Deltas:
    """A deltas folder, read and verified."""

    folder: Path
    config: Any  # FollowPoseConfig
    stages: tuple[int, ...]
    base_version: str
    unet_config: dict[str, Any]
    version: str
    tensors: dict[str, torch.Tensor]


def read_deltas(folder: str | os.PathLike) -> Deltas:
    """Read a deltas folder; files are checked against manifest.json (UserError naming the file otherwise)."""
    from safetensors.torch import load_file

    from fypbench.base.components import verify_manifest
    from fypbench.models.followpose.unet3d import FollowPoseConfig

    folder = Path(folder)
    config_path, weights_path = folder / DELTAS_CONFIG, folder / DELTAS_WEIGHTS
    if not config_path.is_file() or not weights_path.is_file():
        raise UserError(f"{folder}: not a Follow-Your-Pose weights folder (needs {DELTAS_CONFIG} and "
                        f"{DELTAS_WEIGHTS}; train with `fypbench train followpose --stage 1` and `--stage 2`)")
    manifest = verify_manifest(folder)
    if manifest is None:
        raise UserError(f"{folder / MANIFEST_NAME}: missing (a deltas folder is written with its manifest)")
    try:
        header = json.loads(config_path.read_text())
        if header.get("format") != DELTAS_FORMAT:
            raise ValueError(f"format {header.get('format')!r}, expected {DELTAS_FORMAT}")
        config = FollowPoseConfig.from_dict(header["followpose"], where=str(config_path))
        stages = tuple(int(s) for s in header["stages"])
        base_version = str(header["base"]["version"])
        unet_config = dict(header["base"]["unet_config"])
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{config_path}: unreadable ({exc})") from None
    if stages not in ((1,), (1, 2)):
        raise UserError(f"{config_path}: field 'stages' is {list(stages)}, expected [1] or [1, 2]")
    return Deltas(folder=folder, config=config, stages=stages, base_version=base_version, unet_config=unet_config,
                  version=str(manifest["version"]), tensors=load_file(str(weights_path)))


def model_config_for(deltas_config, stages: Sequence[int], per_frame: bool):
    """The architecture to build: without stage 2 (skipped, or the per-frame stage-1 model) there are no
    temporal modules; per-frame sampling also needs no video attention or pooling (one frame each)."""
    if per_frame or 2 not in stages:
        return replace(deltas_config, temporal_attention=False, conv_temporal=False)
    return deltas_config


POSE_CONFIG_FIELDS = ("injection", "depth", "pose_downscale_factor", "pose_num_res_blocks", "pose_zero_init")


def build_from_deltas(unet2d, deltas: Deltas, stages: Sequence[int], per_frame: bool = False,
                      base_version: str | None = None, config=None, init_seed: int = 0):
    """A FollowPose on `unet2d` (taken over and inflated) with the deltas of `stages` loaded.

    `config` (default: the folder's, without temporal modules when stage 2 is not loaded or sampling is per
    frame) must agree with the folder's on the pose fields; modules that `stages` do not cover (e.g. the
    temporal modules when stage-2 training starts from a stage-1 folder) keep their seeded initialisation.
    Every tensor that `stages` cover must come from the file (UserError naming the first missing one)."""
    from fypbench.models.followpose.unet3d import FollowPose

    stages = sorted(set(stages))
    if not set(stages) <= set(deltas.stages):
        raise UserError(f"{deltas.folder}: trained stages {list(deltas.stages)} do not include {stages}")
    if base_version is not None and base_version != deltas.base_version:
        raise UserError(f"{deltas.folder}: trained on base {deltas.base_version}, but the base given is "
                        f"{base_version}; retrain Follow-Your-Pose on this base")
    unet_config = {k: v for k, v in dict(unet2d.config).items() if not k.startswith("_")}
    for key in ("block_out_channels", "cross_attention_dim", "in_channels", "layers_per_block"):
        if json.loads(json.dumps(unet_config.get(key), default=list)) != deltas.unet_config.get(key):
            raise UserError(f"{deltas.folder / DELTAS_CONFIG}: base.unet_config.{key} "
                            f"{deltas.unet_config.get(key)!r} does not match the base UNet's {unet_config.get(key)!r}")
    if config is None:
        config = model_config_for(deltas.config, stages, per_frame)
    for field in POSE_CONFIG_FIELDS:
        if getattr(config, field) != getattr(deltas.config, field):
            raise UserError(f"{deltas.folder / DELTAS_CONFIG}: followpose.{field} is "
                            f"{getattr(deltas.config, field)!r}, but the model asks for {getattr(config, field)!r}")
    reference = next(unet2d.parameters())
    model = FollowPose.from_unet2d(unet2d, config, init_seed)
    wanted = delta_names(model, stages)
    missing = [name for name in wanted if name not in deltas.tensors]
    if missing:
        raise UserError(f"{deltas.folder / DELTAS_WEIGHTS}: no values for {len(missing)} tensors "
                        f"(e.g. {missing[0]})")
    expected = model.state_dict()
    for name in wanted:
        if tuple(deltas.tensors[name].shape) != tuple(expected[name].shape):
            raise UserError(f"{deltas.folder / DELTAS_WEIGHTS}: {name} has shape "
                            f"{tuple(deltas.tensors[name].shape)}, the model {tuple(expected[name].shape)}")
    state = {name: deltas.tensors[name].to(device=reference.device, dtype=reference.dtype) for name in wanted}
    model.load_state_dict(state, strict=False)
    return model


# -------------------------------------------------------------------------------------------- generators
OFFICIAL_CHECKPOINT_DIR = "followyourpose_checkpoint-1000"
OFFICIAL_POSE_ENCODER = "pose_encoder.pth"


def weight_sources(folder: str | os.PathLike | None) -> dict[str, Path]:
    """The constructor arguments for a Follow-Your-Pose weights folder: a fypbench deltas folder ->
    {"weights": folder}; the official release (YueMafighting/FollowYourPose_v1: `followyourpose_checkpoint-1000/`
    with pytorch_model.bin or model.safetensors, and/or `pose_encoder.pth`, in the folder or beside the checkpoint
    files) -> {"checkpoint": ..., "pose_encoder": ...}; None -> {} (no pose weights)."""
    if folder is None:
        return {}
    folder = Path(folder)
    if (folder / DELTAS_CONFIG).is_file() or not folder.is_dir():
        return {"weights": folder}
    checkpoint = next((c for c in (folder / OFFICIAL_CHECKPOINT_DIR, folder)
                       if any((c / n).is_file() for n in ("model.safetensors", "pytorch_model.bin"))), None)
    pose_encoder = next((p for p in (folder / OFFICIAL_POSE_ENCODER,
                                     folder / OFFICIAL_CHECKPOINT_DIR / OFFICIAL_POSE_ENCODER) if p.is_file()), None)
    if checkpoint is None and pose_encoder is None:
        return {"weights": folder}  # read_deltas says what a deltas folder needs
    return {k: v for k, v in (("checkpoint", checkpoint), ("pose_encoder", pose_encoder)) if v is not None}


def _weights_file(path: Path) -> Path:
    """The weights file of an official checkpoint path (an accelerate save_state folder or the file itself)."""
    if path.is_dir():
        for name in ("model.safetensors", "pytorch_model.bin"):
            if (path / name).is_file():
                return path / name
        raise UserError(f"{path}: no model.safetensors or pytorch_model.bin in this checkpoint folder")
    return path


def _dtype(value: str | torch.dtype) -> torch.dtype:
    if isinstance(value, torch.dtype):
        return value
    if value not in DTYPES:
        raise UserError(f"dtype {value!r}: expected one of {', '.join(DTYPES)}")
    return DTYPES[value]


class FollowPoseGenerator(Generator):
    """Follow-Your-Pose (both stages): pose-guided text-to-video with the inflated UNet."""

    name = "followpose"
    needs = Needs()
    per_frame = False
    inject_pose = True

    def __init__(self, base: str | os.PathLike, weights: str | os.PathLike | None = None, *,
                 checkpoint: str | os.PathLike | None = None, pose_encoder: str | os.PathLike | None = None,
                 preset: str = "mini", num_inference_steps: int | None = None, guidance_scale: float | None = None,
                 negative_prompt: str = "", batch_size: int | None = None, size: int | None = None,
                 device: str | torch.device = "cpu", dtype: str | torch.dtype = "float32",
                 noise_mode: str = "independent", unconditional_pose: bool = True,
                 conditioning_scale: float = 1.0) -> None:
        from fypbench.base.components import load_base

        if preset not in PRESETS:
            raise UserError(f"{self.name}: preset {preset!r} is not one of {', '.join(PRESETS)}")
        if noise_mode not in NOISE_MODES:
            raise UserError(f"{self.name}: noise_mode {noise_mode!r} is not one of {', '.join(NOISE_MODES)}")
        if noise_mode != "independent" and not self.per_frame:
            raise UserError(f"{self.name}: noise_mode={noise_mode!r} is for per-frame sampling; the video model samples "
                            "i.i.d. noise over frames (official)")
        # the pose-free floor (base-no-pose) needs no pose weights: without any, its never-called pose encoder
        # is freshly initialised
        pose_free = not self.inject_pose and weights is None and checkpoint is None and pose_encoder is None
        if not pose_free and (weights is None) == (checkpoint is None and pose_encoder is None):
            raise UserError(f"{self.name}: give either weights (a trained deltas folder) or the official "
                            "checkpoint/pose_encoder files")
        defaults = PRESETS[preset]
        self.preset = preset
        self.num_inference_steps = int(num_inference_steps or defaults.num_inference_steps)
        self.guidance_scale = float(defaults.guidance_scale if guidance_scale is None else guidance_scale)
        self.negative_prompt = str(negative_prompt)
        self.batch_size = int(batch_size or defaults.batch_size)
        self.noise_mode = noise_mode
        if not isinstance(unconditional_pose, bool):
            raise UserError(f"{self.name}: unconditional_pose must be true or false, got {unconditional_pose!r}")
        self.unconditional_pose = unconditional_pose
        if isinstance(conditioning_scale, bool) or not isinstance(conditioning_scale, (int, float)) \
                or not math.isfinite(conditioning_scale) or conditioning_scale < 0:
            raise UserError(f"{self.name}: conditioning_scale must be a finite number >= 0, got {conditioning_scale!r}")
        self.conditioning_scale = float(conditioning_scale)
        if self.num_inference_steps < 1 or self.batch_size < 1:
            raise UserError(f"{self.name}: num_inference_steps and batch_size must be >= 1")
        self.dtype = _dtype(dtype)
        self.device = torch.device(device)

        base_folder = resolve_base_folder(base)
        self.base_version = base_identity(base_folder)
        self.components = load_base(base_folder, dtype=self.dtype, device=self.device)
        if weights is not None:
            deltas = read_deltas(weights)
            # the video model loads whatever the folder holds (stages [1]: stage 2 skipped, no temporal modules)
            stages = (1,) if self.per_frame else deltas.stages
            self.model = build_from_deltas(self.components.unet, deltas, stages, self.per_frame,
                                           base_version=self.base_version)
            # per frame, identified by the tensors it loads, so a retrained stage 2 leaves its rows valid
            loaded = ({"stage1_tensors": tensors_version(deltas, delta_names(self.model, (1,)))} if self.per_frame
                      else {"deltas": deltas.version})
            self.weights_record: dict[str, Any] = {**loaded, "trained_stages": list(deltas.stages)}
        elif pose_free:
            self.model = self._build_pose_free()
        else:
            self.model = self._load_official(checkpoint, pose_encoder)
        self.model.to(device=self.device, dtype=self.dtype).eval()
        self.size = int(size or self.components.resolution)
        self.components.unet = None  # taken over (and inflated) by the model
        multiple = self.model.pose_encoder.config.spatial_multiple
        if self.size % multiple:
            raise UserError(f"{self.name}: size {self.size} must be a multiple of {multiple} (pose encoder)")

    # -------------------------------------------------------------------------------------- construction
    @classmethod
    def from_world(cls, world, preset: str | None = None, weights: str | os.PathLike | None = None,
                   **options: Any) -> FollowPoseGenerator:
        """The world's base pipeline + the world's Follow-Your-Pose weights (or `weights`): a deltas folder, or
        the official release (see `weight_sources`). preset: default the world's (`method_defaults()`), else
        mini."""
        options = with_world_defaults(cls, world, {**({} if preset is None else {"preset": preset}), **options})
        options.setdefault("preset", "mini")
        base = Path(world.base_model())  # MethodUnavailable while the world's base is not trained / not cached
        folder = weights if weights is not None else cls.world_weights(world)
        options.setdefault("size", getattr(world, "size", None))
        return cls(base, **weight_sources(folder), **options)

    @classmethod
    def world_weights(cls, world) -> Path | None:
        """The world's Follow-Your-Pose weights folder (MethodUnavailable when it has none)."""
        return world.method_weights(FollowPoseGenerator.name)

    @classmethod
    def from_pretrained(cls, base: str | os.PathLike, weights: str | os.PathLike | None = None, *,
                        checkpoint: str | os.PathLike | None = None, pose_encoder: str | os.PathLike | None = None,
                        preset: str = "sd", **options: Any) -> FollowPoseGenerator:
        """Explicit components: e.g. base="CompVis/stable-diffusion-v1-4" (local cache) and the official files."""
        return cls(base, weights, checkpoint=checkpoint, pose_encoder=pose_encoder, preset=preset, **options)

    def _build_pose_free(self):
        """The per-frame model with a freshly initialised pose encoder that is never called (base-no-pose
        without any Follow-Your-Pose weights: the videos depend on the base alone)."""
        from fypbench.models.followpose.unet3d import FollowPose, FollowPoseConfig

        config = FollowPoseConfig(pose_downscale_factor=self.components.vae_scale_factor)
        self.weights_record = {"pose_encoder": "none (fresh, never called)"}
        return FollowPose.from_unet2d(self.components.unet, model_config_for(config, (1,), per_frame=True))

    def _load_official(self, checkpoint, pose_encoder):
        from fypbench.models.followpose.pose_encoder import convert_official_pose_encoder
        from fypbench.models.followpose.unet3d import (
            OFFICIAL_ADAPTER_PREFIX,
            FollowPose,
            FollowPoseConfig,
            load_official_checkpoint,
            read_state_dict,
        )

        vae_factor = self.components.vae_scale_factor
        config = FollowPoseConfig(pose_downscale_factor=vae_factor)
        files: dict[str, str] = {}
        if self.per_frame:
            if pose_encoder is not None:
                source, pose_state = pose_encoder, read_state_dict(pose_encoder)
            else:  # the checkpoint's own copy (`skeleton_adapter.*`)
                source = checkpoint
                prefix = OFFICIAL_ADAPTER_PREFIX
                pose_state = {k[len(prefix):]: v for k, v in read_state_dict(checkpoint).items()
                              if k.startswith(prefix)}
                if not pose_state:
                    raise UserError(f"{checkpoint}: no {prefix}* tensors; give pose_encoder (pose_encoder.pth)")
            model = FollowPose.from_unet2d(self.components.unet, model_config_for(config, (1,), per_frame=True))
            converted, unmapped = convert_official_pose_encoder(pose_state)
            if unmapped:
                raise UserError(f"{source}: {len(unmapped)} keys are not pose-encoder keys (e.g. {unmapped[0]})")
            try:
                model.pose_encoder.load_state_dict(converted, strict=True)
            except RuntimeError as exc:
                raise UserError(f"{source}: does not match the pose encoder ({str(exc).splitlines()[0]})") from None
            files["pose_encoder" if pose_encoder is not None else "checkpoint"] = file_sha256(
                _weights_file(Path(source)))
        else:
            if checkpoint is None:
                raise UserError(f"{self.name}: the video model needs checkpoint (followyourpose_checkpoint-1000)")
            unet_state = read_state_dict(checkpoint)
            ranks = {int(v.shape[0]) for k, v in unet_state.items() if k.endswith("conv_temporal.down.weight")}
            if len(ranks) > 1:
                raise UserError(f"{checkpoint}: conv_temporal ranks differ between blocks ({sorted(ranks)})")
            if ranks:
                config = replace(config, conv_temporal_rank=ranks.pop())
            model = FollowPose.from_unet2d(self.components.unet, config)
            load_official_checkpoint(model, unet_state,
                                     None if pose_encoder is None else read_state_dict(pose_encoder), strict=True)
            files["checkpoint"] = file_sha256(_weights_file(Path(checkpoint)))
            if pose_encoder is not None:
                files["pose_encoder"] = file_sha256(pose_encoder)
        self.weights_record = {"official": files}
        return model

    # ------------------------------------------------------------------------------------------ interface
    def config(self) -> dict[str, Any]:
        return {
            "preset": self.preset,
            "mode": "per-frame" if self.per_frame else "video",
            "noise": self.noise_mode,  # key kept as named by earlier runs: renaming it would change config hashes
            "base": self.base_version,
            "weights": self.weights_record,
            "followpose": self.model.config.to_dict(),
            "num_inference_steps": self.num_inference_steps,
            "guidance_scale": self.guidance_scale,
            "negative_prompt": self.negative_prompt,
            "size": self.size,
            "dtype": str(self.dtype).removeprefix("torch."),
            "sampler": "DDIM eta 0, classifier-free guidance with pose in "
                       + ("both branches" if self.unconditional_pose else "the text branch only (pose guidance)"),
            "pose_map": "draw_keypose_video (COCO-17 keypose)",
            # only when it departs from 1, so that every config hash recorded before the option existed holds
            **({"conditioning_scale": self.conditioning_scale} if self.conditioning_scale != 1.0 else {}),
        }

    def pose_video(self, sample: Sample) -> np.ndarray:
        from fypbench.world.mini.skeleton import draw_keypose_video

        return draw_keypose_video(sample.keypoints, (self.size, self.size))

    @torch.no_grad()
    def generate(self, samples: Sequence[Sample]) -> list[np.ndarray]:
        from fypbench.models.followpose.pipeline import generate_videos

        samples = list(samples)
        self.check_inputs(samples)
        if not samples:
            return []
        c = self.components
        return generate_videos(self.model.unet, self.model.pose_encoder, c.vae, c.text_encoder, c.tokenizer,
                               c.scheduler, [s.prompt for s in samples], [self.pose_video(s) for s in samples],
                               [s.seed for s in samples], num_inference_steps=self.num_inference_steps,
                               guidance_scale=self.guidance_scale, negative_prompt=self.negative_prompt,
                               batch_size=self.batch_size, per_frame=self.per_frame,
                               shared_noise=self.noise_mode == "shared", inject_pose=self.inject_pose,
                               unconditional_pose=self.unconditional_pose,
                               conditioning_scale=self.conditioning_scale)


class FollowPoseStage1Generator(FollowPoseGenerator):
    """The stage-1-only model (2D base UNet + trained pose encoder), every frame sampled independently."""

    name = "followpose-stage1"
    per_frame = True


class BaseNoPoseGenerator(FollowPoseStage1Generator):
    """The pose floor: the base text-to-image model, every frame sampled independently, no pose at all.

    It is `followpose-stage1` with pose injection off, which is exactly the 2D base UNet (tested), so the two rows are
    paired: same prompts, same initial noise, only the pose features differ. The trained pose encoder is loaded
    (it comes in the same deltas folder) and never called.
    """

    name = "base-no-pose"
    inject_pose = False

    @classmethod
    def world_weights(cls, world) -> Path | None:
        """The world's Follow-Your-Pose weights when it has them (the pose encoder then matches the paired
        followpose-stage1 row's, never called), else none: the base alone is enough."""
        try:
            return super().world_weights(world)
        except MethodUnavailable:
            return None

    def config(self) -> dict[str, Any]:
        # the pose encoder is loaded but never called: the videos depend on the base alone
        return {**super().config(), "mode": "per-frame, no pose", "pose_map": "none (pose injection off)",
                "weights": None}
