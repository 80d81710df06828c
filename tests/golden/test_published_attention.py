"""Flash-attention kernels against their published forward speeds (issue 12, part 2).

Sources (the papers' own benchmark settings: batch x sequence length = 16k tokens, hidden
dimension 2048, so 32, 16 or 8 heads of 64, 128 or 256; FLOPs counted as
``4 seq^2 head_dim heads`` per sequence, halved with the causal mask; the TFLOP/s compared
here are the op's matrix FLOPs, which count the causal triangle exactly, over the predicted
kernel time):

* FlashAttention-3 (Shah, Bikshandi, Zhang, Thakkar, Ramani, Dao 2024, arXiv:2407.08608),
  fig. 5, "Attention forward speed (FP16/BF16) on H100 80GB SXM5", the FlashAttention-3
  bars; abstract: "with FP8 reaching close to 1.2 PFLOPs/s".
* FlashAttention-2 (Dao 2023, arXiv:2307.08691), sec. 4: "FlashAttention-2 reaches up to
  230 TFLOPs/s, 73% of the theoretical maximum TFLOPs/s on A100 GPUs" (A100 80GB SXM4, the
  same grid with head_dim 64 and 128).

The specs' ``attention_efficiency`` is each paper's figure at one shape (head_dim 128, 16k,
no mask); every other point (head_dim 64 and 256, 512 to 8k tokens, the causal mask, fp8)
is the model's: the softmax share per head_dim and dtype, the masked diagonal, the tiles'
prologue and epilogue, and their schedule on the SMs.
"""

from __future__ import annotations

import itertools

import pytest

from simulator import predict_op
from simulator.arch.loader import load_arch
from simulator.mapping.gpu import kernel_time
from workloads.ops import Attention

SEQ = (512, 1024, 2048, 4096, 8192, 16384)
# FlashAttention-3, fig. 5: TFLOP/s by (head_dim, causal) at SEQ. The 512-token bar of
# head_dim 128 without the mask is left out: its FA3 and cuDNN labels (467, 497) are read
# in either order from the figure.
FA3_H100 = {
    (64, False): (333, 392, 460, 476, 496, 497),
    (64, True): (197, 265, 371, 420, 460, 473),
    (128, False): (None, 565, 625, 638, 646, 648),
    (128, True): (292, 423, 521, 579, 602, 616),
    (256, False): (482, 639, 707, 736, 746, 756),
    (256, True): (286, 427, 537, 612, 628, 642),
}


def _tflops(arch: str, head_dim: int, causal: bool, seq: int, dtype: str = "bf16") -> float:
    op = Attention(batch=16384 // seq, heads=2048 // head_dim, head_dim=head_dim, seq=seq,
                   causal=causal, dtype=dtype)
    return op.flops().matrix / kernel_time(predict_op(op, arch)) / 1e12


def _errors() -> list[tuple[int, bool, int, float]]:
    out = []
    for (hd, causal), vals in FA3_H100.items():
        for seq, v in zip(SEQ, vals, strict=True):
            if v is not None:
                out.append((hd, causal, seq, (_tflops("h100-sxm", hd, causal, seq) - v) / v))
    return out


def test_flashattention3_forward_on_h100():
    """35 published points: 6.4% MAPE, bias -0.2%. Worst: the causal mask at 512-1k tokens
    and head_dim 64 (+25%, +26%) and head_dim 256 at 1k (+13%), where FA3's tile shapes
    (which vary with head_dim) and its causal scheduling differ from the model's 128 x 128
    tiles in waves; at 512 tokens with the mask the op also writes its K and V to the cache
    (two tensors more than the benchmark moves): memory-bound, -14% and -15%."""
    errs = _errors()
    assert len(errs) == 35
    mape = 100 * sum(abs(e) for *_, e in errs) / len(errs)
    bias = 100 * sum(e for *_, e in errs) / len(errs)
    assert mape <= 10.0 and -5.0 <= bias <= 5.0, (mape, bias)
    assert all(abs(e) <= 0.30 for *_, e in errs), errs
    long = [(hd, c, s, e) for hd, c, s, e in errs if s >= 2048]
    assert all(abs(e) <= 0.12 for *_, e in long), long


def test_flashattention3_fp8_reaches_close_to_1_2_pflops():
    """The same kernel in fp8 (twice the MMA rate, the same softmax per score): its best
    over head_dim 64-256 at 16k tokens is "close to 1.2 PFLOPs/s" (FA3 abstract; its fp8
    forward figure: 1171 TFLOP/s at head_dim 256); the model gives 1.24."""
    best = max(_tflops("h100-sxm", hd, False, 16384, "fp8") for hd in (64, 128, 256))
    assert best == pytest.approx(1200, rel=0.08)
    # fp8 is faster than bf16 at the same shape, but less than 2x (the softmax does not speed up)
    bf16, fp8 = _tflops("h100-sxm", 128, False, 16384), _tflops("h100-sxm", 128, False,
                                                                  16384, "fp8")
    assert 1.2 * bf16 < fp8 < 2.0 * bf16


def test_flashattention2_forward_on_a100():
    """FlashAttention-2's benchmark grid on the A100 (head_dim 64 and 128, with and without
    the mask, 512 to 16k tokens): its best is 230 TFLOP/s (model: 225, head_dim 128, 16k, no
    mask); shorter sequences, the mask and head_dim 64 are slower, never faster."""
    grid = {(hd, c): [_tflops("a100-sxm-80gb", hd, c, s, "fp16") for s in SEQ]
            for hd in (64, 128) for c in (False, True)}
    best = max(max(v) for v in grid.values())
    assert best == pytest.approx(230, rel=0.05)
    for v in grid.values():
        assert all(a <= b for a, b in itertools.pairwise(v)), v
    for hd in (64, 128):
        assert all(c <= n for c, n in zip(grid[hd, True], grid[hd, False], strict=True))
    assert all(a < b for a, b in zip(grid[64, False], grid[128, False], strict=True))


@pytest.mark.parametrize("arch", ["a100-pcie-80gb", "a100-sxm-40gb", "a100-sxm-80gb", "b200",
                                  "h100-pcie", "h100-sxm", "h200-sxm", "l4", "mi210",
                                  "mi250x", "mi300x", "v100-sxm2-32gb"])
def test_every_gpu_part_runs_flash_attention(arch):
    """On every GPU part: at the reference shape (head_dim 128, 16k tokens, no mask) the
    kernel stays below its MMA efficiency (the softmax it exposes, the tiles' prologues, the
    last partial wave) and above half of it; head_dim 64 is less efficient than 128 (the
    same softmax per score over half the MMA work); on the two parts the papers measured it
    reaches their figure within 5%. A decode step never beats reading its KV cache at the
    DRAM peak, and with its cache split over the SMs it runs a second (combine) kernel."""
    dev = load_arch(arch).device
    peak, _ = dev.peak("fp16", "matrix")
    ref = Attention(batch=1, heads=16, head_dim=128, seq=16384, causal=False, dtype="fp16")
    c = predict_op(ref, arch)
    got = ref.flops().matrix / kernel_time(c) / peak
    assert 0.5 * c.details["mma_efficiency"] < got < c.details["mma_efficiency"] <= 1.0
    assert _tflops(arch, 64, False, 16384, "fp16") * 1e12 / peak < got
    if arch in ("a100-sxm-80gb", "h100-sxm"):
        assert got == pytest.approx(float(dev.params["attention_efficiency"]), rel=0.05)
    dec = Attention(batch=1, heads=32, kv_heads=8, head_dim=128, seq=1, context=8192,
                    phase="decode", dtype="fp16")
    c = predict_op(dec, arch)
    assert kernel_time(c) >= dec.kv_cache_bytes() / dev.dram.bandwidth_Bps
    assert c.details["split_kv"] > 1 and c.details["launches"] == 2


def test_fa3_style_needs_hoppers_warp_specialised_kernels():
    """The kernel style follows the spec: FlashAttention-3 (softmax partly hidden) on the
    H100 family, FlashAttention-2 on the A100; hiding the softmax makes the same MMA work
    faster."""
    op = Attention(batch=1, heads=16, head_dim=64, seq=8192, causal=False, dtype="fp16")
    h100, a100 = predict_op(op, "h100-sxm"), predict_op(op, "a100-sxm-80gb")
    assert (h100.details["style"], a100.details["style"]) == ("FlashAttention-3",
                                                            "FlashAttention-2")
    assert h100.details["softmax_hidden"] > 0 == a100.details["softmax_hidden"]
    fa2 = predict_op(op, "h100-sxm", ["params.cluster_multicast=1",
                                      "params.persistent_gemm=false"])
    assert fa2.details["style"] == "FlashAttention-2"
    assert kernel_time(fa2) > kernel_time(h100)
