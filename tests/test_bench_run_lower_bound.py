"""The FLOP counting behind benchmarks/bench_run_lower_bound.py (its bound is only as good as the count)."""

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from tests.benchmark_scripts import load_benchmark


def test_cpu_attention_is_counted_forward_and_backward():
    load_benchmark("bench_run_lower_bound").register_cpu_attention_flops()
    batch, heads, length, dim = 2, 4, 64, 32
    q = torch.randn(batch, heads, length, dim, requires_grad=True)
    with FlopCounterMode(display=False) as counter:
        out = F.scaled_dot_product_attention(q, q, q)
    forward = 2 * (2 * batch * heads * length * length * dim)  # QK^T and PV
    assert counter.get_total_flops() == forward
    with FlopCounterMode(display=False) as counter:
        out.sum().backward()
    # torch's formula for the CUDA kernels: 5 products (the scores recomputed, then dV, dP, dQ, dK)
    assert counter.get_total_flops() == forward // 2 * 5


def test_samples_picked_share_one_source():
    from fypbench.protocol import load_protocol
    from fypbench.runner import source_key

    samples = load_benchmark("bench_run_lower_bound").pick_samples(load_protocol("fyp-1024").samples, 3)
    assert len(samples) == 3 and len({source_key(s) for s in samples}) == 1
