"""Follow-Your-Pose training: stage 1 (pose encoder, image-pose pairs) and stage 2 (temporal modules, pose-free videos).

    fypbench train followpose --stage 1 --world mini     (the lead's CLI; the same as the next lines)
    python -m fypbench.models.followpose.train --stage 1 --preset mini [--output-dir DIR] [--no-resume] [--set K=V]
    python -m fypbench.models.followpose.train --stage 2 --preset mini

Both stages stand on a frozen base pipeline (model.base: the mini base folder, an SD 1.4 folder or a hub id in the
local cache) and optimise eps-MSE (one DDPM timestep per item, latents sampled from the VAE posterior times the
VAE's scaling factor, the base's scaled_linear betas). Presets: configs/followpose_stage{1,2}_{debug,mini,sd}.yaml.

Stage 1 (the paper's; its code was never released, so it follows the T2I-Adapter recipe): only the pose
encoder is trained (plus, for concat injection, the concat projections, which start as a pass-through and would
otherwise block every gradient), on image-pose pairs (`ImagePosePairs`, conditioning map = `draw_keypose` at the
image size); VAE, text encoder and UNet are frozen; the pose features ARE injected (the official forward drops
them in training only because its released script is stage 2). The model runs one-frame videos without
temporal modules, which is exactly SD + pose encoder. Timesteps: `loss.timesteps: cubic` (default of the stage-1
presets) is T2I-Adapter's non-uniform sampling t = floor((1 - u^3) T), u ~ U[0, 1), which favours the
high-noise steps where structure is decided (Mou et al. 2023, §3.4); `uniform` is SD's. Loss weighting:
`loss.weighting: none` (every preset: SD's eps-MSE) or `inverse_snr` (eps-MSE x min(1/SNR(t), loss.max_weight),
the x0-space error, capped), an experiment on moving weight to the noisy steps; on fyp-1024 dev128 (64 samples,
stage 1 per frame) it moved PCK@0.1h by +0.038 (cap 20) and +0.006 (cap 200) and cost CLIP score, so the
presets keep eps-MSE (session-6 note on issue 5).

Stage 2 (the released config, followpose.md §6-7): trainable = modules whose name ends with attn1.to_q,
attn2.to_q, attn_temp or conv_temporal (`trainable_parameters(model, 2)`); pose encoder and everything else
frozen; pose-free videos (`PoseFreeVideos`), pose NOT injected; uniform timesteps. It starts from the stage-1
export (model.stage1_dir), whose pose fields (injection, depth, pose encoder) it keeps.

Model switches (for the ablations, all config overrides): stage 1 `model.followpose.{injection, depth,
pose_downscale_factor, pose_num_res_blocks, pose_zero_init}`; stage 2 `model.followpose.{sparse_causal_attention,
temporal_attention, conv_temporal, conv_temporal_rank, pooled_group_norm}`. "Stage 2 skipped" = use the
stage-1 export as the weights folder (it loads as the inflated model without temporal modules).

Data: with `data.cache: true` (debug, mini) `data.count` items are rendered once into data.cache_dir and
encoded once by the base VAE (<data.cache_dir>/latents-<VAE weights hash>.npz); with `false` (sd: 512 px,
12-frame clips) each step renders and encodes its own items. Exports (export.dir, default <output_dir>/followpose) are deltas folders
(`fypbench.models.followpose.generator`: only what the base lacks, plus manifest.json); returns that path.
Checkpoints hold only the trained tensors, optimiser and step; resuming continues with the same data order.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fypbench.errors import UserError
from fypbench.io import atomic_path, write_json_atomic
from fypbench.models.followpose.generator import (
    base_identity,
    build_from_deltas,
    read_deltas,
    resolve_base_folder,
    save_deltas,
)
from fypbench.models.followpose.pose_encoder import pose_videos_to_tensor
from fypbench.models.followpose.unet3d import FollowPose, FollowPoseConfig, freeze_for_stage
from fypbench.training.common import (
    TrainingLoop,
    channels_last_layout,
    images_to_tensor,
    import_object,
    make_accelerator,
    make_logger,
    per_sample_randint,
    per_sample_randn,
    per_sample_uniform,
    recipe_config,
    resolve_path,
    run_record,
)

RECIPES = {1: "followpose_stage1", 2: "followpose_stage2"}
EXPORT_NAME = "followpose"
STAGE_FIELDS = {
    1: ("injection", "depth", "pose_downscale_factor", "pose_num_res_blocks", "pose_zero_init"),
    2: ("sparse_causal_attention", "temporal_attention", "conv_temporal", "conv_temporal_rank", "pooled_group_norm"),
}
TIMESTEP_SAMPLINGS = ("uniform", "cubic")
LOSS_WEIGHTINGS = ("none", "inverse_snr")


# ------------------------------------------------------------------------------------------------ timesteps
def sample_timesteps(seed: int, purpose: str, positions: Sequence[int], num_timesteps: int,
                     mode: str) -> torch.Tensor:
    """(N,) DDPM timesteps, one per stream position: uniform, or T2I-Adapter's cubic t = floor((1 - u^3) T)."""
    if mode == "uniform":
        return per_sample_randint(seed, purpose, positions, num_timesteps)
    if mode == "cubic":
        u = per_sample_uniform(seed, purpose, positions)
        t = np.floor((1.0 - u**3) * num_timesteps).astype(np.int64)
        return torch.from_numpy(np.clip(t, 0, num_timesteps - 1))
    raise UserError(f"loss.timesteps {mode!r}: expected one of {', '.join(TIMESTEP_SAMPLINGS)}")


def check_loss_weighting(mode: str, max_weight: float | None, where: str = "") -> None:
    """UserError (prefixed with `where`) unless `mode` is a known weighting with the cap it needs."""
    prefix = f"{where}: " if where else ""
    if mode not in LOSS_WEIGHTINGS:
        raise UserError(f"{prefix}loss.weighting {mode!r}: expected one of {', '.join(LOSS_WEIGHTINGS)}")
    if mode != "none" and not (isinstance(max_weight, (int, float)) and max_weight > 0):
        raise UserError(f"{prefix}loss.max_weight {max_weight!r}: loss.weighting {mode} needs a positive cap")


def timestep_loss_weights(alphas_cumprod: torch.Tensor, timesteps: torch.Tensor, mode: str,
                          max_weight: float | None) -> torch.Tensor:
    """(N,) weights of the per-item eps-MSE. `none`: 1 (SD's loss). `inverse_snr`: min(1 / SNR(t), max_weight),
    i.e. the MSE of the implied x0 prediction (eps-MSE / SNR) capped at max_weight x eps-MSE, which moves the
    weight to the high-noise steps where the layout of the image is decided."""
    check_loss_weighting(mode, max_weight)
    if mode == "none":
        return torch.ones(len(timesteps))
    alpha = alphas_cumprod.double()[timesteps]
    return ((1.0 - alpha) / alpha).clamp(max=float(max_weight)).float()


# --------------------------------------------------------------------------------------------------- data
def _item_frames(dataset: Any, index: int, stage: int) -> tuple[np.ndarray, np.ndarray | None, str]:
    """A stream item as (frames (F, H, W, 3), keypoints (F, 17, 3) or None, caption)."""
    item = dataset[index]
    if stage == 1:
        if len(item) != 3:
            raise UserError(f"stage 1 data must yield (image, keypoints, caption), got {len(item)} values")
        image, keypoints, caption = item
        return np.asarray(image, np.uint8)[None], np.asarray(keypoints, np.float32)[None], str(caption)
    if len(item) != 2:
        raise UserError(f"stage 2 data must yield (video, caption), got {len(item)} values")
    video, caption = item
    return np.asarray(video, np.uint8), None, str(caption)


def _render_range(args: tuple[str, dict[str, Any], int, int, int]):
    target, kwargs, stage, start, stop = args
    dataset = import_object(target)(**kwargs)
    items = [_item_frames(dataset, i, stage) for i in range(start, stop)]
    keypoints = None if stage == 2 else np.stack([k for _, k, _ in items])
    return np.stack([f for f, _, _ in items]), keypoints, [c for _, _, c in items]


def render_cache(data: Mapping[str, Any], stage: int, log: Callable[[str], None]):
    """(frames (N, F, H, W, 3) uint8, keypoints (N, F, 17, 3) or None, captions): items 0..count-1 of the data
    stream, rendered once (in data.workers processes) into data.cache_dir; a cache of other data is rebuilt."""
    target, kwargs, count = str(data["target"]), dict(data["kwargs"]), int(data["count"])
    cache_dir = resolve_path(data["cache_dir"])
    info = {"target": target, "kwargs": kwargs, "count": count, "stage": stage}
    frames_path, keypoints_path = cache_dir / "frames.npy", cache_dir / "keypoints.npy"
    captions_path, info_path = cache_dir / "captions.json", cache_dir / "info.json"
    ready = info_path.exists() and frames_path.exists() and captions_path.exists() and (
        stage == 2 or keypoints_path.exists())
    if ready and json.loads(info_path.read_text()) == info:
        keypoints = np.load(keypoints_path) if stage == 1 else None
        return np.load(frames_path, mmap_mode="r"), keypoints, json.loads(captions_path.read_text())
    start = time.perf_counter()
    workers = max(1, int(data["workers"]))
    chunk = max(1, min(256, math.ceil(count / workers / 4)))
    jobs = [(target, kwargs, stage, lo, min(count, lo + chunk)) for lo in range(0, count, chunk)]
    if workers > 1:
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(workers) as pool:
            parts = list(pool.imap(_render_range, jobs))
    else:
        parts = [_render_range(job) for job in jobs]
    frames = np.concatenate([p[0] for p in parts])
    keypoints = None if stage == 2 else np.concatenate([p[1] for p in parts])
    captions = [c for p in parts for c in p[2]]
    cache_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(frames_path) as tmp:
        np.save(tmp, frames)
    if keypoints is not None:
        with atomic_path(keypoints_path) as tmp:
            np.save(tmp, keypoints)
    write_json_atomic(captions_path, captions)
    write_json_atomic(info_path, info)
    log(f"rendered {count} items ({frames.shape[1]} frames each) in {time.perf_counter() - start:.0f} s "
        f"-> {cache_dir}")
    return np.load(frames_path, mmap_mode="r"), keypoints, captions


@torch.no_grad()
def encode_posterior(vae, frames: np.ndarray, batch: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (N, F, H, W, 3) -> posterior mean and std (N, C, F, h, w), float32, unscaled."""
    count, num_frames = frames.shape[:2]
    flat = frames.reshape(count * num_frames, *frames.shape[2:])
    device = next(vae.parameters()).device
    means, stds = [], []
    for lo in range(0, len(flat), batch):
        posterior = vae.encode(images_to_tensor(flat[lo:lo + batch]).to(device)).latent_dist
        means.append(posterior.mean.float().cpu())
        stds.append(posterior.std.float().cpu())
    mean, std = torch.cat(means), torch.cat(stds)
    unfold = lambda x: x.unflatten(0, (count, num_frames)).transpose(1, 2)  # noqa: E731
    return unfold(mean), unfold(std)


class CachedItems:
    """Rendered items and their VAE posteriors, encoded once per (data, VAE): float16 in the data cache folder
    (`latents-<VAE weights hash>.npz`), so runs that share data and VAE (ablation variants, a retrained base
    on the same VAE) share the encoding."""

    def __init__(self, data: Mapping[str, Any], stage: int, vae, vae_version: str, log: Callable[[str], None]):
        self.frames, self.keypoints, self.captions = render_cache(data, stage, log)
        cache_dir = resolve_path(data["cache_dir"])
        name = f"latents-{vae_version[:16]}"
        path, key_path = cache_dir / f"{name}.npz", cache_dir / f"{name}.json"
        key = {"vae": vae_version, "data": json.loads((cache_dir / "info.json").read_text())}
        if path.exists() and key_path.exists() and json.loads(key_path.read_text()) == key:
            with np.load(path) as cached:
                self.mean, self.std = channels_last_layout(cached["mean"]), channels_last_layout(cached["std"])
        else:
            start = time.perf_counter()
            mean, std = [], []
            for lo in range(0, len(self.frames), 256):
                m, s = encode_posterior(vae, np.asarray(self.frames[lo:lo + 256]))
                mean.append(m.half().numpy())
                std.append(s.half().numpy())
            # one memory layout for fresh and cached latents (see fypbench.training.common.channels_last_layout)
            self.mean, self.std = channels_last_layout(np.concatenate(mean)), channels_last_layout(np.concatenate(std))
            with atomic_path(path) as tmp:
                np.savez(tmp, mean=self.mean, std=self.std)
            write_json_atomic(key_path, key)
            log(f"encoded {len(self.frames)} items with the VAE in {time.perf_counter() - start:.0f} s")

    def __len__(self) -> int:
        return len(self.captions)

    def posterior(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.from_numpy(self.mean[indices].astype(np.float32)),
                torch.from_numpy(self.std[indices].astype(np.float32)))

    def item_captions(self, indices: np.ndarray) -> list[str]:
        return [self.captions[i] for i in indices]

    def item_keypoints(self, indices: np.ndarray) -> np.ndarray:
        return self.keypoints[indices]


class StreamedItems:
    """Items rendered and encoded when a step needs them (large images and clips, e.g. the sd presets)."""

    def __init__(self, data: Mapping[str, Any], stage: int, vae):
        self.dataset = import_object(str(data["target"]))(**dict(data["kwargs"]))
        self.stage, self.vae, self.count = stage, vae, int(data["count"])
        self._indices: tuple[int, ...] = ()
        self._items: list[tuple[np.ndarray, np.ndarray | None, str]] = []

    def __len__(self) -> int:
        return self.count

    def _load(self, indices: np.ndarray) -> list[tuple[np.ndarray, np.ndarray | None, str]]:
        key = tuple(int(i) for i in indices)
        if key != self._indices:
            self._indices, self._items = key, [_item_frames(self.dataset, i, self.stage) for i in key]
        return self._items

    def posterior(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return encode_posterior(self.vae, np.stack([f for f, _, _ in self._load(indices)]))

    def item_captions(self, indices: np.ndarray) -> list[str]:
        return [c for _, _, c in self._load(indices)]

    def item_keypoints(self, indices: np.ndarray) -> np.ndarray:
        return np.stack([k for _, k, _ in self._load(indices)])


# -------------------------------------------------------------------------------------------- the objective
class StageObjective(nn.Module):
    """The FollowPose model in one forward (so DDP synchronises it) whose state dict is the trained tensors
    only: checkpoints stay small (no frozen SD weights) and resuming restores exactly what is optimised."""

    def __init__(self, model: FollowPose, trainable: Mapping[str, nn.Parameter]):
        super().__init__()
        self.model = model
        self.trainable_names = tuple(trainable)

    def forward(self, noisy: torch.Tensor, timesteps: torch.Tensor, text: torch.Tensor,
                pose_video: torch.Tensor | None) -> torch.Tensor:
        return self.model(noisy, timesteps, text, pose_video)

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:  # type: ignore[override]
        parameters = dict(self.model.named_parameters())
        return {name: parameters[name].detach().clone() for name in self.trainable_names}

    def load_state_dict(self, state_dict: Mapping[str, torch.Tensor], strict: bool = True,
                        assign: bool = False):  # type: ignore[override]
        if set(state_dict) != set(self.trainable_names):
            raise UserError("checkpoint: its trained tensors differ from this configuration's trainable set")
        parameters = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, value in state_dict.items():
                parameters[name].copy_(value)
        return None


# ----------------------------------------------------------------------------------------------- building
def load_frozen_base(base: str, device: torch.device):
    """The base pipeline (float32, eval, every module frozen), its identity and its VAE's (the latent cache key)."""
    from fypbench.base.components import load_base, vae_identity

    folder = resolve_base_folder(resolve_path(base))
    components = load_base(folder, device=device)
    for module in components.modules().values():
        module.requires_grad_(False).eval()
    version = base_identity(folder)
    return components, version, vae_identity(folder) or version


def followpose_config(section: Mapping[str, Any], stage: int, where: str) -> dict[str, Any]:
    """The model.followpose section of a stage's config, checked to hold exactly that stage's fields."""
    fields = set(STAGE_FIELDS[stage])
    if set(section) != fields:
        extra, missing = sorted(set(section) - fields), sorted(fields - set(section))
        raise UserError(f"{where}: model.followpose must hold {', '.join(sorted(fields))} "
                        f"(unexpected: {extra or 'none'}; missing: {missing or 'none'})")
    return dict(section)


def check_sizes(config: FollowPoseConfig, components, size: int, where: str) -> None:
    vae_factor = components.vae_scale_factor
    if config.pose_downscale_factor != vae_factor:
        raise UserError(f"{where}: model.followpose.pose_downscale_factor {config.pose_downscale_factor} must equal "
                        f"the base VAE's factor {vae_factor} (pose features meet the latents' resolution)")
    multiple = config.pose_encoder_config(components.unet.config.block_out_channels).spatial_multiple
    if size % multiple:
        raise UserError(f"{where}: data.kwargs.size {size} must be a multiple of {multiple} (pose encoder and UNet "
                        "downsampling)")


def tokenize(tokenizer, captions: list[str]) -> torch.Tensor:
    return tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids


def run(preset: str = "mini", output_dir: Path | None = None, resume: bool = True,
        overrides: dict[str, Any] | None = None, *, stage: int) -> Path:
    """Train (or resume) stage `stage` (1 or 2) of `preset`; returns the exported deltas folder."""
    if stage not in RECIPES:
        raise UserError(f"followpose --stage {stage!r}: expected 1 or 2")
    recipe = RECIPES[stage]
    config, output_dir = recipe_config(recipe, preset, overrides, output_dir, resume)
    where = f"{recipe} preset {preset}"
    accelerator = make_accelerator(config["train"]["mixed_precision"])
    log = make_logger(output_dir, accelerator.is_main_process)
    device = accelerator.device
    seed = int(config["seed"])
    data, model_section, loss_section = config["data"], config["model"], config["loss"]
    timestep_mode = str(loss_section["timesteps"])
    if timestep_mode not in TIMESTEP_SAMPLINGS:
        raise UserError(f"{where}: loss.timesteps {timestep_mode!r}: expected one of {', '.join(TIMESTEP_SAMPLINGS)}")
    weighting, max_weight = str(loss_section.get("weighting", "none")), loss_section.get("max_weight")
    check_loss_weighting(weighting, max_weight, where)

    components, base_version, vae_version = load_frozen_base(str(model_section["base"]), device)
    fields = followpose_config(model_section["followpose"], stage, where)
    stage1_record = None
    if stage == 1:
        arch = FollowPoseConfig.from_dict({**fields, "temporal_attention": False, "conv_temporal": False},
                                          where=f"{where}: model.followpose")
        model = FollowPose.from_unet2d(components.unet, arch, init_seed=seed)
    else:
        stage1_dir = resolve_path(model_section["stage1_dir"])
        deltas = read_deltas(stage1_dir)
        arch = FollowPoseConfig.from_dict({**deltas.config.to_dict(), **fields}, where=f"{where}: model.followpose")
        model = build_from_deltas(components.unet, deltas, (1,), base_version=base_version, config=arch,
                                  init_seed=seed)
        stage1_manifest = json.loads((stage1_dir / "manifest.json").read_text())
        stage1_record = {"deltas": deltas.version, "training": stage1_manifest.get("training")}
        config["model"]["stage1_version"] = deltas.version
    # Recorded in the checkpoint's config, so resuming on another base model (or stage-1 result) fails loudly.
    config["model"]["base_version"] = base_version
    check_sizes(arch, components, int(data["kwargs"]["size"]), where)
    components.unet = None  # taken over by the model
    model.to(device)
    if bool(model_section["gradient_checkpointing"]):
        model.unet.unet2d.enable_gradient_checkpointing()

    trainable = freeze_for_stage(model, stage)
    if stage == 1 and model.unet.depth < len(model.pose_encoder.config.channels):
        # pose-encoder scales at or beyond the injection depth feed nothing: leave them out of the optimiser
        # (exported as initialised; DDP needs every optimised parameter to receive a gradient)
        unused = tuple(f"pose_encoder.adapter.body.{s}." for s in range(model.unet.depth,
                                                                      len(model.pose_encoder.config.channels)))
        unused += tuple(f"pose_encoder.zero_convs.{s}." for s in range(model.unet.depth,
                                                                     len(model.pose_encoder.config.channels)))
        for name in [n for n in trainable if n.startswith(unused)]:
            trainable.pop(name).requires_grad_(False)
    objective = StageObjective(model, trainable)
    log(f"stage {stage}: {len(trainable)} trainable tensors, {sum(p.numel() for p in trainable.values()):,} "
        f"parameters; architecture {arch.to_dict()}")

    with accelerator.main_process_first():
        if bool(data["cache"]):
            items: CachedItems | StreamedItems = CachedItems(data, stage, components.vae, vae_version, log)
        else:
            items = StreamedItems(data, stage, components.vae)
    size = int(data["kwargs"]["size"])
    scaling = float(components.vae.config.scaling_factor)
    noise_scheduler = components.noise_scheduler()
    num_timesteps = int(noise_scheduler.config.num_train_timesteps)
    dropout = float(data["caption_dropout"])
    tokenizer, text_encoder = components.tokenizer, components.text_encoder
    prefix = f"followpose-stage{stage}"

    def loss_fn(step: int, batch, modules) -> torch.Tensor:
        from fypbench.world.mini.skeleton import draw_keypose_video

        mean, std = items.posterior(batch.indices)
        shape = tuple(mean.shape[1:])
        latents = (mean + std * per_sample_randn(seed, f"{prefix}-posterior", batch.positions, shape)) * scaling
        noise = per_sample_randn(seed, f"{prefix}-noise", batch.positions, shape)
        timesteps = sample_timesteps(seed, f"{prefix}-timestep", batch.positions, num_timesteps, timestep_mode)
        noisy = noise_scheduler.add_noise(latents, noise, timesteps)
        captions = items.item_captions(batch.indices)
        drop = per_sample_uniform(seed, f"{prefix}-caption-dropout", batch.positions) < dropout
        captions = ["" if d else c for c, d in zip(captions, drop)]
        with torch.no_grad():
            text = text_encoder(tokenize(tokenizer, captions).to(device))[0]
        pose = None
        if stage == 1:
            maps = [draw_keypose_video(k, size) for k in items.item_keypoints(batch.indices)]
            pose = pose_videos_to_tensor(maps).to(device)
        prediction = modules["objective"](noisy.to(device), timesteps.to(device), text, pose).float()
        per_item = (prediction - noise.to(device)).pow(2).flatten(1).mean(1)
        weights = timestep_loss_weights(noise_scheduler.alphas_cumprod, timesteps, weighting, max_weight)
        return (weights.to(device) * per_item).mean()

    loop = TrainingLoop(accelerator=accelerator, output_dir=output_dir, config=config,
                        modules={"objective": objective}, parameters=list(trainable.values()),
                        dataset_size=len(items), loss_fn=loss_fn, log=log)
    result = loop.run(resume=resume)
    loop.export_parameters()
    export_dir = resolve_path(config["export"]["dir"]) if config["export"]["dir"] else output_dir / EXPORT_NAME
    if accelerator.is_main_process:
        record = run_record(config, overrides, result)
        record["training"]["command"] = record["training"]["command"].replace(
            f"train {recipe}", f"train followpose --stage {stage}", 1)
        if stage1_record is not None:
            record["stage1"] = stage1_record
        save_deltas(model, export_dir, stages=(1,) if stage == 1 else (1, 2), base_version=base_version,
                    float16=bool(config["export"]["float16"]), record=record)
        log(f"exported {export_dir}")
    accelerator.wait_for_everyone()
    return export_dir


def run_stage1(preset: str = "mini", output_dir: Path | None = None, resume: bool = True,
               overrides: dict[str, Any] | None = None) -> Path:
    return run(preset, output_dir, resume, overrides, stage=1)


def run_stage2(preset: str = "mini", output_dir: Path | None = None, resume: bool = True,
               overrides: dict[str, Any] | None = None) -> Path:
    return run(preset, output_dir, resume, overrides, stage=2)


def main(argv: list[str] | None = None) -> None:
    from fypbench.training.common import recipe_main

    recipe_main(run, __doc__, argv, stages=(1, 2))


if __name__ == "__main__":
    main()
