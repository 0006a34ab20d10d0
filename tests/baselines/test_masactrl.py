"""MasaCtrl on the debug base with tiny random pose controls (16 px, 3-4 frames, 3 DDIM steps)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor, AttnProcessor2_0

from fypbench.baselines.controlnet import ControlNetGenerator
from fypbench.baselines.masactrl import (
    MasaCtrlGenerator,
    MutualSelfAttentionControl,
    mutual_self_attention,
    self_attention_layers,
)
from fypbench.baselines.t2i_adapter import T2IAdapterGenerator
from fypbench.errors import UserError
from fypbench.models.followpose.layers import SparseCausalAttnProcessor, VideoContext
from tests.baselines import tiny

STEPS = tiny.STEPS


@pytest.fixture(scope="module")
def base():
    return tiny.components()


@pytest.fixture(scope="module")
def adapter(base):
    return tiny.random_adapter(base, seed=1)


def masactrl(base, adapter, **options) -> MasaCtrlGenerator:
    options = {"preset": "debug", "num_inference_steps": STEPS, **options}
    return MasaCtrlGenerator(components=base, control_module=adapter, **options)


def plain_adapter(base, adapter) -> T2IAdapterGenerator:
    return T2IAdapterGenerator.from_components(base, adapter, num_inference_steps=STEPS, guidance_scale=5.0,
                                               noise_mode="shared", preset="mini")


def assert_plain_processors(unet) -> None:
    assert {type(p) for p in unet.attn_processors.values()} == {AttnProcessor2_0}


def test_start_step_at_or_after_the_last_step_equals_the_plain_t2i_adapter(base, adapter):
    sample = tiny.sample(0, frames=4)
    expected = plain_adapter(base, adapter).generate([sample])[0]
    for start_step in (STEPS, STEPS + 5):
        generator = masactrl(base, adapter, start_step=start_step, start_layer=0)
        np.testing.assert_array_equal(generator.generate([sample])[0], expected)
    assert_plain_processors(base.unet)  # processors are restored after each pass


def test_control_keeps_the_source_and_changes_the_targets(base, adapter):
    sample = tiny.sample(1, frames=4)
    plain = plain_adapter(base, adapter).generate([sample])[0]
    generator = masactrl(base, adapter, start_step=0, start_layer=0)
    video = generator.generate([sample])[0]
    np.testing.assert_array_equal(video[0], plain[0])  # the source reads only itself
    assert np.abs(video[1:].astype(int) - plain[1:].astype(int)).max() > 0
    assert generator.stats == {"passes": 1, "controlled_calls": STEPS * 16}
    default = masactrl(base, adapter)  # debug preset: from step 1 of 3, layers 10-15
    default.generate([sample])
    assert default.stats["controlled_calls"] == (STEPS - 1) * 6


@torch.no_grad()
def test_one_unet_call_targets_read_the_source(base):
    """At the UNet level, with members far apart: the source's prediction is unchanged, the targets' move."""
    latents = torch.randn(2 * 3, 4, 8, 8, generator=torch.Generator().manual_seed(0))  # 2 halves x (src, t1, t2)
    text = torch.randn(1, 77, 16, generator=torch.Generator().manual_seed(1)).expand(6, -1, -1)
    plain = base.unet(latents, 500, text).sample
    controller = MutualSelfAttentionControl(base.unet, start_step=0, start_layer=0, num_steps=1, group_size=3)
    with controller.installed():
        controller.begin_step(0)
        controlled = base.unet(latents, 500, text).sample
        controller.finish()
    for source in (0, 3):
        torch.testing.assert_close(controlled[source], plain[source], atol=1e-5, rtol=1e-5)
    for target in (1, 2, 4, 5):
        assert (controlled[target] - plain[target]).abs().mean() > 1e-2 * plain[target].abs().mean()


def test_processor_equals_direct_attention_to_the_source():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        attn = Attention(query_dim=8, heads=2, dim_head=4, bias=False, out_bias=True).eval()
    tokens = torch.randn(2 * 3, 5, 8, generator=torch.Generator().manual_seed(1))  # 2 CFG halves x (src, t1, t2)
    out = mutual_self_attention(attn, tokens, group_size=3)
    plain = AttnProcessor2_0()
    for half in range(2):
        source = tokens[3 * half]
        for member in range(3):
            query = tokens[3 * half + member]
            q, k, v = attn.to_q(query), attn.to_k(source), attn.to_v(source)
            heads = [torch.softmax(q[:, h * 4:(h + 1) * 4] @ k[:, h * 4:(h + 1) * 4].T / 2.0, -1)
                     @ v[:, h * 4:(h + 1) * 4] for h in range(2)]
            expected = attn.to_out[0](torch.cat(heads, -1))
            torch.testing.assert_close(out[3 * half + member], expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out[3 * half], plain(attn, tokens[3 * half:3 * half + 1])[0], atol=1e-5,
                                   rtol=1e-5)


def test_layers_are_numbered_in_forward_order(base):
    names = [name for name, _ in self_attention_layers(base.unet)]
    assert len(names) == 16
    assert names[:6] == [f"down_blocks.{b}.attentions.{a}.transformer_blocks.0.attn1" for b in range(3)
                         for a in range(2)]
    assert names[6] == "mid_block.attentions.0.transformer_blocks.0.attn1"
    assert {n.split(".attentions")[0] for n in names[10:]} == {"up_blocks.2", "up_blocks.3"}


def test_foreign_processors_and_layouts_raise_instead_of_silently_doing_nothing(base, adapter):
    unet = base.unet
    name, attn = self_attention_layers(unet)[5]
    attn.set_processor(SparseCausalAttnProcessor(VideoContext()))
    try:
        with pytest.raises(TypeError, match=f"{name}.*SparseCausalAttnProcessor"):
            masactrl(base, adapter)
    finally:
        attn.set_processor(AttnProcessor2_0())
    with pytest.raises(ValueError, match="expects 12 self-attention layers, this UNet has 16"):
        MutualSelfAttentionControl(unet, start_step=0, start_layer=0, num_steps=3, group_size=2, expected_layers=12)
    with pytest.raises(ValueError, match="start_layer 16 leaves no layer"):
        MutualSelfAttentionControl(unet, start_step=0, start_layer=16, num_steps=3, group_size=2)
    with pytest.raises(UserError, match="unknown masactrl control"):
        masactrl(base, adapter, control="controlnett")


@torch.no_grad()
def test_every_step_must_run_every_layer_once(base):
    unet = base.unet
    controller = MutualSelfAttentionControl(unet, start_step=0, start_layer=0, num_steps=3, group_size=2)
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    text = torch.randn(2, 77, 16, generator=torch.Generator().manual_seed(1))
    with controller.installed():
        controller.begin_step(0)
        unet(latents, 500, text)
        controller.begin_step(1)  # step 0 was complete
        assert controller.active_calls == 16
        # what enable_xformers_memory_efficient_attention does to custom processors: silently replaced
        self_attention_layers(unet)[12][1].set_processor(AttnProcessor())
        unet(latents, 400, text)
        with pytest.raises(RuntimeError, match=r"15 calls\), expected each of the 16 layers"):
            controller.begin_step(2)
    assert_plain_processors(unet)  # the originals are back, the replaced one included
    with pytest.raises(RuntimeError, match="outside its denoising pass"):
        controller.record(0)


def test_state_is_fresh_per_generation_and_batches_are_independent(base, adapter):
    samples = [tiny.sample(2, frames=4), tiny.sample(3, frames=4), tiny.sample(4, frames=3)]
    generator = masactrl(base, adapter, start_step=0, start_layer=8, frames_per_batch=16)
    together = generator.generate(samples)
    again = generator.generate(samples)  # the official step counter would carry over here
    for a, b in zip(together, again):
        np.testing.assert_array_equal(a, b)
    alone = masactrl(base, adapter, start_step=0, start_layer=8, frames_per_batch=1)
    for sample, video in zip(samples, together):
        assert np.abs(alone.generate([sample])[0].astype(int) - video.astype(int)).max() <= 1
    chunked = masactrl(base, adapter, start_step=0, start_layer=8, frames_per_chunk=2)
    for sample, video in zip(samples, together):
        assert np.abs(chunked.generate([sample])[0].astype(int) - video.astype(int)).max() <= 1


def test_controlnet_is_selectable_and_left_untouched(base):
    controlnet = tiny.random_controlnet(base, seed=2)
    before = {name: type(p) for name, p in controlnet.attn_processors.items()}
    sample = tiny.sample(5, frames=3)
    plain = ControlNetGenerator.from_components(base, controlnet, num_inference_steps=STEPS, guidance_scale=5.0,
                                                noise_mode="shared", preset="mini").generate([sample])[0]
    off = MasaCtrlGenerator(components=base, control="controlnet", control_module=controlnet, preset="debug",
                            start_step=STEPS)
    np.testing.assert_array_equal(off.generate([sample])[0], plain)
    on = MasaCtrlGenerator(components=base, control="controlnet", control_module=controlnet, preset="debug",
                           start_step=0, start_layer=0)
    video = on.generate([sample])[0]
    np.testing.assert_array_equal(video[0], plain[0])
    assert np.abs(video[1:].astype(int) - plain[1:].astype(int)).max() > 0
    assert on.stats["controlled_calls"] == STEPS * 16  # the UNet's 16 layers only, never the ControlNet's
    assert {name: type(p) for name, p in controlnet.attn_processors.items()} == before
    assert on.config()["control"] == "controlnet" and on.config()["conditioning"] == "openpose"


def test_missing_world_weights_name_the_train_command(tmp_path):
    from fypbench.generator import MethodUnavailable
    from fypbench.world.mini.world import MiniWorld

    world = MiniWorld(weights_dir=tmp_path)
    with pytest.raises(MethodUnavailable, match="fypbench train t2i-adapter --world mini"):
        MasaCtrlGenerator.from_world(world)
    with pytest.raises(MethodUnavailable, match="fypbench train controlnet --world mini"):
        MasaCtrlGenerator.from_world(world, control="controlnet")


def test_sd_unet_layout_is_accepted_with_the_official_layers():
    from fypbench.base.components import build_components

    unet = build_components("sd", device="meta").unet
    controller = MutualSelfAttentionControl(unet, start_step=4, start_layer=10, num_steps=50, group_size=8)
    controlled = [name for name, _ in controller.layers[controller.start_layer:]]
    assert len(controller.layers) == 16
    assert [name.split(".attentions")[0] for name in controlled] == ["up_blocks.2"] * 3 + ["up_blocks.3"] * 3
