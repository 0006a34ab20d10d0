"""Inflate a diffusers UNet2DConditionModel into a video UNet, in place (Tune-A-Video / Follow-Your-Pose).

    python -c "from fypbench.models.followpose.inflate import describe_inflation; print(describe_inflation())"

What changes (followpose.md §2, §5; baselines.md §3):
- every transformer block's `attn1` gets the sparse-causal processor (frame i attends to frames 0 and i-1);
- every transformer block gets `attn_temp` + `norm_temp` (temporal self-attention over frames) and, for
  Follow-Your-Pose, `conv_temporal` (rank-r temporal conv bottleneck, identity at init), applied after its FFN;
- ResNet `norm1`/`norm2` and the UNet's `conv_norm_out` become GroupNorms pooled across frames.
Parameter names of the 2D UNet are unchanged; the new ones have the official names. Frames stay folded
into the batch elsewhere, so the caller (a 3D forward) sets the shared `VideoContext` before each call.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.attention_processor import Attention
from diffusers.models.resnet import ResnetBlock2D
from torch import nn

from fypbench.models.followpose.layers import (
    FramePooledGroupNorm,
    SparseCausalAttnProcessor,
    TemporalConvBottleneck,
    TemporalModulesHook,
    VideoContext,
    build_seeded,
    check_plain_attention,
    reset_parameters_seeded,
)
from fypbench.seeding import derive_seed

SD_CONV_TEMPORAL_RANK = 160


@dataclass(frozen=True)
class InflationOptions:
    """Which video modules an inflated UNet gets. Defaults = the official Follow-Your-Pose model.

    Tune-A-Video: `conv_temporal=False, zero_init_temporal_out=True` (TAV zero-initialises attn_temp.to_out;
    FYP commented that line out, so its temporal attention is not the identity at stage-2 start).
    """

    sparse_causal_attention: bool = True
    temporal_attention: bool = True
    zero_init_temporal_out: bool = False
    conv_temporal: bool = True
    conv_temporal_rank: int = SD_CONV_TEMPORAL_RANK
    pooled_group_norm: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


def transformer_blocks(unet: nn.Module) -> list[tuple[str, BasicTransformerBlock]]:
    return [(name, m) for name, m in unet.named_modules() if isinstance(m, BasicTransformerBlock)]


def is_inflated(unet: nn.Module) -> bool:
    return any(isinstance(m, FramePooledGroupNorm) for m in unet.modules()) or any(
        isinstance(block.attn1.processor, SparseCausalAttnProcessor) or hasattr(block, "attn_temp")
        or hasattr(block, "conv_temporal") for _, block in transformer_blocks(unet))


def _reference_parameter(module: nn.Module) -> torch.Tensor:
    return next(module.parameters())


def inflate_unet2d(unet: nn.Module, context: VideoContext, options: InflationOptions = InflationOptions(),
                   init_seed: int = 0) -> nn.Module:
    """Inflate `unet` (a diffusers UNet2DConditionModel) in place and return it.

    New parameters are initialised from `derive_seed("followpose-inflate", init_seed, block name)` through a
    local generator (never the global RNG); on the meta device nothing is materialised.
    """
    if is_inflated(unet):
        raise ValueError("this UNet is already inflated")
    blocks = transformer_blocks(unet)
    if not blocks:
        raise ValueError("the UNet has no transformer blocks to inflate")
    if options.conv_temporal:
        narrowest = min(block.norm1.normalized_shape[0] for _, block in blocks)
        if not 1 <= options.conv_temporal_rank <= narrowest:
            raise ValueError(f"conv_temporal_rank {options.conv_temporal_rank} must be in [1, {narrowest}] "
                             f"(the narrowest transformer width)")

    for name, block in blocks:
        if block.norm_type != "layer_norm" or block.only_cross_attention or block.pos_embed is not None:
            raise ValueError(f"{name}: only SD-style transformer blocks (layer_norm, self-attention attn1, no "
                             "positional embedding) can be inflated")
        reference = _reference_parameter(block)
        device, dtype = reference.device, reference.dtype
        generator = None
        if device.type != "meta":
            generator = torch.Generator(device="cpu").manual_seed(derive_seed("followpose-inflate", init_seed, name))
        if options.sparse_causal_attention:
            check_plain_attention(block.attn1, f"{name}.attn1")
            block.attn1.set_processor(SparseCausalAttnProcessor(context))
        if options.temporal_attention:
            dim = block.norm1.normalized_shape[0]
            attn1 = block.attn1
            heads, head_dim = attn1.heads, attn1.inner_dim // attn1.heads
            bias = attn1.to_q.bias is not None

            def make_attention(dim=dim, heads=heads, head_dim=head_dim, bias=bias):
                return Attention(query_dim=dim, heads=heads, dim_head=head_dim, bias=bias, out_bias=True)

            def init_attention(module, gen, zero_out=options.zero_init_temporal_out):
                reset_parameters_seeded(module, gen)
                if zero_out:
                    nn.init.zeros_(module.to_out[0].weight)
                    nn.init.zeros_(module.to_out[0].bias)

            block.attn_temp = build_seeded(make_attention, device, dtype, generator, init_attention)
            block.norm_temp = build_seeded(lambda dim=dim: nn.LayerNorm(dim), device, dtype, generator)
        if options.conv_temporal:
            dim = block.norm1.normalized_shape[0]
            rank = options.conv_temporal_rank
            block.conv_temporal = build_seeded(lambda dim=dim, rank=rank: TemporalConvBottleneck(dim, rank),
                                               device, dtype, generator,
                                               lambda module, gen: module.reset_parameters(gen))
        if options.temporal_attention or options.conv_temporal:
            block.register_forward_hook(TemporalModulesHook(context))

    if options.pooled_group_norm:
        for name, module in unet.named_modules():
            if isinstance(module, ResnetBlock2D):
                for attr in ("norm1", "norm2"):
                    norm = getattr(module, attr)
                    if type(norm) is not nn.GroupNorm:
                        raise ValueError(f"{name}.{attr}: expected nn.GroupNorm, got {type(norm).__name__}")
                    setattr(module, attr, FramePooledGroupNorm(norm, context))
        if getattr(unet, "conv_norm_out", None) is not None:
            unet.conv_norm_out = FramePooledGroupNorm(unet.conv_norm_out, context)
    return unet


def describe_inflation(options: InflationOptions = InflationOptions()) -> str:
    """Parameter counts of the SD 1.x UNet inflated with `options` (built on the meta device)."""
    from diffusers import UNet2DConditionModel

    from fypbench.models.followpose.unet3d import SD_UNET_CONFIG

    with torch.device("meta"):
        unet = UNet2DConditionModel(**SD_UNET_CONFIG)
    base = sum(p.numel() for p in unet.parameters())
    inflate_unet2d(unet, VideoContext(), options)
    total = sum(p.numel() for p in unet.parameters())
    return f"SD 1.x UNet {base:,} params -> inflated {total:,} (+{total - base:,}) with {options}"
