"""Train the mini world's evaluator CLIP (the backbone of clip_score / fc_clip_* in the mini world).

    fypbench train evaluator-clip --world mini      (the lead's CLI; the same as the line below)
    OMP_NUM_THREADS=1 python -m fypbench.training.evaluator_clip --preset mini [--output-dir DIR] [--no-resume] [--set train.steps=100]

An open_clip CLIP with a custom model config (configs/evaluator_clip_<preset>.yaml, `model`), trained with
open_clip's contrastive ClipLoss on rendered mini-world images and their prompts (the captioned-image stream
named in `data.target`, under the stream name in `data.kwargs.name`). The last `data.holdout` cached items are
never trained on; after training the recipe reports on them:
- image->text and text->image top-1 retrieval (a hit is the right caption text, so duplicate captions count);
- per-attribute discrimination: for each held-out image and each attribute (character, colour, scene, style,
  verb), the share of single-attribute changes of its caption (every alternative value the grammar allows,
  `fypbench.metrics.validity.attribute_alternatives`) that score a lower cosine than the true caption.

Text side: a compact vocabulary (fypbench.metrics.clip_vocab): CLIP BPE ids remapped to the ~90 ids the
grammar uses, so the text tower's token embedding has ~90 rows instead of 49,408; `model.text_cfg.vocab_size`
is set from it. Image side: the model's own open_clip preprocessing (64-px renders, no resize; x/255, OpenAI
mean/std), reproduced here on whole batches by `PixelNormaliser`.

Learning rate: linear warm-up over `train.warmup_steps`, then (`train.lr_schedule: cosine`) a cosine decay to
`train.lr_final_fraction` x lr at `train.steps`.

Hard negatives (`loss.hard_negatives`, a list of attributes; [] = open_clip's ClipLoss unchanged): in a random
batch the appearance alone tells a caption from the other 127, so nothing makes the model read an attribute
that rarely differs between batch items (the verb: held-out verb pair win rate 0.69 against >= 0.97 for the
others). With `[verb]`, every batch item whose caption has that attribute also brings one single-attribute
change of its caption (`fypbench.metrics.validity.attribute_alternatives`, one drawn per item from
numpy_rng("evaluator-clip-negatives", seed, step, dataset index)) as an extra text column of the image->text
softmax (NegCLIP, Yuksekgonul et al., ICLR 2023); the text->image side is unchanged. Across processes the
positives are gathered as in ClipLoss and each process adds its own items' negatives. Measured (mini preset,
4,000 steps, `--set 'loss.hard_negatives=[...]'`; held-out verb pair win rate / `validate_metrics` upright AUCs of
CS verb, CS colour, FC shuffled, unpaired and paired): none (shipped) 0.69 / 0.56, 0.98, 0.65 (paired 0.64, 0.98,
0.93); [verb] 0.84 / 0.70, 0.91, 0.68 (0.80, 0.97, 0.94), 0.21 s/step; all five attributes 0.86 / 0.68, 0.90, 0.68
(0.78, 0.96, 0.96), 0.45 s/step; with [verb] and a wider image tower (`model.vision_cfg.width`, 2026-11-27): 16
0.855 / 0.72, 0.92, 0.69 (0.79, 0.99, 0.94), 0.47 s/step, 6.2 MB; 24 0.855 / 0.73, 0.92, 0.69 (0.81, 0.98, 0.96),
0.71 s/step, 13.2 MB; at both widths CS character also drops from 0.95 to 0.94. The verb becomes readable, but it also
spreads the true prompts' scores (a verb seen poorly in the frames lowers them), so across videos a colour change
is separated less, and width does not change that: not adopted; every preset keeps [].

Independence from the generators' text encoders: another architecture and tokenizer path (open_clip's text
transformer on the compact vocabulary, not transformers' CLIPTextModel), its own initialisation seed (seeding
namespace "evaluator-clip", config seed 1), its own data (the stream name "evaluator-clip": its items are other
draws - motions, prompts, backgrounds - than the generators' "captioned-images" stream, rendered into its own
cache) and its own data order (seeded permutations of (seed 1, epoch)). It never sees a generator's weights.

Exports an open_clip folder (open_clip_config.json, open_clip_model.safetensors, compact_vocab.json and
fypbench_clip.json: the manifest with file sha256s, config, training command and the held-out figures) that
fypbench.metrics.clip_metrics.load_local_clip reads; the mini preset exports into the package
(fypbench/world/mini/data/evaluator_clip), the default CLIP of the mini world. Training resumes from
<output-dir>/checkpoint.pt.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fypbench.training.common import (
    TrainingLoop,
    cached_dataset,
    make_accelerator,
    make_logger,
    recipe_config,
    resolve_path,
    run_record,
)

RECIPE = "evaluator_clip"
MODEL_ID = "fypbench-mini-evaluator-clip"
LR_SCHEDULES = ("constant", "cosine")


def model_config(config: dict[str, Any], vocab_size: int) -> dict[str, Any]:
    """open_clip's CLIP(**model_config) arguments; the text vocabulary size comes from the compact vocabulary."""
    model = dict(config["model"])
    text_cfg = dict(model["text_cfg"])
    if "vocab_size" in text_cfg:
        from fypbench.errors import UserError

        raise UserError("model.text_cfg.vocab_size is set from the compact vocabulary; remove it from the config")
    return {"embed_dim": int(model["embed_dim"]), "vision_cfg": dict(model["vision_cfg"]),
            "text_cfg": {**text_cfg, "vocab_size": int(vocab_size)}, "quick_gelu": bool(model.get("quick_gelu", False))}


def build_model(config: dict[str, Any], vocab_size: int):
    from open_clip.model import CLIP

    from fypbench.base.components import seeded_init

    with seeded_init("evaluator-clip", int(config["seed"])):
        return CLIP(**model_config(config, vocab_size))


class PixelNormaliser:
    """uint8 (N, H, W, 3) -> normalised float (N, 3, H, W), the same arithmetic as open_clip's eval transform
    (ToTensor's x/255, then the model's mean/std) for images already at the model's input size."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    def __call__(self, images: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.array(images, dtype=np.uint8)).permute(0, 3, 1, 2).float().div(255.0)  # a copy
        return (x - self.mean) / self.std


def lr_factor(schedule: str, warmup_steps: int, total_steps: int, final_fraction: float):
    """step -> learning-rate factor: linear warm-up, then constant or a cosine decay to final_fraction."""
    if schedule not in LR_SCHEDULES:
        from fypbench.errors import UserError

        raise UserError(f"train.lr_schedule {schedule!r}: expected one of {', '.join(LR_SCHEDULES)}")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return final_fraction + (1.0 - final_fraction) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


@torch.no_grad()
def encode_images(model, images: np.ndarray, normalise: PixelNormaliser, batch: int = 256) -> torch.Tensor:
    return torch.cat([model.encode_image(normalise(images[lo:lo + batch]), normalize=True)
                      for lo in range(0, len(images), batch)])


@torch.no_grad()
def encode_texts(model, texts: Sequence[str], tokenizer, batch: int = 1024) -> torch.Tensor:
    return torch.cat([model.encode_text(tokenizer(list(texts[lo:lo + batch])), normalize=True)
                      for lo in range(0, len(texts), batch)])


@torch.no_grad()
def retrieval_accuracy(model, images: np.ndarray, captions: list[str], tokenizer, normalise: PixelNormaliser,
                       batch: int = 256) -> dict[str, float]:
    """Top-1 retrieval among the given items: image->text (is the best text the right caption?) and
    text->image (is the best image one whose caption is this text?)."""
    model.eval()
    image_features = encode_images(model, images, normalise, batch)
    distinct = sorted(set(captions))
    text_features = encode_texts(model, distinct, tokenizer)
    similarity = image_features @ text_features.T  # (images, distinct captions)
    index = {caption: k for k, caption in enumerate(distinct)}
    truth = torch.tensor([index[c] for c in captions])
    image_to_text = float((similarity.argmax(dim=1) == truth).float().mean())
    best_image = similarity.argmax(dim=0)  # per distinct caption
    text_to_image = float((truth[best_image] == torch.arange(len(distinct))).float().mean())
    return {"image_to_text_top1": image_to_text, "text_to_image_top1": text_to_image,
            "n_items": len(captions), "n_distinct_captions": len(distinct),
            "chance_image_to_text": 1.0 / len(distinct)}


@torch.no_grad()
def attribute_discrimination(model, images: np.ndarray, captions: Sequence[str], tokenizer,
                             normalise: PixelNormaliser) -> dict[str, dict[str, float]]:
    """Per attribute: the share of (image, single-attribute change of its caption) pairs where the true caption
    has the higher cosine (ties count 1/2), over every alternative value the grammar allows."""
    from fypbench.metrics.validity import ATTRIBUTES, attribute_alternatives

    model.eval()
    image_features = encode_images(model, images, normalise)
    texts: dict[str, int] = {}
    pairs: dict[str, list[tuple[int, int, int]]] = {attribute: [] for attribute in ATTRIBUTES}
    for i, caption in enumerate(captions):
        true_index = texts.setdefault(caption, len(texts))
        for attribute in ATTRIBUTES:
            for changed in attribute_alternatives(caption, attribute):
                pairs[attribute].append((i, true_index, texts.setdefault(changed, len(texts))))
    text_features = encode_texts(model, list(texts), tokenizer)
    out: dict[str, dict[str, float]] = {}
    for attribute, items in pairs.items():
        if not items:
            continue
        index = torch.tensor(items)
        image = image_features[index[:, 0]]
        true_cos = (image * text_features[index[:, 1]]).sum(dim=1)
        changed_cos = (image * text_features[index[:, 2]]).sum(dim=1)
        wins = (true_cos > changed_cos).float() + 0.5 * (true_cos == changed_cos).float()
        per_image = torch.zeros(len(captions)).index_add_(0, index[:, 0], wins)
        counts = torch.zeros(len(captions)).index_add_(0, index[:, 0], torch.ones(len(items)))
        has = counts > 0
        out[attribute] = {"pair_win_rate": float(wins.mean()), "n_pairs": len(items),
                          "n_images": int(has.sum()),
                          "all_alternatives_beaten": float((per_image[has] == counts[has]).float().mean())}
    return out


def check_hard_negatives(attributes: Any) -> tuple[str, ...]:
    from fypbench.errors import UserError
    from fypbench.metrics.validity import ATTRIBUTES

    if not isinstance(attributes, (list, tuple)) or any(a not in ATTRIBUTES for a in attributes) \
            or len(set(attributes)) != len(attributes):
        raise UserError(f"loss.hard_negatives {attributes!r}: expected a list of distinct attributes from "
                        f"{', '.join(ATTRIBUTES)} ([] for none)")
    return tuple(attributes)


class HardNegatives:
    """Per batch: one single-attribute change of each item's caption, for each configured attribute the caption
    has; drawn from (seed, step, dataset index), so independent of the process count and batch position."""

    def __init__(self, captions: Sequence[str], attributes: Sequence[str], seed: int):
        self.captions = captions
        self.attributes = check_hard_negatives(list(attributes))
        self.seed = int(seed)
        self._alternatives: dict[tuple[str, str], list[str]] = {}

    def alternatives(self, caption: str, attribute: str) -> list[str]:
        from fypbench.metrics.validity import attribute_alternatives

        key = (caption, attribute)
        if key not in self._alternatives:
            self._alternatives[key] = attribute_alternatives(caption, attribute)
        return self._alternatives[key]

    def __call__(self, step: int, indices: Sequence[int]) -> list[str]:
        from fypbench.seeding import numpy_rng

        negatives = []
        for index in indices:
            caption = self.captions[int(index)]
            rng = numpy_rng("evaluator-clip-negatives", self.seed, int(step), int(index))
            for attribute in self.attributes:
                pool = self.alternatives(caption, attribute)
                if pool:
                    negatives.append(pool[int(rng.integers(len(pool)))])
        return negatives


def contrastive_loss(image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor,
                     negative_features: torch.Tensor | None = None, rank: int = 0, world_size: int = 1) -> torch.Tensor:
    """CLIP's symmetric InfoNCE over the global batch, with optional extra text negatives on the image->text
    side. Without negatives and on one process this is open_clip's ClipLoss (tested)."""
    import torch.nn.functional as F

    all_images, all_texts = image_features, text_features
    if world_size > 1:
        from open_clip.loss import gather_features

        all_images, all_texts = gather_features(image_features, text_features, local_loss=False,
                                                gather_with_grad=True, rank=rank, world_size=world_size)
    columns = all_texts if negative_features is None else torch.cat([all_texts, negative_features])
    labels = torch.arange(len(image_features), device=image_features.device) + rank * len(image_features)
    image_to_text = F.cross_entropy(logit_scale * image_features @ columns.T, labels)
    text_to_image = F.cross_entropy(logit_scale * text_features @ all_images.T, labels)
    return (image_to_text + text_to_image) / 2


def training_seconds(output_dir: Path) -> float | None:
    """Wall time of every training session in output_dir, from the loop's losses.jsonl (each line holds the
    seconds since its session began, so a session ends where the count drops)."""
    import json

    path = output_dir / "losses.jsonl"
    if not path.is_file():
        return None
    total, previous = 0.0, 0.0
    for line in path.read_text().splitlines():
        seconds = float(json.loads(line)["seconds"])
        if seconds < previous:
            total += previous
        previous = seconds
    return round(total + previous, 1)


def run(preset: str = "mini", output_dir: Path | None = None, resume: bool = True,
        overrides: dict[str, Any] | None = None) -> Path:
    """Train (or resume) the evaluator CLIP of `preset`; returns the exported open_clip folder."""
    import open_clip
    from open_clip.transform import PreprocessCfg

    from fypbench.base.components import save_folder_atomic
    from fypbench.errors import UserError
    from fypbench.io import write_json_atomic
    from fypbench.metrics.clip_metrics import save_local_clip
    from fypbench.metrics.clip_vocab import CompactTokenizer, build_vocab

    config, output_dir = recipe_config(RECIPE, preset, overrides, output_dir, resume)
    negative_attributes = check_hard_negatives(config.get("loss", {}).get("hard_negatives", []))
    accelerator = make_accelerator(config["train"]["mixed_precision"])
    log = make_logger(output_dir, accelerator.is_main_process)
    data = config["data"]
    with accelerator.main_process_first():
        images, captions = cached_dataset(data["target"], data["kwargs"], int(data["count"]),
                                          resolve_path(data["cache_dir"]), int(data["workers"]), log)
    holdout = int(data["holdout"])
    train_size = len(images) - holdout
    if train_size < int(config["train"]["batch_size"]):
        raise UserError(f"data.count {len(images)} minus data.holdout {holdout} leaves fewer items than one batch")
    vocab = build_vocab()
    model = build_model(config, vocab["vocab_size"])
    image_size = int(config["model"]["vision_cfg"]["image_size"])
    if images.shape[1:3] != (image_size, image_size):
        raise UserError(f"model.vision_cfg.image_size {image_size} differs from the rendered images "
                        f"{images.shape[1]}x{images.shape[2]} (data.kwargs.size)")
    preprocess = asdict(PreprocessCfg(size=image_size))  # open_clip's defaults: OpenAI mean/std, bicubic
    normalise = PixelNormaliser(tuple(preprocess["mean"]), tuple(preprocess["std"]))
    context_length = int(config["model"]["text_cfg"]["context_length"])
    tokenizer = CompactTokenizer(vocab, context_length)
    tokens = tokenizer(list(captions))  # every caption once, (N, context_length)
    loss = open_clip.ClipLoss(local_loss=False, gather_with_grad=accelerator.num_processes > 1,
                              rank=accelerator.process_index, world_size=accelerator.num_processes)
    hard_negatives = HardNegatives(captions, negative_attributes, int(config["seed"]))
    device = accelerator.device

    def loss_fn(step: int, batch, modules) -> torch.Tensor:
        pixels = normalise(images[batch.indices]).to(device)
        batch_tokens = tokens[batch.indices]
        if not hard_negatives.attributes:
            image_features, text_features, logit_scale = modules["clip"](pixels, batch_tokens.to(device))[:3]
            return loss(image_features.float(), text_features.float(), logit_scale.float())
        negatives = hard_negatives(step, batch.indices)
        if negatives:  # one forward for positives and negatives (what DDP expects)
            batch_tokens = torch.cat([batch_tokens, tokenizer(negatives)])
        image_features, texts, logit_scale = modules["clip"](pixels, batch_tokens.to(device))[:3]
        text_features, negative_features = texts[:len(pixels)], (texts[len(pixels):] if negatives else None)
        return contrastive_loss(image_features.float(), text_features.float(), logit_scale.float(),
                                None if negative_features is None else negative_features.float(),
                                accelerator.process_index, accelerator.num_processes)

    def lr_factors(train: dict[str, Any]):
        return lr_factor(str(train.get("lr_schedule", "constant")), int(train["warmup_steps"]), int(train["steps"]),
                         float(train.get("lr_final_fraction", 0.0)))

    loop = TrainingLoop(accelerator=accelerator, output_dir=output_dir, config=config, modules={"clip": model},
                        parameters=list(model.parameters()), dataset_size=train_size, loss_fn=loss_fn, log=log,
                        lr_factors=lr_factors)
    result = loop.run(resume=resume)
    loop.export_parameters()
    export = resolve_path(config["export_dir"]) if config.get("export_dir") else output_dir / "evaluator_clip"
    if accelerator.is_main_process:
        model = accelerator.unwrap_model(model).float().cpu().eval()
        held_images, held_captions = images[train_size:], list(captions[train_size:])
        held_out = retrieval_accuracy(model, held_images, held_captions, tokenizer, normalise)
        discrimination = attribute_discrimination(model, held_images, held_captions, tokenizer, normalise)
        provenance = {"model_id": MODEL_ID, "recipe": RECIPE, "seed": int(config["seed"]),
                      "data": {"target": data["target"], "kwargs": data["kwargs"], "train_items": train_size,
                               "holdout_items": holdout},
                      "independence": "open_clip text transformer on a compact BPE vocabulary; init namespace "
                                      f"'evaluator-clip' seed {int(config['seed'])}; own stream name "
                                      f"{data['kwargs'].get('name')!r} (other draws than the generators' "
                                      f"stream); data order seeded by {int(config['seed'])}; no generator weights",
                      "commands": {"cli": f"fypbench train evaluator-clip --world mini --preset {preset}",
                                   "module": f"OMP_NUM_THREADS=1 python -m fypbench.training.evaluator_clip "
                                             f"--preset {preset}"},
                      "training_seconds_all_sessions": training_seconds(output_dir),
                      "loss": ("open_clip.ClipLoss" if not hard_negatives.attributes else
                               "CLIP InfoNCE + hard text negatives (" + ", ".join(hard_negatives.attributes) + ")"),
                      "parameters": sum(p.numel() for p in model.parameters()),
                      "held_out_retrieval": held_out, "held_out_attribute_discrimination": discrimination,
                      **run_record(config, overrides, result)}
        save_folder_atomic(lambda folder: save_local_clip(model, model_config(config, vocab["vocab_size"]), folder,
                                                          provenance, preprocess_cfg=preprocess, compact_vocab=vocab),
                           export)
        write_json_atomic(output_dir / "evaluator_clip_record.json", provenance)
        log(f"exported {export}; held-out retrieval image->text {held_out['image_to_text_top1']:.3f}, "
            f"text->image {held_out['text_to_image_top1']:.3f} (chance {held_out['chance_image_to_text']:.3f}); "
            "attribute discrimination " + ", ".join(f"{a} {d['pair_win_rate']:.3f}" for a, d in discrimination.items()))
    accelerator.wait_for_everyone()
    return export


def main(argv: Sequence[str] | None = None) -> None:
    from fypbench.training.common import recipe_main

    recipe_main(run, __doc__, argv)


if __name__ == "__main__":
    main()
