"""Selective activation recomputation (after Korthikanti et al. 2022): the non-GEMM ops of each
layer are re-run in the backward, so their outputs are not stored."""

from __future__ import annotations

import pytest

from workloads.errors import WorkloadError
from workloads.memory import footprint_by_device
from workloads.ops import MatMul
from workloads.transforms.training import selective_recomputed, training_step
from workloads.zoo import build_model


@pytest.fixture(scope="module", params=[("llama2-7b", 2048), ("gpt2", 1024)],
                ids=["llama2-7b", "gpt2"])
def steps(request):
    model, seq = request.param
    fwd = build_model(model, phase="train", batch=1, seq=seq)
    return fwd, {rc: training_step(fwd, recompute=rc) for rc in ("none", "selective", "full")}


def test_selective_lands_between_none_and_full(steps):
    _, g = steps
    act = {rc: footprint_by_device(x)[0].activations for rc, x in g.items()}
    flops = {rc: x.flops().total for rc, x in g.items()}
    assert act["none"] > act["selective"] > act["full"]
    assert flops["none"] < flops["selective"] < flops["full"]
    # a few percent more FLOPs (llama2-7b 1.3%, gpt2 2.4%), against ~1/3 more for full
    assert flops["selective"] / flops["none"] - 1 < 0.03
    assert flops["full"] / flops["none"] - 1 > 0.2
    # and 59% (llama2-7b) / 75% (gpt2) of the activation memory of none
    assert 0.5 < act["selective"] / act["none"] < 0.8
    assert {rc: x.meta["recompute"] for rc, x in g.items()} == {
        "none": "none", "selective": "selective", "full": "full"}


def test_extra_flops_are_the_recomputed_ops_forward_flops(steps):
    fwd, g = steps
    block = fwd.item("layers").block
    sinks = set(block.sinks())
    redo = [block.item(n) for n in block.g.nodes
            if n not in sinks and selective_recomputed(block.item(n))]
    assert redo and not any(isinstance(op, MatMul) for op in redo)  # never a GEMM
    extra = sum(op.flops().total for op in redo) * fwd.item("layers").times
    assert g["selective"].flops().total - g["none"].flops().total == pytest.approx(extra,
                                                                                   rel=1e-9)


def test_recomputed_ops_run_just_before_the_backward_that_needs_them():
    fwd = build_model("llama2-7b", phase="train", batch=1, seq=128)
    block = training_step(fwd, recompute="selective").item("backward.layers").block
    order = block.topo()
    # the SwiGLU product is re-run right before down_proj's backward (it is down_proj's input)
    assert order.index("recompute.act") == order.index("down_proj.dgrad") - 1
    assert "recompute.act" in set(block.g.predecessors("down_proj.wgrad"))
    # the attention core before o_proj's backward, the norm before the fused QKV backward
    assert order.index("recompute.attention") < order.index("o_proj.wgrad")
    assert order.index("recompute.attn_norm") < order.index("qkv_proj.wgrad")
    # the layer's last op (the residual add feeding the next layer) is kept, not re-run
    assert "recompute.mlp_residual" not in block.g


def test_unknown_recompute_is_an_error():
    with pytest.raises(WorkloadError, match="selective"):
        training_step(build_model("gpt2", phase="train", batch=1, seq=64), recompute="half")
