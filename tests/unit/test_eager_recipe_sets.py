"""The eager recipe sets (``params.eager_recipes``, simulator.timing.RECIPE_SETS): HF
transformers' Python modules (the default) or vLLM's fused custom ops with enforce_eager.
Counts from the sources each recipe names; host times from the A100 spec's eager figures."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator import predict_op, simulate
from simulator.arch.loader import load_arch
from simulator.arch.params import default
from simulator.cli_serve import serve_system
from simulator.errors import SpecError
from simulator.timing import EAGER_RECIPES, eager_recipe, kernels_of, recipe_set
from workloads.ops import Attention, Elementwise, MatMul, Norm

A100 = "a100-sxm-80gb"
VLLM = ("params.eager_recipes=vllm",)
DISPATCH, ALLOC, KLAUNCH = (default("gpu", n) for n in
                            ("eager_dispatch", "eager_alloc", "eager_launch"))
RMS = Norm(norm="rmsnorm", rows=4, cols=4096, dtype="fp16")
ROPE = Elementwise(fn="mul", numel=4 * 8192, row=8192, table=128, dtype="fp16")
SWIGLU = Elementwise(fn="swiglu", numel=4 * 11008, row=11008, dtype="fp16")
DECODE = Attention(batch=4, heads=32, kv_heads=8, head_dim=128, seq=1, context=1024,
                   phase="decode", dtype="fp16")


@pytest.mark.parametrize("op,calls,kernels,outputs", [
    (RMS, 1, 1, 0),      # ops.fused_add_rms_norm: the residual add and the norm, in place
    (ROPE, 2, 1, 0),     # cos_sin_cache.to (a no-op), ops.rotary_embedding in place
    (SWIGLU, 2, 1, 1),   # torch.empty, then ops.silu_and_mul into it
    (DECODE, 15, 3, 3),  # 11 views, cache write, empty_like, flash (out + lse), copy_
    (MatMul(m=64, n=4096, k=4096, weight=True, dtype="fp16"), 1, 1, 1),  # as HF: F.linear
])
def test_vllm_recipes_follow_vllms_layers(op, calls, kernels, outputs):
    s = load_arch(A100, VLLM)
    assert recipe_set(s.device) == "vllm" and recipe_set(load_arch(A100).device) == "hf"
    _, aten, _ = eager_recipe(op, None, s.device)
    assert (len(aten), sum(a.kernels for a in aten), sum(a.outputs for a in aten)) == \
        (calls, kernels, outputs)
    # the mapper's extra kernels (split-K's reduction, flash-decoding's combine) ride the call
    # that runs the op's own kernel
    kernels += kernels_of(predict_op(op, s)) - 1
    c = predict_op(op, s, timing="eager")
    assert c.details["host_s"] == pytest.approx(
        calls * DISPATCH + outputs * ALLOC + kernels * KLAUNCH, rel=1e-12)


def test_fused_ops_keep_their_fused_kernel_under_vllm():
    """vLLM's RMSNorm, rotary and SwiGLU are the graph's own fused kernels: under eager their
    device time is the stream time (HF's run 8, 10 and 2 unfused kernels and take longer)."""
    v, h = load_arch(A100, VLLM), load_arch(A100)
    for op in (RMS, ROPE, SWIGLU):
        assert predict_op(op, v, timing="eager").latency_s == predict_op(op, v).latency_s
        assert predict_op(op, h, timing="eager").latency_s > predict_op(op, h).latency_s


def test_vllm_attention_adds_its_cache_write_and_copy_kernels():
    """The new tokens' K and V (4 x 8 heads x 128 x 2, fp16) written into the paged cache by
    their own kernel before the attention kernel, and its output copied into the
    preallocated tensor after it: two more launch shares on the device than the fused
    attention alone (which keeps its own kernels, flash-decoding's combine included)."""
    v = load_arch(A100, VLLM)
    fused, eager = predict_op(DECODE, v), predict_op(DECODE, v, timing="eager")
    assert eager.details["eager_kernels"] == 2 + kernels_of(fused)
    assert eager.latency_s >= fused.latency_s + 2 * default("gpu", "launch_overhead") * 0.99


def test_vllm_runs_the_residual_add_inside_the_next_norm():
    """o_proj's residual-add epilogue: HF's eager runs it as aten::add after the GEMM (a
    call, a kernel, an output); vLLM's fused_add_rms_norm adds it, so under vllm the GEMM is
    one call and one kernel and its device time the fused GEMM's."""
    op = MatMul(m=1, n=4096, k=4096, weight=True, dtype="fp16", epilogue=("add",))
    h, v = load_arch(A100), load_arch(A100, VLLM)
    hf, vl = predict_op(op, h, timing="eager"), predict_op(op, v, timing="eager")
    extra = kernels_of(predict_op(op, v)) - 1
    assert (hf.details["eager_calls"], hf.details["eager_kernels"]) == (2, 2 + extra)
    assert (vl.details["eager_calls"], vl.details["eager_kernels"]) == (1, 1 + extra)
    assert vl.latency_s == predict_op(op, v).latency_s < hf.latency_s


def test_llama_decode_is_faster_under_vllms_recipes():
    """Llama-2 7B decode, batch 1, context 512: HF's eager runs 65 RMSNorms as 8 kernels each
    and 32 rotaries as 10; vLLM's as one: shorter, and still slower than CUDA-graph replay."""
    kw = dict(phase="decode", batch=1, context=512)
    hf = simulate("llama2-7b", A100, timing="eager", **kw).latency_s
    vllm = simulate("llama2-7b", A100, timing="eager", overrides=VLLM, **kw).latency_s
    graph = simulate("llama2-7b", A100, timing="graph", **kw).latency_s
    assert graph < vllm < hf
    r = simulate("llama2-7b", A100, timing="eager", overrides=VLLM, **kw)
    tm = r.meta["timing"]
    assert tm["recipe_set"] == "vllm" and "enforce_eager" in tm["recipe_set_meaning"]
    rows = {row["class"]: row for row in tm["recipes"]}
    assert rows["norm.rmsnorm"]["kernels"] == 1 and rows["elementwise.rope"]["kernels"] == 1
    assert set(rows) == set(EAGER_RECIPES)


@pytest.mark.parametrize("value", ["tgi", "", "HF", 1, True])
def test_unknown_recipe_set_names_the_field(value):
    with pytest.raises(SpecError, match="eager_recipes"):
        load_arch(A100, [f"params.eager_recipes={value}"])


def test_serve_eager_uses_vllms_recipes_unless_the_spec_names_a_set():
    """serve models vLLM: under eager a GPU whose spec and --set name no set gets vLLM's; a
    set named either way is kept; other timings and non-GPU parts are left as given."""
    plain, named = load_arch(A100), load_arch(A100, ["params.eager_recipes=hf"])
    assert recipe_set(serve_system(plain, "eager").device) == "vllm"
    assert recipe_set(serve_system(named, "eager").device) == "hf"
    assert serve_system(plain, "graph") is plain
    for arch in ("cpu-host", "tpu-v5e", "dgx-h100"):
        s = load_arch(arch)
        out = serve_system(s, "eager")
        assert (out is s) == (s.device.family != "gpu"), arch
        if s.device.family == "gpu":
            assert recipe_set(out.device) == "vllm"


@pytest.mark.parametrize("arch,label", [("a100-sxm-80gb", "eager, vllm recipes"),
                                        ("cpu-host", "eager")])
def test_hwsim_serve_eager_runs_and_says_its_recipes(arch, label, capsys):
    """`hwsim serve --timing eager` on a GPU (vLLM's recipes) and on a CPU (no recipe set: it
    must not be refused, as it was when the set rode on --set)."""
    from simulator.cli import main

    args = ["serve", "--workload", "gpt2", "--arch", arch, "--rate", "2", "--requests", "6",
            "--prompt-len", "32", "--output-len", "4", "--timing", "eager"]
    assert main(args) == 0
    assert f"{label} timing" in capsys.readouterr().out
    assert main([*args, "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["timing"] == "eager" and d.get("eager_recipes") == (
        "vllm" if arch.startswith("a100") else None)


_OPS = st.one_of(
    st.builds(lambda r, d: Norm(norm="rmsnorm", rows=r, cols=4096, dtype=d),
              st.integers(1, 4096), st.sampled_from(["fp16", "bf16", "fp32"])),
    st.builds(lambda t, w: Elementwise(fn="mul", numel=t * w, row=w, table=128, dtype="bf16"),
              st.integers(1, 4096), st.sampled_from([1536, 8192, 9216])),
    st.builds(lambda n: Elementwise(fn="swiglu", numel=n, dtype="bf16"), st.integers(1, 1 << 24)),
    st.builds(lambda b, c, s: Attention(batch=b, heads=32, kv_heads=8, head_dim=128, seq=s,
                                        context=c, phase="decode", dtype="bf16"),
              st.integers(1, 64), st.integers(1, 8192), st.integers(1, 4)),
)


@pytest.mark.parametrize("part", ["a100-sxm-80gb", "h100-sxm", "l4"])
@settings(max_examples=25, deadline=None)
@given(op=_OPS)
def test_vllm_eager_is_never_faster_than_stream(part, op):
    """Under either recipe set: kernel <= graph <= stream <= eager, and vLLM's eager never
    slower than HF's (its recipes are subsets of HF's calls, kernels and outputs)."""
    v = load_arch(part, VLLM)
    t = [predict_op(op, v, timing=m).latency_s for m in ("kernel", "graph", "stream", "eager")]
    assert all(0 < a <= b * (1 + 1e-12) for a, b in zip(t, t[1:])), (op.describe(), t)
    hf = predict_op(op, part, timing="eager")
    if not isinstance(op, Attention):  # vLLM adds the cache write HF's sdpa recipe leaves out
        assert t[-1] <= hf.latency_s * (1 + 1e-12)
        assert predict_op(op, v, timing="eager").details["host_s"] <= hf.details["host_s"]
