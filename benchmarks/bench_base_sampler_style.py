"""Does the mini base's sampler change how often the prompted style is read? (issue 3's weakest attribute)

    OMP_NUM_THREADS=2 python benchmarks/bench_base_sampler_style.py --start 256 --configs 25,5,0 50,5,0 25,5,1

Each config is STEPS,GUIDANCE,ETA for the shipped base's DDIM sampler (`fypbench.base.sample.sample_images`) on
--prompts held-out prompts from `fypbench.base.evaluate.eval_items(prompts, start)` (--start 256: prompts other than
the 256 the quality report uses, so a choice made here is not tuned on the report's own prompts). Prints the oracle's
accuracy per field and the style read per prompted style, as `python -m fypbench.base.evaluate` computes them.
"""

from __future__ import annotations

import argparse
import sys
import time


def parse_config(text: str) -> tuple[int, float, float]:
    try:
        steps, guidance, eta = text.split(",")
        return int(steps), float(guidance), float(eta)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected STEPS,GUIDANCE,ETA, e.g. 25,5,0") from None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--start", type=int, default=256)
    parser.add_argument("--configs", type=parse_config, nargs="+", default=[(25, 5.0, 0.0)])
    args = parser.parse_args(argv)

    from fypbench.base import evaluate
    from fypbench.base.components import load_base, mini_weights_dir
    from fypbench.base.sample import sample_images

    components = load_base(mini_weights_dir(), device="cpu")
    items = evaluate.eval_items(args.prompts, start=args.start)
    prompts = [item.prompt for item in items]
    styles = evaluate.styles_of(prompts)
    templates = evaluate.TemplateKeypoints(components.resolution)
    print(f"{len(prompts)} prompts from eval_items(start={args.start}), shipped base")
    for steps, guidance, eta in args.configs:
        began = time.perf_counter()
        images = sample_images(components, prompts, [item.noise_seed for item in items], steps=steps,
                               guidance=guidance, eta=eta)
        hits = evaluate.oracle_hits(images, templates(images), prompts)
        summary = evaluate.summarise(hits)
        by_style = ", ".join(f"{style} {value:.2f}"
                             for style, value in evaluate.style_read_by_style(hits, styles).items())
        print(f"steps {steps} guidance {guidance:g} eta {eta:g}: "
              + " ".join(f"{k} {v:.3f}" for k, v in summary.items() if k != "n")
              + f" | style by prompted style: {by_style} ({time.perf_counter() - began:.0f} s)", flush=True)
        del images
    return 0


if __name__ == "__main__":
    sys.exit(main())
