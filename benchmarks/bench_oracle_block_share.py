"""How flat is each style inside the 4x4-px minecraft blocks? The figures behind the attribute oracle's minecraft check.

    OMP_NUM_THREADS=2 python benchmarks/bench_oracle_block_share.py [--items 512] [--prompts 256]

Prints, per prompted style, the range and median of `oracle.within_block_variance_share` (the share of a frame's
variance inside the aligned 4x4 blocks) on held-out ground-truth renders (fypbench.base.evaluate's items
1000..1000+items-1), on the shipped VAE's reconstructions of them, and on the shipped base's generations for the
evaluation prompts (items 0..prompts-1, g = 5, 25 DDIM steps, as `python -m fypbench.base.evaluate`), where it
also splits the non-minecraft generations by whether the oracle without the check reads them as minecraft. The
check (MINECRAFT_MAX_WITHIN_BLOCK_SHARE) must lie above every minecraft frame.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "2")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402


def summary(values: np.ndarray) -> str:
    if len(values) == 0:
        return "-"
    return f"{values.min():.3f} / {np.median(values):.3f} / {values.max():.3f} (n={len(values)})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=512)
    parser.add_argument("--prompts", type=int, default=256)
    args = parser.parse_args(argv)
    from fypbench.base import evaluate as ev
    from fypbench.base.components import load_base, mini_weights_dir
    from fypbench.base.sample import sample_images
    from fypbench.world.mini import oracle
    from fypbench.world.mini.scene import MINECRAFT_BLOCKS, block_size

    began = time.perf_counter()
    components = load_base(mini_weights_dir(), device="cpu")
    block = block_size(components.resolution, components.resolution, MINECRAFT_BLOCKS)
    items = ev.eval_items(args.items, start=1000)
    renders, _ = ev.render_items(items, components.resolution)
    reconstructions = ev.reconstruct(components.vae, renders)
    styles = ev.styles_of([item.prompt for item in items])

    def shares(frames: np.ndarray) -> np.ndarray:
        return np.array([oracle.within_block_variance_share(frame, block) for frame in frames])

    print(f"within-block variance share, {block}x{block}-px blocks: min / median / max; check at "
          f"{oracle.MINECRAFT_MAX_WITHIN_BLOCK_SHARE}")
    print(f"{'prompted style':<22} {'renders':>34} {'VAE reconstructions':>34}")
    render_shares, reconstruction_shares = shares(renders), shares(reconstructions)
    for style in sorted(set(styles)):
        mask = styles == style
        print(f"{style:<22} {summary(render_shares[mask]):>34} {summary(reconstruction_shares[mask]):>34}")

    evaluation = ev.eval_items(args.prompts)
    prompts = [item.prompt for item in evaluation]
    generated = sample_images(components, prompts, [item.noise_seed for item in evaluation], steps=25,
                              guidance=5.0)
    keypoints = ev.TemplateKeypoints(components.resolution)(generated)
    prompted = ev.styles_of(prompts)
    check = oracle.MINECRAFT_MAX_WITHIN_BLOCK_SHARE
    try:
        oracle.MINECRAFT_MAX_WITHIN_BLOCK_SHARE = np.inf
        read_without_check = np.array([oracle.measure_attributes(f, k).style for f, k in zip(generated, keypoints)])
    finally:
        oracle.MINECRAFT_MAX_WITHIN_BLOCK_SHARE = check
    generated_shares = shares(generated)
    minecraft = prompted == "minecraft"
    misread = ~minecraft & (read_without_check == "minecraft")
    print(f"base generations (g = 5, {len(prompts)} evaluation prompts):")
    for label, mask in (("prompted minecraft", minecraft), ("other styles, read as minecraft w/o check", misread),
                        ("other styles, not read as minecraft w/o check", ~minecraft & ~misread)):
        print(f"  {label:<48} {summary(generated_shares[mask])}")
    print(f"({time.perf_counter() - began:.0f} s)")


if __name__ == "__main__":
    main()
