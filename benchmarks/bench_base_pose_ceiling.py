"""How well can the frozen mini base render a pose it is handed? The ceiling of every pose module built on it.

    OMP_NUM_THREADS=1 python benchmarks/bench_base_pose_ceiling.py --run-dir runs/pose-ceiling --limit 64 \
        [--subset dev128|none] [--strengths 0 0.2 0.4 0.6 0.8] [--truth-only] [--out FILE.md] [--sheet FILE.png]

Follow-Your-Pose, ControlNet and T2I-Adapter all steer one frozen text-to-image base, and in the mini world all of
them stop far below the ground truth's pose accuracy. This probe asks what the base returns when the pose is not a
hint but a given: each ground-truth frame is encoded by the VAE, noised to the timestep a DDIM schedule of
`strength` x 25 steps starts from (diffusers' image-to-image convention, with the sample's own initial noise), and
denoised by the base with its prompt (CFG 5, no pose module). Strength 0 is the VAE round trip; at strength s the
base redraws everything the noise at that level erased. The rows are scored like any method (the runner and the
scoring stage: PCK@0.1h, PA, detection rate, CLIP score) next to `reference` (the renders), `base-no-pose`
(strength 1: no pose at all) and the shipped `followpose-stage1` and `followpose` with pose guidance (pose in the
text half of CFG), paired over the same samples and noise.

If the base loses the pose once the noise covers the figure's limbs, even though the figure's place, size and
posture are still in the latents, no module that only adds features to this frozen base can be expected to do
better than the row at that strength.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

METRICS = ("pck_0.1h", "pa", "pose_detection_rate", "pose_mean_oks", "clip_score")
BASELINE = "base-no-pose"
STRENGTHS = (0.0, 0.2, 0.4, 0.6, 0.8)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True, help="run directory (resumable: finished videos stay)")
    parser.add_argument("--subset", default="dev128", help="fyp-1024 subset (default dev128; 'none': all 1,024)")
    parser.add_argument("--limit", type=int, default=64, help="the first N samples of the subset (0: all)")
    parser.add_argument("--strengths", type=float, nargs="+", default=list(STRENGTHS),
                        help="fractions of the 25-step schedule the base redraws (0 = VAE round trip)")
    parser.add_argument("--truth-only", action="store_true",
                        help="only the renders and the truth rows, paired against `reference` (no pose method runs)")
    parser.add_argument("--out", type=Path, default=None, help="also write the Markdown table here")
    parser.add_argument("--sheet", type=Path, default=None,
                        help="also write a contact sheet of the first two samples (every row) here (PNG)")
    args = parser.parse_args(argv)
    bad = [s for s in args.strengths if not 0.0 <= s < 1.0]
    if bad:
        parser.error(f"--strengths must lie in [0, 1) (1 is base-no-pose, always included); got {bad}")
    if args.limit < 0:
        parser.error("--limit must be >= 0")
    return args


def truth_denoiser(world, strength: float):
    """`base-no-pose` started from the ground truth's latents noised to `strength` of the schedule."""
    import numpy as np
    import torch

    from fypbench.generator import Needs, check_video
    from fypbench.models.followpose.generator import BaseNoPoseGenerator
    from fypbench.models.followpose.pipeline import _denoise, decode_latents, encode_prompts
    from fypbench.seeding import initial_noise

    class BaseFromTruth(BaseNoPoseGenerator):
        needs = Needs(source_video=True)

        def config(self):
            return {**super().config(), "start": "ground truth, VAE-encoded (posterior mean)",
                    "strength": self.strength}

        @torch.no_grad()
        def generate(self, samples):
            self.check_inputs(samples)
            c, unet3d = self.components, self.model.unet
            scheduler = c.scheduler
            scheduler.set_timesteps(self.num_inference_steps)
            redrawn = int(round(self.num_inference_steps * self.strength))
            timesteps = scheduler.timesteps[len(scheduler.timesteps) - redrawn:] if redrawn else []
            videos = []
            for sample in samples:
                frames = self.world.render_reference(sample, size=self.size).frames
                pixels = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1.0
                latents = c.vae.encode(pixels).latent_dist.mean * c.vae.config.scaling_factor
                latents = latents.permute(1, 0, 2, 3).unsqueeze(0).contiguous()  # (1, C, F, h, w)
                if redrawn:
                    noise = initial_noise(sample.seed, tuple(latents.shape[1:])).unsqueeze(0)
                    latents = scheduler.add_noise(latents, noise, timesteps[:1])
                text = encode_prompts(c.text_encoder, c.tokenizer, [self.negative_prompt, sample.prompt],
                                      latents.device, latents.dtype)
                for timestep in timesteps:
                    model_input = scheduler.scale_model_input(torch.cat([latents, latents]), timestep)
                    uncond, cond = _denoise(unet3d, model_input, timestep, text, None, per_frame=True).chunk(2)
                    noise_pred = uncond + self.guidance_scale * (cond - uncond)
                    latents = scheduler.step(noise_pred, timestep, latents, eta=0.0).prev_sample
                video = decode_latents(c.vae, latents)[0]
                videos.append(check_video(np.ascontiguousarray(video), frames.shape[0], (self.size, self.size)))
            return videos

    generator = BaseFromTruth.from_world(world)
    generator.world, generator.strength = world, float(strength)
    return generator


def markdown(record: dict, args, seconds: float, baseline: str, samples: str) -> str:
    table, paired = record["table"], record["paired"]["comparisons"]
    lines = [f"Command: `python benchmarks/bench_base_pose_ceiling.py {' '.join(sys.argv[1:])}` ({seconds:.0f} s)  ",
             f"First {samples} samples; 25 DDIM steps, CFG 5; paired 95 % bootstrap CIs over samples "
             f"against `{baseline}`.", "",
             "| row | " + " | ".join(METRICS) + " | " + " | ".join(f"d {m} [95% CI]" for m in METRICS[:2]) + " |",
             "|---" * (1 + len(METRICS) + 2) + "|"]
    for method, row in table.items():
        values = [f"{row[m]['value']:.3f}" for m in METRICS]
        deltas = ["—"] * 2 if method == baseline else [
            f"{paired[method][m]['difference']:+.3f} [{paired[method][m]['ci_low']:+.3f}, "
            f"{paired[method][m]['ci_high']:+.3f}]" for m in METRICS[:2]]
        lines.append(f"| {method} | " + " | ".join(values) + " | " + " | ".join(deltas) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from fypbench.errors import UserError
    from fypbench.io import write_text_atomic
    from fypbench.protocol import load_protocol, select_samples
    from fypbench.registry import METHODS, WORLDS
    from fypbench.results import build_results
    from fypbench.runner import generate_and_score

    start = time.perf_counter()
    world = WORLDS.load("mini")()
    protocol = load_protocol("fyp-1024")
    try:
        samples, subset = select_samples(protocol, None if args.subset == "none" else args.subset,
                                         args.limit or None)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    pose_guidance = {"unconditional_pose": False}
    generators = {"reference": METHODS.load("reference").from_world(world)}
    if not args.truth_only:
        generators.update({
            BASELINE: METHODS.load(BASELINE).from_world(world),
            "followpose-stage1-pg": METHODS.load("followpose-stage1").from_world(world, **pose_guidance),
            "followpose-pg": METHODS.load("followpose").from_world(world, **pose_guidance),
        })
    for strength in sorted(args.strengths):
        generators[f"truth-redrawn-{strength:g}"] = truth_denoiser(world, strength)
    generate_and_score(args.run_dir, generators, samples, world="mini", protocol=protocol, subset=subset,
                       limit=args.limit or None)
    baseline = "reference" if args.truth_only else BASELINE
    record = build_results(args.run_dir, baseline=baseline)
    text = markdown(record, args, time.perf_counter() - start, baseline, f"{len(samples)} {subset or 'fyp-1024'}")
    print(text)
    if args.out:
        write_text_atomic(args.out, text)
    if args.sheet:
        from fypbench.leaderboard import contact_sheet
        from fypbench.media import write_png

        write_png(args.sheet, contact_sheet(record, args.run_dir, samples=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
