"""Video building blocks for inflating a diffusers 2D UNet (shared by Follow-Your-Pose and Tune-A-Video).

    OMP_NUM_THREADS=1 python -m pytest tests/models/followpose/test_layers.py -q

Frames are folded into the batch everywhere (a (b, c, f, h, w) video runs as (b*f, c, h, w) images), as in
the official code; the few modules that mix frames read the frame count from a shared `VideoContext`:

- `SparseCausalAttnProcessor` (every `attn1`): frame i's queries attend to the tokens of frames 0 and i-1
  (frame 0 to [0, 0], which equals attending to frame 0 once), through SDPA.
- `apply_temporal_modules` (after each transformer block's feed-forward): temporal self-attention over frames
  (`norm_temp` -> `attn_temp` -> residual) and then the `conv_temporal` bottleneck (identity at init).
- `FramePooledGroupNorm` (ResNet norm1/norm2 and the UNet's conv_norm_out): GroupNorm statistics pooled over
  (C/G, F, H, W) of each video, as the official code applies nn.GroupNorm to 5-D tensors.

Spec: /work/shared/reference/followpose.md §2 and §5.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class VideoContext:
    """Frame count of the video currently running through an inflated UNet.

    The 3D forward sets it before calling the 2D UNet and leaves it set afterwards, so that gradient
    checkpointing can recompute a checkpointed block during backward. A context that was never set raises.
    """

    def __init__(self) -> None:
        self.num_frames: int | None = None
        # False runs the inflated UNet without attn_temp/conv_temporal (e.g. stage-1 training on images,
        # where the model is SD + pose encoder and the temporal modules do not exist yet).
        self.temporal_enabled: bool = True

    def set(self, num_frames: int) -> None:
        if int(num_frames) < 1:
            raise ValueError(f"a video needs at least one frame, got {num_frames}")
        self.num_frames = int(num_frames)

    def require_num_frames(self, batch: int) -> int:
        """The frame count, checked against a folded batch of `batch` images."""
        if self.num_frames is None:
            raise RuntimeError("an inflated video module ran outside a video forward (VideoContext not set); "
                               "call the 3D model, not its inner 2D UNet")
        if batch % self.num_frames:
            raise ValueError(f"folded batch {batch} is not a multiple of the frame count {self.num_frames}")
        return self.num_frames


# ------------------------------------------------------------------------------------- sparse-causal attention
def sparse_causal_frames(num_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For each frame i, the frames its keys come from: (first = 0, previous = max(i - 1, 0))."""
    first = torch.zeros(num_frames, dtype=torch.long)
    previous = (torch.arange(num_frames) - 1).clamp(min=0)
    return first, previous


def gather_sparse_causal(tokens: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(b*f, n, d) per-frame tokens -> (b*f, 2n, d): frame 0's tokens then frame i-1's, for every frame i."""
    first, previous = sparse_causal_frames(num_frames)
    video = tokens.unflatten(0, (-1, num_frames))  # (b, f, n, d)
    first, previous = first.to(tokens.device), previous.to(tokens.device)
    return torch.cat([video[:, first], video[:, previous]], dim=2).flatten(0, 1)


def check_plain_attention(attn: nn.Module, where: str) -> None:
    """The sparse-causal processor handles SD's plain attention only: refuse features it would ignore."""
    unsupported = {
        "spatial_norm": getattr(attn, "spatial_norm", None) is not None,
        "group_norm": getattr(attn, "group_norm", None) is not None,
        "norm_q/norm_k": getattr(attn, "norm_q", None) is not None or getattr(attn, "norm_k", None) is not None,
        "residual_connection": bool(getattr(attn, "residual_connection", False)),
        "cross-attention": bool(getattr(attn, "is_cross_attention", False)),
        "added_kv_proj_dim": getattr(attn, "added_kv_proj_dim", None) is not None,
    }
    found = [name for name, present in unsupported.items() if present]
    if found:
        raise ValueError(f"{where}: sparse-causal attention does not support {', '.join(found)}")


class SparseCausalAttnProcessor:
    """diffusers attention processor for a self-attention (`attn1`) over frames folded into the batch.

    Query: the tokens of frame i. Keys/values: the tokens of frame 0 concatenated (token axis) with those of
    frame i-1, projected by the layer's own to_k/to_v (Tune-A-Video's "SparseCausalAttention"). Heads, scale,
    to_out and dropout are the layer's, so the weights of a 2D self-attention load unchanged.
    """

    def __init__(self, context: VideoContext) -> None:
        self.context = context

    def __call__(self, attn: nn.Module, hidden_states: torch.Tensor,
                 encoder_hidden_states: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, temb: torch.Tensor | None = None) -> torch.Tensor:
        if encoder_hidden_states is not None:
            raise ValueError("sparse-causal attention is a self-attention: encoder_hidden_states must be None")
        if attention_mask is not None:
            raise ValueError("sparse-causal attention takes no attention mask (the official model uses none)")
        if hidden_states.ndim != 3:
            raise ValueError(f"sparse-causal attention expects (batch*frames, tokens, channels), "
                             f"got {tuple(hidden_states.shape)}")
        num_frames = self.context.require_num_frames(hidden_states.shape[0])
        return sparse_causal_attention(attn, hidden_states, num_frames)


def sparse_causal_attention(attn: nn.Module, hidden_states: torch.Tensor, num_frames: int) -> torch.Tensor:
    """The computation of `SparseCausalAttnProcessor` on (b*f, n, c) tokens with an explicit frame count."""
    batch = hidden_states.shape[0]
    query = attn.to_q(hidden_states)
    key = gather_sparse_causal(attn.to_k(hidden_states), num_frames)
    value = gather_sparse_causal(attn.to_v(hidden_states), num_frames)
    heads = attn.heads
    head_dim = query.shape[-1] // heads
    query, key, value = (x.view(batch, -1, heads, head_dim).transpose(1, 2) for x in (query, key, value))
    out = F.scaled_dot_product_attention(query, key, value, scale=attn.scale)
    out = out.transpose(1, 2).reshape(batch, -1, heads * head_dim).to(query.dtype)
    out = attn.to_out[0](out)
    out = attn.to_out[1](out)
    return out / attn.rescale_output_factor


# ------------------------------------------------------------------------------------------ temporal modules
class TemporalConvBottleneck(nn.Module):
    """`conv_temporal`: Conv1d C->rank then rank->C over frames (k=3, pad 1, no bias), plus identity.

    `down` is normal(std=1/rank), `up` zero, so the module is the identity at init (the official
    "LoRALinearLayer" with stride 1). The convolutions run in the weights' dtype; the sum in the input's.
    """

    def __init__(self, channels: int, rank: int) -> None:
        super().__init__()
        if not 1 <= rank <= channels:
            raise ValueError(f"conv_temporal rank must be in [1, {channels}] for width {channels}, got {rank}")
        self.down = nn.Conv1d(channels, rank, kernel_size=3, padding=1, bias=False)
        self.up = nn.Conv1d(rank, channels, kernel_size=3, padding=1, bias=False)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        nn.init.normal_(self.down.weight, std=1.0 / self.down.out_channels, generator=generator)
        nn.init.zeros_(self.up.weight)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """(batch, channels, frames) -> same shape."""
        weight_dtype = self.down.weight.dtype
        update = self.up(self.down(hidden_states.to(weight_dtype)))
        return update.to(hidden_states.dtype) + hidden_states


def apply_temporal_modules(block: nn.Module, hidden_states: torch.Tensor, num_frames: int) -> torch.Tensor:
    """After a transformer block's FFN, on (b*f, tokens, c): temporal attention, then conv_temporal.

    Each runs only if the block has it (`attn_temp` with `norm_temp`; `conv_temporal`). Temporal attention
    sees each spatial token's sequence of frames (b*tokens, f, c): full bidirectional, no positional encoding.
    """
    batch_frames, tokens, channels = hidden_states.shape
    batch = batch_frames // num_frames
    if getattr(block, "attn_temp", None) is not None:
        over_time = hidden_states.view(batch, num_frames, tokens, channels).transpose(1, 2)
        over_time = over_time.reshape(batch * tokens, num_frames, channels)
        over_time = block.attn_temp(block.norm_temp(over_time)) + over_time
        hidden_states = over_time.view(batch, tokens, num_frames, channels).transpose(1, 2)
        hidden_states = hidden_states.reshape(batch_frames, tokens, channels)
    if getattr(block, "conv_temporal", None) is not None:
        over_time = hidden_states.view(batch, num_frames, tokens, channels).permute(0, 2, 3, 1)
        over_time = block.conv_temporal(over_time.reshape(batch * tokens, channels, num_frames))
        hidden_states = over_time.view(batch, tokens, channels, num_frames).permute(0, 3, 1, 2)
        hidden_states = hidden_states.reshape(batch_frames, tokens, channels)
    return hidden_states


class TemporalModulesHook:
    """Forward hook on a diffusers BasicTransformerBlock: runs `apply_temporal_modules` on its output.

    A hook (rather than a forked block) keeps diffusers' own block forward for SA -> CA -> FFN and the
    official parameter names (`...transformer_blocks.0.attn_temp.to_q.weight`) on the block itself.
    """

    def __init__(self, context: VideoContext) -> None:
        self.context = context

    def __call__(self, block: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        if not self.context.temporal_enabled:
            return output
        num_frames = self.context.require_num_frames(output.shape[0])
        return apply_temporal_modules(block, output, num_frames)


# ------------------------------------------------------------------------------------------ pooled GroupNorm
class FramePooledGroupNorm(nn.GroupNorm):
    """GroupNorm over frames folded into the batch, with statistics pooled across each video's frames.

    Shares the weight and bias Parameters of the GroupNorm it replaces, so parameter names are unchanged.
    With one frame (or identical frames) it equals the per-image GroupNorm.
    """

    def __init__(self, source: nn.GroupNorm, context: VideoContext) -> None:
        super().__init__(source.num_groups, source.num_channels, eps=source.eps, affine=source.affine,
                         device="meta")
        if source.affine:
            self.weight = source.weight
            self.bias = source.bias
        self.context = context

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        num_frames = self.context.require_num_frames(hidden_states.shape[0])
        if num_frames == 1:
            return super().forward(hidden_states)
        video = hidden_states.unflatten(0, (-1, num_frames)).transpose(1, 2)  # (b, c, f, ...)
        video = F.group_norm(video, self.num_groups, self.weight, self.bias, self.eps)
        return video.transpose(1, 2).reshape(hidden_states.shape)


# -------------------------------------------------------------------------------------------- seeded init
def reset_parameters_seeded(module: nn.Module, generator: torch.Generator) -> None:
    """PyTorch's default initialisation of every Linear/Conv/norm in `module`, from a local generator.

    Same distributions as `reset_parameters()` (kaiming-uniform weights with a=sqrt(5), uniform biases in
    +-1/sqrt(fan_in); norms to ones/zeros), but independent of torch's global RNG state.
    """
    for sub in module.modules():
        if isinstance(sub, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_uniform_(sub.weight, a=math.sqrt(5), generator=generator)
            if sub.bias is not None:
                fan_in, _ = nn.init._calculate_fan_in_and_fan_out(sub.weight)
                bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                nn.init.uniform_(sub.bias, -bound, bound, generator=generator)
        elif isinstance(sub, (nn.LayerNorm, nn.GroupNorm)):
            sub.reset_parameters()


def build_seeded(factory, device: torch.device, dtype: torch.dtype, generator: torch.Generator | None,
                 init=None) -> nn.Module:
    """Build `factory()` without touching the global RNG: on meta, then materialised and initialised from
    `generator` on the CPU (`init(module, generator)`, default `reset_parameters_seeded`), then moved.

    On the meta device nothing is materialised (shapes only)."""
    with torch.device("meta"):
        module = factory()
    if torch.device(device).type == "meta":
        return module.to(dtype=dtype)
    module = module.to_empty(device="cpu").float()
    if generator is None:
        raise ValueError("a generator is required to initialise real (non-meta) parameters")
    (init or reset_parameters_seeded)(module, generator)
    return module.to(device=device, dtype=dtype)
