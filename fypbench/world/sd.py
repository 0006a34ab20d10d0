"""The sd world: Stable Diffusion 1.x, the official Follow-Your-Pose release and the hub baselines, 512 px, 8 frames.

    fypbench run --world sd --methods base-no-pose,followpose --limit 8 --no-score --out runs/sd-demo
    python -c "from fypbench.world.sd import SdWorld, describe_sources; print(describe_sources())"

Every model comes from a hub id or a local folder; fypbench downloads nothing at run time. A hub id is looked up
in the local Hugging Face cache only (`snapshot_download(..., local_files_only=True)`, the semantics of
HF_HUB_OFFLINE=1; the cache is $HF_HUB_CACHE / $HF_HOME as usual). When it is not there the method is reported
`SKIPPED` with a one-line reason naming the hub id, the download command and the environment variable.

Environment variables (each a local folder or a hub id; unset = the default hub id):

- FYPBENCH_SD_BASE: the base text-to-image pipeline (a diffusers StableDiffusionPipeline folder) every method
  stands on. Default stable-diffusion-v1-5/stable-diffusion-v1-5 (the official mirror of
  runwayml/stable-diffusion-v1-5, which is used instead when it is the one cached).
- FYPBENCH_SD_FOLLOWPOSE: Follow-Your-Pose, the official release (`followyourpose_checkpoint-1000/` +
  `pose_encoder.pth`) or a fypbench deltas folder (`followpose.json`). Default YueMafighting/FollowYourPose_v1.
- FYPBENCH_SD_CONTROLNET: ControlNet OpenPose (a diffusers ControlNetModel folder). Default
  lllyasviel/sd-controlnet-openpose (variant v1.0; v1.1: lllyasviel/control_v11p_sd15_openpose).
- FYPBENCH_SD_T2I_ADAPTER: T2I-Adapter (a diffusers T2IAdapter folder; also MasaCtrl's pose control). Default
  TencentARC/t2iadapter_keypose_sd14v1 (variant keypose; openpose: TencentARC/t2iadapter_openpose_sd14v1).
- FYPBENCH_SD_DEVICE: the torch device the methods run on (a method's own `device` option wins). Default cuda
  when available, else cpu.

A method's `variant` option (controlnet, t2i-adapter, masactrl) picks that variant's hub id when the variable is
unset; a set variable names the folder whatever the variant. The methods' sampler defaults are their "sd" presets
(official steps and guidance); a run config or run preset overrides them per method as in the mini world.

One base for every method: the official Follow-Your-Pose and T2I-Adapter checkpoints were trained on SD 1.4,
ControlNet on SD 1.5 (FYPBENCH_SD_BASE=CompVis/stable-diffusion-v1-4 runs everything on SD 1.4). Methods generate
at the world's 512 px (8 frames, the protocol's) unless a method's `size` option says otherwise.

What the sd world does not have: a renderer. `reference` (the ground-truth ceiling) and `tune-a-video` (tuned on
the sample's source video) are therefore unavailable here, with that reason: there are no ground-truth videos of
the protocol's poses, and real source videos are not shipped (`TuneAVideoGenerator.from_pretrained(base,
source_video=...)` takes your own). Nothing is silently replaced.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from fypbench.generator import MethodUnavailable


@dataclass(frozen=True)
class Source:
    """Where one component comes from: an environment variable, else a default hub id per variant."""

    what: str  # in messages
    env: str
    defaults: dict[str, tuple[str, ...]]  # variant -> hub ids tried in order (the first is the one to download)
    default_variant: str

    def hub_ids(self, variant: str | None) -> tuple[str, ...]:
        if variant is not None and variant not in self.defaults:
            from fypbench.errors import did_you_mean

            raise did_you_mean(variant, self.defaults, f"{self.what} variant")
        return self.defaults[variant or self.default_variant]


SD15_IDS = ("stable-diffusion-v1-5/stable-diffusion-v1-5", "runwayml/stable-diffusion-v1-5")
BASE = Source("base model", "FYPBENCH_SD_BASE", {"sd15": SD15_IDS}, "sd15")
# method name -> its weights (the names of fypbench.registry.METHODS); the hub ids are the baselines' own
# (fypbench.baselines.controlnet.CONTROLNET_CHECKPOINTS, fypbench.baselines.t2i_adapter.ADAPTER_CHECKPOINTS)
METHOD_SOURCES: dict[str, Source] = {
    "followpose": Source("Follow-Your-Pose weights", "FYPBENCH_SD_FOLLOWPOSE",
                         {"official": ("YueMafighting/FollowYourPose_v1",)}, "official"),
    "controlnet": Source("ControlNet weights", "FYPBENCH_SD_CONTROLNET",
                         {"v1.0": ("lllyasviel/sd-controlnet-openpose",),
                          "v1.1": ("lllyasviel/control_v11p_sd15_openpose",)}, "v1.0"),
    "t2i-adapter": Source("T2I-Adapter weights", "FYPBENCH_SD_T2I_ADAPTER",
                          {"keypose": ("TencentARC/t2iadapter_keypose_sd14v1",),
                           "openpose": ("TencentARC/t2iadapter_openpose_sd14v1",)}, "keypose"),
}
DEVICE_ENV = "FYPBENCH_SD_DEVICE"
NO_RENDERER = ("the sd world has no renderer: no ground-truth videos of the protocol's poses, and no real source "
               "videos are shipped")


def looks_like_hub_id(text: str) -> bool:
    return text.count("/") == 1 and not text.startswith((".", "/", "~")) and not text.endswith("/")


def from_hub_cache(repo_id: str) -> Path | None:
    """The cached snapshot folder of a model repo, or None; never touches the network."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None


def resolve(source: Source, variant: str | None = None) -> Path:
    """The local folder of a component: $ENV (a folder, or a hub id in the cache), else the default hub id(s)
    in the cache. MethodUnavailable (one line: what is missing, how to provide it) when there is none."""
    value = os.environ.get(source.env, "").strip()
    if value:
        path = Path(value).expanduser()
        if path.is_dir():
            return path
        if not path.exists() and looks_like_hub_id(value):
            found = from_hub_cache(value)
            if found is not None:
                return found
            raise MethodUnavailable(f"sd world: {source.what} {value} (from {source.env}) is not in the local Hugging "
                                    f"Face cache and fypbench downloads nothing at run time: run `hf download {value}` "
                                    f"once, or set {source.env} to a local folder")
        raise MethodUnavailable(f"sd world: {source.env}={value}: no such folder (expected a local folder or a "
                                f"hub id in the local Hugging Face cache)")
    hub_ids = source.hub_ids(variant)
    for repo_id in hub_ids:
        found = from_hub_cache(repo_id)
        if found is not None:
            return found
    others = f" (nor {', '.join(hub_ids[1:])})" if len(hub_ids) > 1 else ""
    raise MethodUnavailable(f"sd world: {source.what} {hub_ids[0]}{others} is not in the local Hugging Face cache "
                            f"and fypbench downloads nothing at run time: run `hf download {hub_ids[0]}` once, or set "
                            f"{source.env} to a local folder")


def describe_sources() -> str:
    """One line per component: its variable, its current value or default, and where it resolves now."""
    lines = []
    for name, source in {"base": BASE, **METHOD_SOURCES}.items():
        value = os.environ.get(source.env) or source.hub_ids(None)[0]
        try:
            where = str(resolve(source))
        except MethodUnavailable:
            where = "not available"
        lines.append(f"{name}: {source.env}={value} -> {where}")
    return "\n".join(lines)


@dataclass(frozen=True)
class SdWorld:
    """The full-scale world's components (see the module docstring). No renderer: no `render_reference`, no
    `render_source`; `no_renderer_reason` says why to the methods that would need one."""

    name: str = "sd"
    size: int = 512
    num_frames: int = 8
    no_renderer_reason: ClassVar[str] = NO_RENDERER

    def base_model(self) -> str:
        """The base pipeline folder (fypbench.base.load_base reads it); MethodUnavailable when not available."""
        return str(resolve(BASE))

    def method_weights(self, method: str, variant: str | None = None) -> Path:
        """The weights folder of a method (its `variant`'s default hub id unless the variable is set)."""
        source = METHOD_SOURCES.get(method)
        if source is None:
            raise MethodUnavailable(f"{method}: the sd world has no weights for it (it knows "
                                    f"{', '.join(METHOD_SOURCES)})")
        return resolve(source, variant)

    @property
    def device(self) -> str:
        override = os.environ.get(DEVICE_ENV, "").strip()
        if override:
            return override
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def method_defaults(self) -> dict[str, Any]:
        """Option defaults for every method built in this world (a method takes those it accepts; its own
        options, from a run config or run preset, win): the sd sampler presets, and the device."""
        return {"preset": "sd", "device": self.device}
