"""Fused projections (issue 12 part 5): QKV as one GEMM and gate/up as one GEMM by default, as
vLLM (``QKVParallelLinear``, ``MergedColumnParallelLinear``) and Megatron-LM (``linear_qkv``,
``linear_fc1``) run them, with ``fuse_projections=False`` / ``--unfuse-projections`` to split
them; tensor-parallel shards stay column-parallel with GQA heads."""

from __future__ import annotations

import pytest

from simulator.api import RunOptions, simulate
from simulator.cli import main
from workloads.ops import MatMul
from workloads.transforms.tensor_parallel import tensor_parallel
from workloads.zoo import build, build_model


def _layer_matmuls(model: str, tp: int, fuse: bool, **kw) -> dict[str, MatMul]:
    g = tensor_parallel(build_model(model, fuse_projections=fuse, **kw), tp)
    block = g.item("layers").block
    return {n: block.item(n) for n in block.g.nodes if isinstance(block.item(n), MatMul)}


@pytest.fixture(scope="module")
def decode_70b():
    """Llama-2-70B decode on a DGX H100 (TP 8), fused and unfused."""
    return {f: simulate("llama2-70b", "dgx-h100", RunOptions(
        phase="decode", batch=8, context=2048, fuse_projections=f)) for f in (True, False)}


def test_decode_faster_fused_same_flops(decode_70b):
    """One weight stream per fused GEMM instead of three (two): fewer kernels' fixed costs
    and fewer under-filled small-N GEMMs (K and V are 128 columns per device at TP 8)."""
    fused, unfused = decode_70b[True], decode_70b[False]
    assert fused.flops == pytest.approx(unfused.flops, rel=1e-12)
    assert fused.latency_s < unfused.latency_s * 0.95  # the issue: ~1.4 ms of ~16 ms per step


def test_op_counts_drop_by_three_per_layer_and_device(decode_70b):
    """q/k/v -> qkv (2 fewer), gate/up -> gate_up (1 fewer): 3 x 80 layers x 8 devices."""
    fused, unfused = decode_70b[True], decode_70b[False]
    assert len(unfused.records) - len(fused.records) == 3 * 80 * 8
    names = {r.name.rsplit(".", 1)[-1] for r in fused.records}
    assert {"qkv_proj", "gate_up_proj"} <= names
    assert not names & {"q_proj", "k_proj", "v_proj", "gate_proj", "up_proj"}


@pytest.mark.parametrize("tp, heads, kv_heads", [(1, 64, 8), (2, 32, 4), (8, 8, 1)])
def test_tp_shards_of_fused_gemms(tp: int, heads: int, kv_heads: int):
    """Column-parallel: each device's QKV holds its query heads and their KV heads
    ((heads + 2 kv_heads) / tp x 128 columns), gate/up its 2 x d_ff / tp columns; the
    unfused shards add up to the same columns."""
    fused = _layer_matmuls("llama2-70b", tp, True, phase="decode", context=128)
    unfused = _layer_matmuls("llama2-70b", tp, False, phase="decode", context=128)
    assert fused["qkv_proj"].n == (heads + 2 * kv_heads) * 128
    assert fused["qkv_proj"].n == sum(unfused[x].n for x in ("q_proj", "k_proj", "v_proj"))
    assert fused["gate_up_proj"].n == 2 * 28672 // tp
    assert fused["gate_up_proj"].n == unfused["gate_proj"].n + unfused["up_proj"].n
    assert fused["qkv_proj"].k == fused["gate_up_proj"].k == 8192


def test_params_and_weights_unchanged():
    for model in ("llama2-7b", "mixtral-8x7b"):
        a, b = (build(model, phase="decode", context=64, fuse_projections=f) for f in (True, False))
        assert a.params() == b.params()
        assert a.meta["weight_bytes"] == b.meta["weight_bytes"]
        assert a.flops().matrix == b.flops().matrix


def test_gpt2_qkv_stays_fused():
    """GPT-2's c_attn is one weight in the checkpoint: fused either way; its MLP is not gated."""
    names = set(_layer_matmuls("gpt2", 1, False, phase="prefill", seq=16))
    assert "qkv_proj" in names and "gate_up_proj" not in names


def test_training_and_expert_parallel_build_fused():
    """The backward pass and expert parallelism take the fused GEMMs too."""
    g = build("llama2-7b", phase="train", seq=64, fuse_projections=True)
    names = {n.name for n in g.flat()}
    assert {"backward.layers.0.gate_up_proj.wgrad", "backward.layers.0.qkv_proj.dgrad"} <= names
    r = simulate("mixtral-8x7b", "dgx-h100", RunOptions(phase="decode", batch=16, context=256,
                                                        tp=1, ep=2))
    assert any(rec.name.endswith("experts.gate_up_proj") for rec in r.records)


def test_cli_unfuse_projections(capsys):
    args = ["run", "--workload", "llama2-7b", "--arch", "h100-sxm", "--phase", "decode",
            "--json"]
    assert main(args) == 0
    fused = capsys.readouterr().out
    assert main([*args, "--unfuse-projections"]) == 0
    unfused = capsys.readouterr().out
    assert "q_proj" not in fused and "gate_up_proj" in fused
    assert "q_proj" in unfused and "gate_up_proj" not in unfused
