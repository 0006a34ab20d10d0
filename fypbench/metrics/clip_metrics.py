"""CLIP score (CS) and frame consistency (FC) over stored uint8 frames, sharing one CLIP image embedding step.

    python -c "from fypbench.metrics.clip_metrics import clip_score_from_cosines; print(clip_score_from_cosines([0.3, -0.1]))"

Definitions (../shared/reference/metrics.md §1-2):
- `clip_score`: CS(video) = mean over frames of 100 * max(cos(E_img(frame_t), E_txt(prompt)), 0). The clamp is
  per frame (CLIPScore paper style; torchmetrics clamps the mean instead, see `clip_score_clamp_mean`). The
  raw per-frame cosines are kept in the record so other conventions can be recomputed.
- `fc_clip_consecutive`: mean over t of 100 * cos(E_img(frame_t), E_img(frame_t+1)), no clamp.
  `fc_clip_allpairs`: mean over all pairs i < j.
  FC policy for a single-frame video: NaN with `nan_reason` (no pair exists; never a silent 0 or 100).
  Such videos are counted (`n_finite` vs `n_videos`) in the method-level aggregate.
- Embeddings: open_clip `encode_image` / `encode_text`, fp32, L2-normalised. Images: uint8 RGB frames ->
  PIL -> the model's own open_clip evaluation transform (resize shortest side bicubic, centre crop, /255,
  model mean/std). Text: the raw prompt, no template, truncated at the context length (77) with a log line.

Backbones:
- sd world: open_clip `ViT-L-14`, pretrained `openai` (QuickGELU), from a local file the user provides:
  `--clip-weights PATH` or the env var FYPBENCH_CLIP_WEIGHTS (OpenAI's TorchScript `ViT-L-14.pt` or
  open_clip's `open_clip_pytorch_model.bin` / `.safetensors` from `timm/vit_large_patch14_clip_224.openai`).
  `ViT-B-32` `openai` (env FYPBENCH_CLIP_B32_WEIGHTS) is the named alternative `clip_score_b32`.
- mini world: an in-house open_clip model in a folder (`open_clip_config.json` with `model_cfg` and
  `preprocess_cfg`, `open_clip_model.safetensors`, optionally `compact_vocab.json` (the text tower's compact
  vocabulary, fypbench.metrics.clip_vocab; its sha256 enters the metric config) and `fypbench_clip.json`, the
  manifest: provenance, training record and the sha256 of every file), written by
  `fypbench train evaluator-clip --world mini` (see fypbench.training.evaluator_clip). The default folder
  is the shipped one, fypbench/world/mini/data/evaluator_clip.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from fypbench.errors import UserError
from fypbench.metrics.base import FeatureStep, Metric, MetricResult, VideoItem, nan_result
from fypbench.metrics.clip_vocab import VOCAB_FILE

LOG = logging.getLogger("fypbench.metrics")

CLIP_WEIGHTS_ENV = {"ViT-L-14": "FYPBENCH_CLIP_WEIGHTS", "ViT-B-32": "FYPBENCH_CLIP_B32_WEIGHTS"}
LOCAL_CONFIG_FILE = "open_clip_config.json"
LOCAL_WEIGHTS_FILE = "open_clip_model.safetensors"
LOCAL_PROVENANCE_FILE = "fypbench_clip.json"
MINI_CLIP_DIR = Path(__file__).resolve().parents[1] / "world" / "mini" / "data" / "evaluator_clip"
SCALE = 100.0


class ClipEmbedder(Protocol):
    """What the CLIP metrics need from a backbone (a real open_clip model or a test stub)."""

    def config(self) -> dict[str, Any]: ...

    def embed_images(self, frames: np.ndarray) -> np.ndarray:
        """uint8 (N, H, W, 3) -> (N, D) float L2-normalised."""

    def embed_texts(self, texts: Sequence[str]) -> tuple[np.ndarray, list[bool]]:
        """(N, D) float L2-normalised, and per text whether it was truncated."""


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class OpenClipEmbedder:
    """An open_clip model with its own evaluation preprocessing and tokenizer; fp32, eval mode."""

    def __init__(self, model, tokenizer, model_id: str, pretrained: str, weights_path: str | os.PathLike,
                 weights_sha256: str, extra_config: Mapping[str, Any] | None = None, device: str = "cpu",
                 batch_size: int = 64):
        import open_clip
        from open_clip.transform import PreprocessCfg, image_transform_v2

        self.model = model.to(device=device, dtype=None).eval()
        self.tokenizer = tokenizer
        self.device = device
        self.batch_size = batch_size
        self.preprocess_cfg = dict(model.visual.preprocess_cfg)
        self.transform = image_transform_v2(PreprocessCfg(**self.preprocess_cfg), is_train=False)
        self.context_length = int(tokenizer.context_length)
        self._config = {
            "model_id": model_id, "pretrained": pretrained, "weights_file": Path(weights_path).name,
            "weights_sha256": weights_sha256, "open_clip_version": open_clip.__version__,
            "preprocess": {**{k: (list(v) if isinstance(v, tuple) else v) for k, v in self.preprocess_cfg.items()},
                           "input": "uint8 RGB -> PIL -> open_clip eval transform (x/255, mean/std)"},
            "precision": "fp32", "normalise": "l2", "context_length": self.context_length,
            "text": "raw prompt, no template, truncated at context_length",
            **dict(extra_config or {}),
        }

    def config(self) -> dict[str, Any]:
        return dict(self._config)

    def _pixels(self, frames: np.ndarray):
        import torch
        from PIL import Image

        return torch.stack([self.transform(Image.fromarray(np.ascontiguousarray(f))) for f in frames])

    def embed_images(self, frames: np.ndarray) -> np.ndarray:
        import torch

        out = []
        with torch.inference_mode():
            for start in range(0, len(frames), self.batch_size):
                pixels = self._pixels(frames[start:start + self.batch_size]).to(self.device, torch.float32)
                features = self.model.encode_image(pixels, normalize=True)
                out.append(features.float().cpu().numpy())
        return np.concatenate(out, axis=0)

    def token_count(self, text: str) -> int:
        """Tokens including start and end markers."""
        return len(self.tokenizer.encode(text)) + 2

    def embed_texts(self, texts: Sequence[str]) -> tuple[np.ndarray, list[bool]]:
        import torch

        truncated = []
        for text in texts:
            count = self.token_count(text)
            truncated.append(count > self.context_length)
            if count > self.context_length:
                LOG.warning("prompt truncated from %d to %d tokens: %r", count, self.context_length, text)
            unknown = self.tokenizer.unknown_words(text) if hasattr(self.tokenizer, "unknown_words") else []
            if unknown:
                LOG.warning("prompt has %d token(s) outside the CLIP's compact vocabulary (%s): %r", len(unknown),
                            ", ".join(unknown[:5]), text)
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                tokens = self.tokenizer(list(texts[start:start + self.batch_size])).to(self.device)
                out.append(self.model.encode_text(tokens, normalize=True).float().cpu().numpy())
        return np.concatenate(out, axis=0), truncated


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("constants.pkl") for name in archive.namelist())


def _load_weights_into(model, path: Path, model_id: str) -> None:
    import open_clip
    import torch

    try:
        if _is_torchscript(path):
            state = torch.jit.load(str(path), map_location="cpu").state_dict()
            # OpenAI's archives carry these scalars; TorchScript also saves non-persistent buffers (attn_mask)
            non_persistent = {name for name, _ in model.named_buffers()} - set(model.state_dict())
            for key in ("input_resolution", "context_length", "vocab_size", *non_persistent):
                state.pop(key, None)
            model.load_state_dict(state, strict=True)
        else:
            open_clip.load_checkpoint(model, str(path), strict=True, weights_only=True)
    except (RuntimeError, KeyError, ValueError, OSError, zipfile.BadZipFile) as error:
        detail = " ".join(str(error).split()) or type(error).__name__
        raise UserError(f"{path}: not loadable as {model_id} CLIP weights ({detail[:300]})") from None


@contextlib.contextmanager
def _without_log_message(fragment: str) -> Iterator[None]:
    class Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return fragment not in record.getMessage()

    drop = Drop()
    logging.getLogger().addFilter(drop)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(drop)


def resolve_openai_weights(model_id: str, weights: str | os.PathLike | None) -> Path:
    env = CLIP_WEIGHTS_ENV.get(model_id)
    if model_id not in CLIP_WEIGHTS_ENV:
        raise UserError(f"unsupported CLIP backbone {model_id!r} (supported: {', '.join(CLIP_WEIGHTS_ENV)})")
    value = weights if weights is not None else os.environ.get(env)
    how = (f"pass --clip-weights PATH or set {env} to a local copy of OpenAI's {model_id}.pt or open_clip's "
           f"open_clip_pytorch_model.bin for {model_id} 'openai' (nothing is downloaded)")
    if not value:
        raise UserError(f"CLIP weights for {model_id} 'openai' not provided: {how}")
    path = Path(value).expanduser()
    if not path.is_file():
        raise UserError(f"CLIP weights file {path} not found: {how}")
    return path


def load_openai_clip(model_id: str = "ViT-L-14", weights: str | os.PathLike | None = None,
                     device: str = "cpu") -> OpenClipEmbedder:
    """The pinned OpenAI CLIP (QuickGELU, as trained) from a local file; never downloads."""
    import open_clip

    path = resolve_openai_weights(model_id, weights)
    with _without_log_message("No pretrained weights loaded"):  # open_clip's notice; the weights load below
        model = open_clip.create_model(model_id, pretrained=None, force_quick_gelu=True)
    _load_weights_into(model, path, model_id)
    tokenizer = open_clip.get_tokenizer(model_id)
    return OpenClipEmbedder(model, tokenizer, model_id, "openai", path, file_sha256(path),
                            {"quick_gelu": True}, device=device)


def save_local_clip(model, model_cfg: Mapping[str, Any], folder: str | os.PathLike,
                    provenance: Mapping[str, Any], preprocess_cfg: Mapping[str, Any] | None = None,
                    compact_vocab: Mapping[str, Any] | None = None) -> Path:
    """Write an in-house open_clip model in the folder format `load_local_clip` reads (atomic files).

    `compact_vocab` (fypbench.metrics.clip_vocab.build_vocab) is written as compact_vocab.json; the model's
    text vocab_size must then equal its size. The provenance record gets a `files` manifest (sha256 of each
    file written before it)."""
    from safetensors.torch import save_file

    from fypbench.io import atomic_path, write_json_atomic

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if preprocess_cfg is None:
        preprocess_cfg = getattr(model.visual, "preprocess_cfg", None)
        if preprocess_cfg is None:
            raise ValueError("save_local_clip: the model carries no preprocess_cfg; pass one")
    preprocess = dict(preprocess_cfg)
    preprocess = {k: (list(v) if isinstance(v, tuple) else v) for k, v in preprocess.items()}
    if compact_vocab is not None and int(model_cfg["text_cfg"]["vocab_size"]) != int(compact_vocab["vocab_size"]):
        raise ValueError(f"save_local_clip: text vocab_size {model_cfg['text_cfg']['vocab_size']} differs from the "
                         f"compact vocabulary's {compact_vocab['vocab_size']}")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(folder / LOCAL_WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp))
    write_json_atomic(folder / LOCAL_CONFIG_FILE, {"model_cfg": dict(model_cfg), "preprocess_cfg": preprocess})
    written = [LOCAL_WEIGHTS_FILE, LOCAL_CONFIG_FILE]
    if compact_vocab is not None:
        write_json_atomic(folder / VOCAB_FILE, dict(compact_vocab))
        written.append(VOCAB_FILE)
    else:
        (folder / VOCAB_FILE).unlink(missing_ok=True)
    files = {name: {"sha256": file_sha256(folder / name), "bytes": (folder / name).stat().st_size}
             for name in written}
    write_json_atomic(folder / LOCAL_PROVENANCE_FILE, {**dict(provenance), "files": files})
    # safetensors recreates its file (0600) and staging folders come from mkdtemp (0700): readable like any file
    umask = os.umask(0)
    os.umask(umask)
    for name in (*written, LOCAL_PROVENANCE_FILE):
        os.chmod(folder / name, 0o666 & ~umask)
    os.chmod(folder, 0o777 & ~umask)
    return folder


def load_local_clip(folder: str | os.PathLike | None = None, device: str = "cpu") -> OpenClipEmbedder:
    """An in-house open_clip model from a folder (default: the mini world's shipped evaluator CLIP)."""
    import open_clip

    folder = Path(folder) if folder is not None else MINI_CLIP_DIR
    config_path, weights_path = folder / LOCAL_CONFIG_FILE, folder / LOCAL_WEIGHTS_FILE
    for required in (config_path, weights_path):
        if not required.is_file():
            raise UserError(f"{required} not found: the in-house CLIP folder needs {LOCAL_CONFIG_FILE} and "
                            f"{LOCAL_WEIGHTS_FILE}; train it with `fypbench train evaluator-clip --world mini` "
                            "or pass --clip-weights FOLDER")
    try:
        provenance = json.loads((folder / LOCAL_PROVENANCE_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{folder / LOCAL_PROVENANCE_FILE} not found: an in-house CLIP folder records how its "
                        "weights were made") from None
    except json.JSONDecodeError as error:
        raise UserError(f"{folder / LOCAL_PROVENANCE_FILE}: invalid JSON ({error})") from None
    try:
        model = open_clip.create_model(f"local-dir:{folder}")
    except (ValueError, RuntimeError, KeyError, TypeError) as error:
        detail = " ".join(str(error).split()) or type(error).__name__
        raise UserError(f"{folder}: not a loadable open_clip folder ({detail[:300]})") from None
    extra: dict[str, Any] = {}
    if (folder / VOCAB_FILE).is_file():
        from fypbench.metrics.clip_vocab import CompactTokenizer

        tokenizer = CompactTokenizer.from_file(folder / VOCAB_FILE, int(model.context_length))
        vocab_size = int(model.token_embedding.num_embeddings)
        if vocab_size != tokenizer.vocab_size:
            raise UserError(f"{folder / VOCAB_FILE}: {tokenizer.vocab_size} tokens but the model's text tower has "
                            f"{vocab_size}")
        extra["tokenizer"] = {"kind": "compact remap of open_clip SimpleTokenizer BPE ids",
                              "vocab_file": VOCAB_FILE, "vocab_sha256": file_sha256(folder / VOCAB_FILE),
                              "vocab_size": tokenizer.vocab_size}
    else:
        tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
    model_id = str(provenance.get("model_id", folder.name))
    # the weights hash pins the model; of the provenance, only what identifies it enters the metric config
    identity = {k: provenance[k] for k in ("model_id", "recipe", "seed", "data") if k in provenance}
    return OpenClipEmbedder(model, tokenizer, model_id, "local", weights_path, file_sha256(weights_path),
                            {"provenance": identity, **extra}, device=device)


def load_clip_for_world(world: str, weights: str | os.PathLike | None = None,
                        device: str = "cpu") -> OpenClipEmbedder:
    """sd: ViT-L-14 openai from a user file; mini: the in-house CLIP folder (default: shipped weights)."""
    if world == "sd":
        return load_openai_clip("ViT-L-14", weights, device=device)
    if world == "mini":
        return load_local_clip(weights, device=device)
    raise UserError(f"unknown world {world!r} for the CLIP metrics (known: mini, sd)")


# ---- pure definitions ----------------------------------------------------------------------------------

def clip_score_from_cosines(cosines: Sequence[float] | np.ndarray) -> float:
    """metrics.md §1: 100 * mean over frames of max(cos, 0) (clamp per frame)."""
    cosines = np.asarray(cosines, dtype=np.float64)
    if cosines.ndim != 1 or cosines.size == 0:
        raise ValueError(f"expected a non-empty 1-D array of per-frame cosines, got shape {cosines.shape}")
    return float(SCALE * np.maximum(cosines, 0.0).mean())


def clip_score_clamp_mean(cosines: Sequence[float] | np.ndarray) -> float:
    """torchmetrics' convention (clamp the mean); recorded for comparison only, not `clip_score`."""
    cosines = np.asarray(cosines, dtype=np.float64)
    return float(SCALE * max(cosines.mean(), 0.0))


def frame_consistency(embeddings: np.ndarray, pairs: str = "consecutive") -> float:
    """100 * mean cosine between frame embeddings (consecutive pairs or all pairs i < j); NaN if F < 2."""
    embeddings = np.asarray(embeddings, dtype=np.float64)
    if embeddings.ndim != 2:
        raise ValueError(f"expected (F, D) embeddings, got shape {embeddings.shape}")
    if embeddings.shape[0] < 2:
        return float("nan")
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    if pairs == "consecutive":
        cosines = (unit[:-1] * unit[1:]).sum(axis=1)
    elif pairs == "allpairs":
        upper = np.triu_indices(unit.shape[0], k=1)
        cosines = (unit @ unit.T)[upper]
    else:
        raise ValueError(f"unknown pairing {pairs!r} (consecutive, allpairs)")
    return float(SCALE * cosines.mean())


# ---- shared steps --------------------------------------------------------------------------------------

class ClipImageStep(FeatureStep):
    """Per-frame image embeddings (F, D) of every video, computed once for CS and FC."""

    kind = "clip_image"

    def __init__(self, embedder: ClipEmbedder, batch_size: int = 64):
        self.embedder = embedder
        self.batch_size = batch_size

    def config(self) -> dict[str, Any]:
        return {"backbone": self.embedder.config()}

    def run(self, items: Sequence[VideoItem]) -> list[np.ndarray]:
        outputs: list[np.ndarray] = []
        pending: list[np.ndarray] = []
        pending_frames = 0

        def flush() -> None:
            nonlocal pending_frames
            if not pending:
                return
            embedded = self.embedder.embed_images(np.concatenate(pending, axis=0))
            start = 0
            for frames in pending:
                outputs.append(np.asarray(embedded[start:start + len(frames)], dtype=np.float32))
                start += len(frames)
            pending.clear()
            pending_frames = 0

        for item in items:
            pending.append(item.frames)
            pending_frames += len(item.frames)
            if pending_frames >= self.batch_size:
                flush()
        flush()
        return outputs


class ClipTextStep(FeatureStep):
    """The prompt embedding of every video (each distinct prompt embedded once) and its truncation flag."""

    kind = "clip_text"

    def __init__(self, embedder: ClipEmbedder):
        self.embedder = embedder

    def config(self) -> dict[str, Any]:
        return {"backbone": self.embedder.config()}

    def run(self, items: Sequence[VideoItem]) -> list[tuple[np.ndarray, bool]]:
        prompts = sorted({item.sample.prompt for item in items})
        if not prompts:
            return []
        embeddings, truncated = self.embedder.embed_texts(prompts)
        by_prompt = {p: (np.asarray(e, dtype=np.float32), bool(t)) for p, e, t in zip(prompts, embeddings, truncated)}
        return [by_prompt[item.sample.prompt] for item in items]


# ---- metrics -------------------------------------------------------------------------------------------

class ClipScore(Metric):
    name = "clip_score"
    version = "1"

    def __init__(self, embedder: ClipEmbedder):
        self.image_step = ClipImageStep(embedder)
        self.text_step = ClipTextStep(embedder)

    def config(self) -> dict[str, Any]:
        return {"backbone": self.image_step.config()["backbone"], "clamp": "per_frame", "scale": SCALE,
                "aggregation": "mean over frames, then mean over videos"}

    def steps(self) -> Sequence[FeatureStep]:
        return (self.image_step, self.text_step)

    def score(self, item: VideoItem, features: Mapping[str, Any]) -> MetricResult:
        images = np.asarray(features[self.image_step.key], dtype=np.float64)
        text, truncated = features[self.text_step.key]
        cosines = images @ np.asarray(text, dtype=np.float64)
        return MetricResult(clip_score_from_cosines(cosines),
                            {"cosines": [round(float(c), 6) for c in cosines], "prompt_truncated": truncated})


class ClipScoreB32(ClipScore):
    """The same definition on ViT-B-32 `openai`, for comparison with papers that use B/32."""

    name = "clip_score_b32"


class FrameConsistency(Metric):
    name = "fc_clip_consecutive"
    version = "1"
    pairs: ClassVar[str] = "consecutive"

    def __init__(self, embedder: ClipEmbedder):
        self.image_step = ClipImageStep(embedder)

    def config(self) -> dict[str, Any]:
        return {"backbone": self.image_step.config()["backbone"], "pairs": self.pairs, "clamp": "none",
                "scale": SCALE, "single_frame": "NaN with nan_reason"}

    def steps(self) -> Sequence[FeatureStep]:
        return (self.image_step,)

    def score(self, item: VideoItem, features: Mapping[str, Any]) -> MetricResult:
        embeddings = features[self.image_step.key]
        if len(embeddings) < 2:
            return nan_result(f"{len(embeddings)}-frame video: frame consistency needs at least 2 frames",
                              num_frames=len(embeddings))
        return MetricResult(frame_consistency(embeddings, self.pairs), {"num_frames": len(embeddings)})


class FrameConsistencyAllPairs(FrameConsistency):
    name = "fc_clip_allpairs"
    pairs = "allpairs"
