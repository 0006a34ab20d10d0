"""Video building blocks: sparse-causal attention, temporal modules, pooled GroupNorm, seeded init."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from torch import nn

from fypbench.models.followpose.layers import (
    FramePooledGroupNorm,
    SparseCausalAttnProcessor,
    TemporalConvBottleneck,
    VideoContext,
    apply_temporal_modules,
    build_seeded,
    gather_sparse_causal,
)
from tests.models.followpose.tiny import generator, randn

BATCH, FRAMES, TOKENS, DIM, HEADS = 2, 4, 5, 8, 2


def make_attention(seed: int = 0) -> Attention:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Attention(query_dim=DIM, heads=HEADS, dim_head=DIM // HEADS, bias=False, out_bias=True).eval()


def sparse_causal(attn: Attention, video: torch.Tensor) -> torch.Tensor:
    """video (b, f, n, c) -> (b, f, n, c) through the processor."""
    context = VideoContext()
    context.set(video.shape[1])
    attn.set_processor(SparseCausalAttnProcessor(context))
    return attn(video.flatten(0, 1)).unflatten(0, video.shape[:2])


def reference_sparse_causal(attn: Attention, video: torch.Tensor) -> torch.Tensor:
    """Direct computation, frame by frame and head by head: softmax(q k^T / sqrt(d)) v over frames 0 and i-1."""
    batch, frames, tokens, channels = video.shape
    head_dim = channels // HEADS
    out = torch.empty_like(video)
    for b in range(batch):
        for i in range(frames):
            sources = torch.cat([video[b, 0], video[b, max(i - 1, 0)]])
            query, key, value = attn.to_q(video[b, i]), attn.to_k(sources), attn.to_v(sources)
            heads = []
            for h in range(HEADS):
                cols = slice(h * head_dim, (h + 1) * head_dim)
                weights = torch.softmax(query[:, cols] @ key[:, cols].T / head_dim**0.5, dim=-1)
                heads.append(weights @ value[:, cols])
            out[b, i] = attn.to_out[0](torch.cat(heads, dim=-1))
    return out


@torch.no_grad()
def test_sparse_causal_equals_direct_reference_on_different_frames():
    attn = make_attention()
    video = randn(BATCH, FRAMES, TOKENS, DIM)
    torch.testing.assert_close(sparse_causal(attn, video), reference_sparse_causal(attn, video),
                               atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_frame_i_depends_only_on_frames_0_previous_and_itself():
    attn = make_attention(1)
    video = randn(1, FRAMES, TOKENS, DIM)
    base = sparse_causal(attn, video)
    for changed in range(FRAMES):
        perturbed = video.clone()
        perturbed[:, changed] += randn(1, TOKENS, DIM, seed=("perturb", changed))
        out = sparse_causal(attn, perturbed)
        for i in range(FRAMES):
            differs = not torch.allclose(out[:, i], base[:, i], atol=1e-6)
            assert differs == (changed in {0, i - 1, i}), (changed, i)


@torch.no_grad()
def test_frame_zero_is_plain_self_attention_and_identical_frames_reduce_to_2d():
    attn = make_attention(2)
    video = randn(BATCH, FRAMES, TOKENS, DIM)
    plain = make_attention(2)
    plain.set_processor(AttnProcessor2_0())
    torch.testing.assert_close(sparse_causal(attn, video)[:, 0], plain(video[:, 0]), atol=1e-6, rtol=1e-5)
    same = video[:, :1].expand(-1, FRAMES, -1, -1)
    out = sparse_causal(attn, same)
    for i in range(FRAMES):
        torch.testing.assert_close(out[:, i], plain(video[:, 0]), atol=1e-6, rtol=1e-5)


def test_gather_layout():
    tokens = torch.arange(2 * 3).float().view(2 * 3, 1, 1)  # batch 2, 3 frames, value = folded index
    gathered = gather_sparse_causal(tokens, 3).view(2, 3, 2)
    assert gathered.tolist() == [[[0, 0], [0, 0], [0, 1]], [[3, 3], [3, 3], [3, 4]]]


def test_processor_refuses_what_it_would_ignore():
    attn = make_attention()
    context = VideoContext()
    attn.set_processor(SparseCausalAttnProcessor(context))
    with pytest.raises(RuntimeError, match="VideoContext not set"):
        attn(randn(4, TOKENS, DIM))
    context.set(3)
    with pytest.raises(ValueError, match="multiple of the frame count"):
        attn(randn(4, TOKENS, DIM))
    with pytest.raises(ValueError, match="self-attention"):
        attn(randn(3, TOKENS, DIM), encoder_hidden_states=randn(3, 2, DIM))


@torch.no_grad()
def test_pooled_group_norm_matches_5d_group_norm_and_differs_from_per_frame():
    context = VideoContext()
    source = nn.GroupNorm(4, 8)
    nn.init.normal_(source.weight, generator=generator("gn-w"))
    nn.init.normal_(source.bias, generator=generator("gn-b"))
    pooled = FramePooledGroupNorm(source, context)
    assert pooled.weight is source.weight and pooled.bias is source.bias
    video = randn(2, 8, FRAMES, 6, 6) * torch.linspace(0.5, 3.0, FRAMES).view(1, 1, FRAMES, 1, 1)
    folded = video.transpose(1, 2).flatten(0, 1)
    context.set(FRAMES)
    out = pooled(folded)
    official = F.group_norm(video, 4, source.weight, source.bias, source.eps)  # nn.GroupNorm on (b, c, f, h, w)
    torch.testing.assert_close(out, official.transpose(1, 2).flatten(0, 1), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(out, source(folded), atol=1e-3)

    same = video[:, :, :1].expand(-1, -1, FRAMES, -1, -1).transpose(1, 2).flatten(0, 1)
    torch.testing.assert_close(pooled(same), source(same), atol=1e-5, rtol=1e-5)
    context.set(1)
    torch.testing.assert_close(pooled(folded), source(folded))


@torch.no_grad()
def test_conv_temporal_is_identity_at_init_and_learns_a_temporal_mix():
    conv = build_seeded(lambda: TemporalConvBottleneck(8, 4), torch.device("cpu"), torch.float32,
                        generator("conv"), lambda m, g: m.reset_parameters(g))
    assert conv.down.weight.shape == (4, 8, 3) and conv.up.weight.shape == (8, 4, 3)
    assert conv.down.bias is None and conv.up.bias is None
    assert torch.all(conv.up.weight == 0) and conv.down.weight.std() > 0
    x = randn(6, 8, FRAMES)
    assert torch.equal(conv(x), x)
    conv.up.weight.normal_(generator=generator("up"))
    y = conv(x)
    assert not torch.allclose(y, x)
    x2 = x.clone()
    x2[..., 0] += 1.0  # a change at frame 0 reaches frame 1 (kernel 3), not frame 3
    y2 = conv(x2)
    assert not torch.allclose(y2[..., 1], y[..., 1]) and torch.allclose(y2[..., 3], y[..., 3])
    with pytest.raises(ValueError, match="rank"):
        TemporalConvBottleneck(8, 9)


@torch.no_grad()
def test_temporal_attention_runs_over_each_tokens_frames():
    block = nn.Module()
    block.attn_temp = make_attention(3)
    block.norm_temp = nn.LayerNorm(DIM)
    video = randn(BATCH, FRAMES, TOKENS, DIM)
    out = apply_temporal_modules(block, video.flatten(0, 1), FRAMES).unflatten(0, (BATCH, FRAMES))
    for b in range(BATCH):
        for n in range(TOKENS):
            sequence = video[b, :, n][None]  # (1, f, c)
            expected = block.attn_temp(block.norm_temp(sequence)) + sequence
            torch.testing.assert_close(out[b, :, n], expected[0], atol=1e-5, rtol=1e-5)


def test_seeded_build_ignores_global_rng():
    def build():
        return build_seeded(lambda: nn.Linear(4, 3), torch.device("cpu"), torch.float32, generator("lin"))

    torch.manual_seed(1)
    first = build()
    torch.manual_seed(2)
    second = build()
    assert torch.equal(first.weight, second.weight) and torch.equal(first.bias, second.bias)
    assert build_seeded(lambda: nn.Linear(4, 3), torch.device("meta"), torch.float32, None).weight.is_meta
