"""Train the mini world's evaluator CLIP (the backbone of clip_score / fc_clip_* in the mini world).

    fypbench train evaluator-clip --world mini      (the lead's CLI; the same as the line below)
    python -m fypbench.training.evaluator_clip --preset mini [--output-dir DIR] [--no-resume] [--set train.steps=100]

An open_clip CLIP with a custom model config (configs/evaluator_clip_<preset>.yaml, `model`), trained with
open_clip's contrastive ClipLoss on rendered mini-world images and their prompts (the captioned-image stream
named in `data.target`). The last `data.holdout` cached items are never trained on: the recipe reports
image->text and text->image top-1 retrieval on them (a hit is the right caption text, so duplicate captions
count as hits).

Independence from the generators' text encoders (they are trained by other recipes): another architecture
and tokenizer path (open_clip's text transformer, not transformers' CLIPTextModel), its own initialisation
seed (`seeding` namespace "evaluator-clip", config seed 1) and its own data order (global batches are seeded
permutations of (seed, epoch), so seed 1 differs from the base recipes' seed 0); it never sees a generator's
weights. It does share the rendered image cache (the same renders, read in another order).

Exports an open_clip folder (open_clip_config.json, open_clip_model.safetensors, fypbench_clip.json with the
training record and held-out retrieval) that fypbench.metrics.clip_metrics.load_local_clip reads; the mini
preset exports into the package (fypbench/world/mini/data/evaluator_clip), the default folder of the mini world.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fypbench.training.common import (
    TrainingLoop,
    cached_dataset,
    default_output_dir,
    load_config,
    make_accelerator,
    make_logger,
    parse_overrides,
    resolve_path,
    run_record,
)

RECIPE = "evaluator_clip"
MODEL_ID = "fypbench-mini-evaluator-clip"


def model_config(config: dict[str, Any]) -> dict[str, Any]:
    model = dict(config["model"])
    return {"embed_dim": int(model["embed_dim"]), "vision_cfg": dict(model["vision_cfg"]),
            "text_cfg": dict(model["text_cfg"]), "quick_gelu": bool(model.get("quick_gelu", False))}


def build_model(config: dict[str, Any]):
    from open_clip.model import CLIP

    from fypbench.base.components import seeded_init

    with seeded_init("evaluator-clip", int(config["seed"])):
        return CLIP(**model_config(config))


class PixelNormaliser:
    """uint8 (N, H, W, 3) -> normalised float (N, 3, H, W), the same arithmetic as open_clip's eval transform
    (ToTensor's x/255, then the model's mean/std) for images already at the model's input size."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)

    def __call__(self, images: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div(255.0)
        return (x - self.mean) / self.std


@torch.no_grad()
def retrieval_accuracy(model, images: np.ndarray, captions: list[str], tokenizer, normalise: PixelNormaliser,
                       batch: int = 256) -> dict[str, float]:
    """Top-1 retrieval among the given items: image->text (is the best text the right caption?) and
    text->image (is the best image one whose caption is this text?)."""
    model.eval()
    image_features = torch.cat([model.encode_image(normalise(images[lo:lo + batch]), normalize=True)
                                for lo in range(0, len(images), batch)])
    distinct = sorted(set(captions))
    text_features = model.encode_text(tokenizer(distinct), normalize=True)
    similarity = image_features @ text_features.T  # (images, distinct captions)
    truth = torch.tensor([distinct.index(c) for c in captions])
    image_to_text = float((similarity.argmax(dim=1) == truth).float().mean())
    best_image = similarity.argmax(dim=0)  # per distinct caption
    text_to_image = float((truth[best_image] == torch.arange(len(distinct))).float().mean())
    return {"image_to_text_top1": image_to_text, "text_to_image_top1": text_to_image,
            "n_items": len(captions), "n_distinct_captions": len(distinct),
            "chance_image_to_text": 1.0 / len(distinct)}


def run(preset: str = "mini", output_dir: Path | None = None, resume: bool = True,
        overrides: dict[str, Any] | None = None) -> Path:
    """Train (or resume) the evaluator CLIP of `preset`; returns the exported open_clip folder."""
    import open_clip
    from open_clip.transform import PreprocessCfg

    from fypbench.base.components import save_folder_atomic
    from fypbench.io import write_json_atomic
    from fypbench.metrics.clip_metrics import save_local_clip

    config = load_config(RECIPE, preset, overrides)
    output_dir = Path(output_dir) if output_dir is not None else default_output_dir(RECIPE, preset)
    accelerator = make_accelerator(config["train"]["mixed_precision"])
    log = make_logger(output_dir, accelerator.is_main_process)
    data = config["data"]
    with accelerator.main_process_first():
        images, captions = cached_dataset(data["target"], data["kwargs"], int(data["count"]),
                                          resolve_path(data["cache_dir"]), int(data["workers"]), log)
    holdout = int(data["holdout"])
    train_size = len(images) - holdout
    if train_size < int(config["train"]["batch_size"]):
        from fypbench.errors import UserError

        raise UserError(f"data.count {len(images)} minus data.holdout {holdout} leaves fewer items than one batch")
    model = build_model(config)
    image_size = int(config["model"]["vision_cfg"]["image_size"])
    if images.shape[1:3] != (image_size, image_size):
        from fypbench.errors import UserError

        raise UserError(f"model.vision_cfg.image_size {image_size} differs from the rendered images "
                        f"{images.shape[1]}x{images.shape[2]} (data.kwargs.size)")
    preprocess = asdict(PreprocessCfg(size=image_size))  # open_clip's defaults: OpenAI mean/std, bicubic
    normalise = PixelNormaliser(tuple(preprocess["mean"]), tuple(preprocess["std"]))
    context_length = int(config["model"]["text_cfg"]["context_length"])
    tokenizer = open_clip.SimpleTokenizer(context_length=context_length)
    tokens = tokenizer(list(captions))  # every caption once, (N, context_length)
    loss = open_clip.ClipLoss(local_loss=False, gather_with_grad=accelerator.num_processes > 1,
                              rank=accelerator.process_index, world_size=accelerator.num_processes)
    device = accelerator.device

    def loss_fn(step: int, batch, modules) -> torch.Tensor:
        pixels = normalise(images[batch.indices]).to(device)
        image_features, text_features, logit_scale = modules["clip"](pixels, tokens[batch.indices].to(device))[:3]
        return loss(image_features.float(), text_features.float(), logit_scale.float())

    loop = TrainingLoop(accelerator=accelerator, output_dir=output_dir, config=config, modules={"clip": model},
                        parameters=list(model.parameters()), dataset_size=train_size, loss_fn=loss_fn, log=log)
    result = loop.run(resume=resume)
    loop.export_parameters()
    export = resolve_path(config["export_dir"]) if config.get("export_dir") else output_dir / "evaluator_clip"
    if accelerator.is_main_process:
        model = accelerator.unwrap_model(model).float().cpu().eval()
        held_out = retrieval_accuracy(model, images[train_size:], list(captions[train_size:]), tokenizer, normalise)
        provenance = {"model_id": MODEL_ID, "recipe": RECIPE, "seed": int(config["seed"]),
                      "data": {"target": data["target"], "kwargs": data["kwargs"], "train_items": train_size,
                               "holdout_items": holdout},
                      "independence": "open_clip text transformer + tokenizer; init namespace 'evaluator-clip'; "
                                      f"data order seeded by {int(config['seed'])}; no generator weights",
                      "loss": "open_clip.ClipLoss", "held_out_retrieval": held_out,
                      **run_record(config, overrides, result)}
        save_folder_atomic(lambda folder: save_local_clip(model, model_config(config), folder, provenance,
                                                          preprocess_cfg=preprocess),
                           export)
        write_json_atomic(output_dir / "evaluator_clip_record.json", provenance)
        log(f"exported {export}; held-out retrieval image->text {held_out['image_to_text_top1']:.3f}, "
            f"text->image {held_out['text_to_image_top1']:.3f} (chance {held_out['chance_image_to_text']:.3f})")
    accelerator.wait_for_everyone()
    return export


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="mini")
    parser.add_argument("--output-dir", type=Path, default=None)
    parser.add_argument("--no-resume", action="store_true")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    print(run(args.preset, args.output_dir, not args.no_resume, parse_overrides(args.set)))


if __name__ == "__main__":
    main()
