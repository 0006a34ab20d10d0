"""Stable Diffusion's anatomy at any width: tokenizer, text encoder, VAE, UNet, schedulers; save and load.

    python -c "from fypbench.base.components import build_components, describe; print(describe(build_components('mini')))"

Every preset keeps SD 1.x's layout: a CLIP tokenizer (the 49,408-token BPE vocabulary that ships inside the
open_clip wheel, so it works offline), a CLIP text encoder, an AutoencoderKL, a UNet2DConditionModel with 4 down
blocks (3 CrossAttnDownBlock2D, the first included, then a DownBlock2D), mirrored up blocks, one transformer
layer per attention (16 transformer blocks: 2+2+2 down, 1 mid, 3+3+3 up), DDPM training and DDIM sampling
schedulers with SD's scaled_linear betas. The presets differ only in widths:

- ``debug``: tiny, for tests (seconds).
- ``mini``: the shipped mini-world model (64 px images, 4x VAE, 16x16x4 latents).
- ``sd``: Stable Diffusion 1.5's exact configs (build it on the meta device for conformance checks).

A pipeline is saved as a standard diffusers StableDiffusionPipeline folder, so :func:`load_base` loads SD 1.4/1.5
folders and the mini folder with the same code, offline.
"""

from __future__ import annotations

import contextlib
import copy
import gzip
import hashlib
import importlib.resources
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from fypbench.errors import UserError, did_you_mean
from fypbench.io import file_lock
from fypbench.seeding import derive_seed

CLIP_VOCAB_SIZE = 49408
CLIP_CONTEXT_LENGTH = 77
BPE_RESOURCE = ("open_clip", "bpe_simple_vocab_16e6.txt.gz")
MANIFEST_NAME = "manifest.json"
COMPONENT_NAMES = ("tokenizer", "text_encoder", "vae", "unet", "scheduler")

# SD 1.x's scheduler_config.json (the sampler is DDIM; training uses DDPM with the same betas).
SD_SCHEDULER: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "steps_offset": 1,
    "clip_sample": False,
    "set_alpha_to_one": False,
    "prediction_type": "epsilon",
}

_UNET_LAYOUT: dict[str, Any] = {
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "layers_per_block": 2,
    "transformer_layers_per_block": 1,
    "in_channels": 4,
    "out_channels": 4,
    "act_fn": "silu",
    "center_input_sample": False,
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-5,
}

PRESETS: dict[str, dict[str, Any]] = {
    "debug": {
        "text_encoder": {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                         "num_attention_heads": 2},
        "vae": {"block_out_channels": [8, 16], "layers_per_block": 1, "norm_num_groups": 4, "sample_size": 16},
        "unet": {"block_out_channels": [8, 16, 16, 16], "attention_head_dim": 2, "norm_num_groups": 4,
                 "sample_size": 8},
    },
    "mini": {
        # The text encoder's width is set by the size budget: its 49,408-row token embedding dominates.
        "text_encoder": {"hidden_size": 32, "intermediate_size": 128, "num_hidden_layers": 4,
                         "num_attention_heads": 2},
        # GroupNorm with 8 groups (4+ channels per group, SD has 10+): with 32 groups on 32 channels each
        # channel is normalised alone, which erases its mean colour; the VAE then learned ~10x slower
        # (measured: L1+MSE 0.60 vs 0.40 after 50 steps, PSNR 21.2 dB after 300 steps of batch 16 vs
        # 20.7 dB after 1,500 steps of batch 32).
        "vae": {"block_out_channels": [32, 64, 64], "layers_per_block": 1, "norm_num_groups": 8,
                "sample_size": 64},
        # attention_head_dim is diffusers' legacy name for the number of heads: head width 16 everywhere.
        # Widths set by the size budget (~15 MB for the whole float16 pipeline folder, tokenizer included).
        "unet": {"block_out_channels": [32, 64, 80, 80], "attention_head_dim": [2, 4, 5, 5],
                 "norm_num_groups": 8, "sample_size": 16},
    },
    "sd": {
        # Stable Diffusion 1.5: CLIP ViT-L/14 text tower, the f8 KL autoencoder, the 859,520,964-parameter UNet.
        "text_encoder": {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                         "num_attention_heads": 12, "projection_dim": 768},
        "vae": {"block_out_channels": [128, 256, 512, 512], "layers_per_block": 2, "norm_num_groups": 32,
                "sample_size": 512, "scaling_factor": 0.18215},
        "unet": {"block_out_channels": [320, 640, 1280, 1280], "attention_head_dim": 8, "norm_num_groups": 32,
                 "sample_size": 64, "cross_attention_dim": 768},
    },
}


def preset_config(preset: str | Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The full constructor kwargs of each component for a preset name (or an explicit preset dict)."""
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise did_you_mean(preset, PRESETS, "base preset")
        widths = PRESETS[preset]
    else:
        widths = preset
    unknown = set(widths) - {"text_encoder", "vae", "unet"}
    if unknown:
        raise UserError(f"base preset: unknown section(s) {', '.join(sorted(unknown))} "
                        "(known: text_encoder, vae, unet)")
    text = {"vocab_size": CLIP_VOCAB_SIZE, "max_position_embeddings": CLIP_CONTEXT_LENGTH,
            "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5, "bos_token_id": 49406, "eos_token_id": 49407,
            "pad_token_id": 1, **copy.deepcopy(widths["text_encoder"])}
    text.setdefault("projection_dim", text["hidden_size"])
    num_vae_blocks = len(widths["vae"]["block_out_channels"])
    vae = {"in_channels": 3, "out_channels": 3, "latent_channels": 4, "act_fn": "silu",
           "down_block_types": ["DownEncoderBlock2D"] * num_vae_blocks,
           "up_block_types": ["UpDecoderBlock2D"] * num_vae_blocks, **copy.deepcopy(widths["vae"])}
    unet = {**copy.deepcopy(_UNET_LAYOUT), "cross_attention_dim": text["hidden_size"],
            **copy.deepcopy(widths["unet"])}
    if unet["cross_attention_dim"] != text["hidden_size"]:
        raise UserError(f"base preset: unet.cross_attention_dim {unet['cross_attention_dim']} != "
                        f"text_encoder.hidden_size {text['hidden_size']}")
    return {"text_encoder": text, "vae": vae, "unet": unet, "scheduler": dict(SD_SCHEDULER)}


# --------------------------------------------------------------------------------------------------- tokenizer
@lru_cache(maxsize=1)
def _clip_bpe() -> tuple[dict[str, int], tuple[tuple[str, str], ...]]:
    from open_clip.tokenizer import bytes_to_unicode

    package, name = BPE_RESOURCE
    raw = importlib.resources.files(package).joinpath(name).read_bytes()
    # The file's first line is a version header; CLIP uses the first 48,894 merges (= 49,152 - 256 - 2).
    lines = gzip.decompress(raw).decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
    merges = tuple(tuple(line.split()) for line in lines)
    byte_symbols = list(bytes_to_unicode().values())
    tokens = (byte_symbols + [s + "</w>" for s in byte_symbols] + ["".join(m) for m in merges]
              + ["<|startoftext|>", "<|endoftext|>"])
    return {token: i for i, token in enumerate(tokens)}, merges


def build_tokenizer():
    """transformers.CLIPTokenizer from the BPE vocabulary inside the open_clip wheel (49,408 tokens, offline).

    Same ids as open_clip's tokenizer and as SD 1.x's tokenizer folder; pads with <|endoftext|> like SD 1.x.
    """
    from transformers import CLIPTokenizer

    vocab, merges = _clip_bpe()
    tokenizer = CLIPTokenizer(vocab=dict(vocab), merges=list(merges), model_max_length=CLIP_CONTEXT_LENGTH)
    check_tokenizer(tokenizer, "open_clip's bpe_simple_vocab_16e6.txt.gz")
    return tokenizer


def check_tokenizer(tokenizer, where: str) -> None:
    """Guard against the offline trap: a hub id resolved offline gives a 2-token tokenizer that pads everything."""
    if len(tokenizer) != CLIP_VOCAB_SIZE:
        raise UserError(f"{where}: tokenizer has {len(tokenizer)} tokens, expected the CLIP vocabulary of "
                        f"{CLIP_VOCAB_SIZE}")


# -------------------------------------------------------------------------------------------------- components
@dataclass
class Components:
    """The parts of a Stable Diffusion pipeline. `scheduler` samples (DDIM); `noise_scheduler()` trains (DDPM)."""

    tokenizer: Any
    text_encoder: Any
    vae: Any
    unet: Any
    scheduler: Any

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def resolution(self) -> int:
        return int(self.unet.config.sample_size) * self.vae_scale_factor

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        size = int(self.unet.config.sample_size)
        return (int(self.unet.config.in_channels), size, size)

    def noise_scheduler(self):
        from diffusers import DDPMScheduler

        return DDPMScheduler.from_config(self.scheduler.config)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"text_encoder": self.text_encoder, "vae": self.vae, "unet": self.unet}

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> Components:
        # only the arguments given: diffusers warns on any `dtype=` keyword, even None
        arguments = {k: v for k, v in (("device", device), ("dtype", dtype)) if v is not None}
        for module in self.modules().values():
            module.to(**arguments)
        return self

    def eval(self) -> Components:
        for module in self.modules().values():
            module.eval()
        return self

    def pipeline(self):
        """A StableDiffusionPipeline over these components (no safety checker: synthetic images)."""
        from diffusers import StableDiffusionPipeline

        pipe = StableDiffusionPipeline(vae=self.vae, text_encoder=self.text_encoder, tokenizer=self.tokenizer,
                                       unet=self.unet, scheduler=self.scheduler, safety_checker=None,
                                       feature_extractor=None, requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    @torch.no_grad()
    def encode_prompts(self, prompts: Sequence[str]) -> torch.Tensor:
        """SD 1.x conditioning: the text encoder's last hidden state over 77 padded tokens."""
        ids = self.tokenizer(list(prompts), padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids
        return self.text_encoder(ids.to(self.text_encoder.device))[0]


@contextlib.contextmanager
def seeded_init(*parts: object) -> Iterator[None]:
    """Module initialisation draws from torch's global RNG: fork it, seed it from stable parts, restore it."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed("init", *parts))
        yield


def build_text_encoder(config: Mapping[str, Any]):
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(**config))


def build_vae(config: Mapping[str, Any]):
    from diffusers import AutoencoderKL

    return AutoencoderKL(**config)


def build_unet(config: Mapping[str, Any]):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**config)


def build_scheduler(config: Mapping[str, Any] | None = None):
    from diffusers import DDIMScheduler

    return DDIMScheduler(**(config or SD_SCHEDULER))


def build_components(preset: str | Mapping[str, Any] = "mini", seed: int = 0,
                     device: str | torch.device = "cpu") -> Components:
    """Freshly initialised components of a preset; `device="meta"` builds shapes only (e.g. the sd preset)."""
    config = preset_config(preset)
    name = preset if isinstance(preset, str) else json.dumps(preset, sort_keys=True)
    builders = {"text_encoder": build_text_encoder, "vae": build_vae, "unet": build_unet}
    modules = {}
    for part, builder in builders.items():
        with seeded_init("base", name, part, seed), torch.device(device):
            modules[part] = builder(config[part])
    return Components(tokenizer=build_tokenizer(), scheduler=build_scheduler(config["scheduler"]), **modules)


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def count_transformer_blocks(unet: torch.nn.Module) -> int:
    return sum(1 for m in unet.modules() if type(m).__name__ == "BasicTransformerBlock")


def describe(components: Components) -> str:
    parts = [f"{name} {count_parameters(m) / 1e6:.3f} M" for name, m in components.modules().items()]
    return (f"{', '.join(parts)}; {components.resolution} px, latents {components.latent_shape}, "
            f"{count_transformer_blocks(components.unet)} transformer blocks")


# ------------------------------------------------------------------------------------------------ save / load
def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def vae_identity(folder: str | Path) -> str | None:
    """sha256 of a pipeline folder's VAE weights (latent caches depend on the VAE alone), None without that file."""
    path = Path(folder) / "vae" / "diffusion_pytorch_model.safetensors"
    return sha256_file(path) if path.is_file() else None


def file_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder` (relative POSIX paths), the manifest excluded."""
    return {p.relative_to(folder).as_posix(): sha256_file(p)
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST_NAME}


def folder_version(hashes: Mapping[str, str]) -> str:
    """One short id for a whole weights folder: a hash over its files' hashes."""
    blob = json.dumps(dict(sorted(hashes.items())), separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()[:16]


def save_pipeline(components: Components, path: str | os.PathLike, half: Sequence[str] = (),
                  manifest: Mapping[str, Any] | None = None) -> Path:
    """Save as a diffusers StableDiffusionPipeline folder (safetensors), atomically, with a manifest.json.

    `half` names the modules stored in float16 (the caller's modules are not changed). The manifest records
    the sha256 of every file, a folder version and whatever the caller adds (training command, config).
    """
    path = Path(path)
    unknown = set(half) - set(components.modules())
    if unknown:
        raise ValueError(f"cannot store {sorted(unknown)} in float16: not a module of the pipeline")
    stored = {name: copy.deepcopy(module).to("cpu", torch.float16 if name in half else torch.float32)
              for name, module in components.modules().items()}
    pipe = Components(tokenizer=components.tokenizer, scheduler=components.scheduler, **stored).pipeline()

    def write(staging: Path) -> None:
        pipe.save_pretrained(staging, safe_serialization=True)
        write_tokenizer_files(components.tokenizer, staging / "tokenizer")
        hashes = file_hashes(staging)
        record = {"format": "diffusers StableDiffusionPipeline", "version": folder_version(hashes),
                  "float16": sorted(half), "files": hashes,
                  "parameters": {name: count_parameters(m) for name, m in stored.items()},
                  **dict(manifest or {})}
        (staging / MANIFEST_NAME).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")

    save_folder_atomic(write, path)
    return path


def write_tokenizer_files(tokenizer, folder: Path) -> None:
    """Store the BPE tokenizer as SD 1.x's vocab.json + merges.txt (1.5 MB) instead of tokenizer.json (3.5 MB)."""
    model = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    (folder / "vocab.json").write_text(json.dumps(model["vocab"], ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    (folder / "tokenizer.json").unlink(missing_ok=True)


def save_folder_atomic(write: Callable[[Path], Any], path: str | os.PathLike) -> Path:
    """Call `write(staging_dir)` on a fresh folder beside `path`, then swap it in with renames only.

    Exports into one parent folder take turns (an flock on the parent, held for the export), so the staging
    folders of an export killed earlier (`.NAME.xxxxxxxx`, `.NAME.old.xxxxxxxx`) are removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(path.parent, wait=True):
        _remove_stale_staging(path)
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            staging.chmod(0o777 & ~_umask())  # mkdtemp makes it 0700: give the folder the mode a mkdir would
            write(staging)
            _swap_in(staging, path)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return path


def _remove_stale_staging(path: Path) -> None:
    """Remove the staging/retired folders mkdtemp named for `path` (8 characters of its alphabet) beside it."""
    pattern = re.compile(re.escape(f".{path.name}.") + r"(old\.)?[a-z0-9_]{8}")
    for entry in path.parent.iterdir():
        if pattern.fullmatch(entry.name) and entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _swap_in(staging: Path, path: Path) -> None:
    """Replace folder `path` by `staging` with renames only (the old folder is removed last)."""
    retired = None
    if path.exists():
        retired = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
        retired.rmdir()
        os.replace(path, retired)
    os.replace(staging, path)
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)


def verify_manifest(folder: Path) -> dict[str, Any] | None:
    """Check the files of a folder against its manifest.json (None when there is none, as in SD folders)."""
    manifest_path = folder / MANIFEST_NAME
    if not manifest_path.exists():
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
        expected = dict(manifest["files"])
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{manifest_path}: unreadable manifest ({exc})") from None
    for relative, digest in expected.items():
        file = folder / relative
        if not file.is_file():
            raise UserError(f"{file}: missing (listed in {manifest_path})")
        if sha256_file(file) != digest:
            raise UserError(f"{file}: sha256 does not match {manifest_path} (corrupt or modified weights)")
    return manifest


def _resolve_folder(path_or_hub_id: str | os.PathLike) -> Path:
    path = Path(path_or_hub_id).expanduser()
    if path.exists():
        if not path.is_dir():
            raise UserError(f"{path}: not a folder (expected a diffusers pipeline folder)")
        return path
    text = str(path_or_hub_id)
    looks_like_hub_id = text.count("/") == 1 and not text.startswith((".", "/", "~"))
    if looks_like_hub_id:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            return Path(snapshot_download(text, local_files_only=True))
        except (LocalEntryNotFoundError, OSError, ValueError):
            raise UserError(f"{text}: no such folder and not in the local Hugging Face cache "
                            "(offline: download it once, or pass a local pipeline folder)") from None
    raise UserError(f"{path}: base model folder not found")


def load_base(path_or_hub_id: str | os.PathLike, dtype: torch.dtype = torch.float32,
              device: str | torch.device = "cpu", verify: bool = True) -> Components:
    """Load a StableDiffusionPipeline folder (SD 1.4/1.5 or the mini world's) offline, as float `dtype`.

    A hub id is looked up in the local Hugging Face cache only. A missing, incomplete or corrupt folder raises
    UserError naming the path; when the folder has a manifest.json, every file's sha256 is checked first.
    """
    folder = _resolve_folder(path_or_hub_id)
    if not (folder / "model_index.json").is_file():
        raise UserError(f"{folder}: not a diffusers pipeline folder (no model_index.json)")
    if verify:
        verify_manifest(folder)
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # a bar per load would interleave with the run's own progress

    def load(part: str, loader):
        if not (folder / part).is_dir():
            raise UserError(f"{folder / part}: missing (a pipeline folder needs {', '.join(COMPONENT_NAMES)})")
        try:
            return loader()
        except UserError:
            raise
        except Exception as exc:  # the loaders raise OSError, ValueError, SafetensorError, RuntimeError, ...
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UserError(f"{folder / part}: cannot load ({type(exc).__name__}: {first_line})") from None

    common = {"local_files_only": True}
    tokenizer = load("tokenizer", lambda: CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer", **common))
    check_tokenizer(tokenizer, str(folder / "tokenizer"))
    text_encoder = load("text_encoder", lambda: CLIPTextModel.from_pretrained(
        folder, subfolder="text_encoder", dtype=dtype, **common))
    vae = load("vae", lambda: AutoencoderKL.from_pretrained(folder, subfolder="vae", torch_dtype=dtype, **common))
    unet = load("unet", lambda: UNet2DConditionModel.from_pretrained(
        folder, subfolder="unet", torch_dtype=dtype, **common))
    scheduler = load("scheduler", lambda: DDIMScheduler.from_pretrained(folder, subfolder="scheduler", **common))
    if text_encoder.config.vocab_size != len(tokenizer):
        raise UserError(f"{folder / 'text_encoder'}: vocabulary {text_encoder.config.vocab_size} != tokenizer "
                        f"{len(tokenizer)}")
    components = Components(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, unet=unet,
                            scheduler=scheduler)
    return components.to(device=device).eval()


def mini_weights_dir() -> Path:
    """Where the shipped mini-world base pipeline lives inside the package."""
    return Path(__file__).resolve().parent.parent / "weights" / "mini" / "base"
