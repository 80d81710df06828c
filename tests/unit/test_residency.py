"""Graph-level operand residency on DRAM-less edge parts, and depthwise convs on arrays.

The Coral Edge TPU's compiler caches a model's parameters in its 8 MB SRAM and keeps the
activations on chip (simulator/mapping/residency.py); a systolic array runs a depthwise conv
the fastest of three ways (one channel per column, channels packed block-diagonally, or the
vector unit: systolic_core._depthwise_options).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator import load_arch, simulate
from simulator.mapping.base import MapOptions
from simulator.mapping.registry import Mapper
from simulator.mapping.residency import onchip_residency, op_homes
from workloads.ops import Conv2d
from workloads.zoo import build

CORAL = "coral-edge-tpu"


def test_parts_with_their_own_dram_keep_per_op_homes():
    g = build("mobilenet-v2", dtype="int8")
    assert onchip_residency(g, load_arch("tpu-v4").device) is None
    assert onchip_residency(g, load_arch(CORAL, ["params.on_chip_residency=false"]).device) \
        is None


def test_a_model_that_fits_is_fully_resident():
    g = build("mobilenet-v2", dtype="int8")
    r = onchip_residency(g, load_arch(CORAL).device)
    assert r is not None and r.offchip == (0.0, 0.0, 0.0)
    # MobileNet v2 has 3.5 M parameters (Sandler et al. 2018): 3.5 MB in int8
    assert r.weight_bytes == pytest.approx(3.5e6, rel=0.02)
    homes = op_homes(g, r)
    first = g.g.nodes[next(n for n in g.g.nodes if g.g.in_degree(n) == 0)]["item"]
    assert homes(first)[0] == 1.0  # the input image comes from the host


def test_the_excess_of_a_larger_model_streams_at_every_inference():
    """ResNet-50's 25.6 MB of int8 weights exceed the 8 MiB SRAM: the bytes read from the
    host per inference are the weights that do not fit beside the largest activation set,
    plus the input image and the logits."""
    r = simulate("resnet50", CORAL)
    res = r.meta["residency"]
    room = res["capacity_bytes"] - res["activation_peak_bytes"]
    expected = res["weight_bytes"] - room + 224 * 224 * 3 + 1000
    # 0.5%: the conv biases (~1 per output channel, counted in weight_bytes) are applied in the
    # epilogue, not read as a GEMM operand
    assert r.to_dataframe().dram_bytes.sum() == pytest.approx(expected, rel=0.005)


def test_residency_is_never_slower_than_streaming_everything():
    for model in ("mobilenet-v2", "efficientnet-b0", "resnet18"):
        on = simulate(model, CORAL)
        off = simulate(model, load_arch(CORAL, ["params.on_chip_residency=false"]))
        assert on.latency_s < off.latency_s, model
        assert on.energy.total_j < off.energy.total_j, model


@settings(max_examples=40, deadline=None)
@given(c=st.sampled_from([16, 32, 96, 144, 384, 960]), hw=st.sampled_from([7, 14, 28, 56]),
       r=st.sampled_from([3, 5]), stride=st.sampled_from([1, 2]),
       arch=st.sampled_from(["tpu-v4", "tpu-v5e", "systolic-32x32", "eyeriss"]))
def test_depthwise_beats_no_bound(c, hw, r, stride, arch):
    """Whichever depthwise option wins, it never beats the compute bound of the useful MACs
    on the faster of the array and the vector unit, nor reads less from DRAM than the op's
    compulsory bytes, nor moves them faster than the DRAM bandwidth."""
    dev = load_arch(arch).device
    dtype = "bf16" if dev.peak("bf16", "matrix")[0] > 0 else "int8"
    op = Conv2d(n=1, c=c, h=hw, w=hw, k=c, r=r, s=r, stride=stride, pad=r // 2, groups=c,
                dtype=dtype)
    cost = Mapper(dev, MapOptions()).cost(op)
    matrix, _ = dev.peak(dtype, "matrix")
    vector, _ = dev.peak(dtype, "vector")
    assert cost.latency_s >= op.flops().total / max(matrix, vector) * (1 - 1e-9)
    dram = cost.bytes_by_level[dev.memory[0].name]
    assert dram >= op.min_bytes * (1 - 1e-9) - op.weight_bytes() * 0.01
    assert cost.latency_s >= dram / dev.memory[0].bandwidth_Bps * (1 - 1e-9)


def test_packing_depthwise_channels_speeds_up_mobilenet_on_an_array(monkeypatch):
    """On a 32x32 array a 3x3 depthwise conv uses 9 rows and 1 column per channel; packing 3
    channels block-diagonally (27 rows, 3 columns) or the vector unit must beat that."""
    from simulator.mapping import systolic_core

    dev = load_arch("systolic-32x32").device
    op = Conv2d(n=1, c=144, h=56, w=56, k=144, r=3, s=3, stride=1, pad=1, groups=144,
                dtype="int8")
    cost = Mapper(dev, MapOptions()).cost(op)
    monkeypatch.setattr(systolic_core, "_depthwise_options", lambda *a: [])
    one_per_column = Mapper(dev, MapOptions()).cost(op)
    assert "depthwise_pack" not in one_per_column.details
    assert cost.latency_s < 0.6 * one_per_column.latency_s
    assert cost.details.get("depthwise_pack", 0) > 1 or \
        cost.details.get("depthwise_on") == "vector"
