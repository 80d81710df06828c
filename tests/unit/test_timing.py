"""Timing semantics (simulator/timing.py): kernel, graph, stream and eager.

Each number asserted here follows from the definitions in simulator/timing.py and the family
defaults of simulator/arch/params.py (GPU: launch_overhead 4 us, graph_launch_gap 1 us,
eager_dispatch 2.3 us per Python call, eager_alloc 0.5 us per output, eager_launch 3 us per
kernel), not from a fit.
"""

from __future__ import annotations

import pytest

from simulator import predict_op, simulate
from simulator.arch.loader import load_arch
from simulator.arch.params import default
from simulator.engine.runner import run_graph
from simulator.errors import HwsimError
from simulator.explain import op_lines, result_lines
from simulator.frozen import FrozenMap
from simulator.mapping.base import EnergyParts, OpCost
from simulator.mapping.gpu import kernel_time
from simulator.predict import Predictor
from simulator.timing import TIMINGS, check_timing
from workloads.graph import WorkloadGraph
from workloads.ops import Elementwise, Flops, MatMul, Norm

H100 = "h100-sxm"
LAUNCH = default("gpu", "launch_overhead")
GAP = default("gpu", "graph_launch_gap")
DISPATCH = default("gpu", "eager_dispatch")
ALLOC = default("gpu", "eager_alloc")
KLAUNCH = default("gpu", "eager_launch")
HOST = DISPATCH + ALLOC + KLAUNCH   # one call, one output, one kernel (torch.add)
SHORT = Elementwise(fn="add", numel=4096, dtype="bf16")      # a ~2 us kernel
LONG = MatMul(m=8192, n=8192, k=8192, dtype="bf16")          # a ~1 ms kernel


def _costs(op, arch=H100):
    return {t: predict_op(op, arch, timing=t) for t in TIMINGS}


def test_short_kernel_orders_kernel_graph_stream():
    c = _costs(SHORT)
    assert c["kernel"].latency_s < c["graph"].latency_s < c["stream"].latency_s
    # the graph swaps the 4 us launch for the 1 us node gap; the kernel drops it
    assert c["stream"].latency_s - c["graph"].latency_s == pytest.approx(LAUNCH - GAP, rel=1e-9)
    assert c["stream"].latency_s - c["kernel"].latency_s == pytest.approx(LAUNCH, rel=1e-9)
    # eager: the device side is the stream's; the host's dispatch is recorded, not added
    assert c["eager"].latency_s == c["stream"].latency_s
    assert c["eager"].details["host_s"] == pytest.approx(HOST)


def test_kernel_timing_equals_kernel_time_of_the_default():
    for op in (SHORT, LONG, Norm(norm="rmsnorm", rows=16, cols=4096, dtype="fp16")):
        stream = predict_op(op, "a100-sxm-80gb")
        assert predict_op(op, "a100-sxm-80gb", timing="kernel").latency_s == pytest.approx(
            kernel_time(stream), rel=1e-12)


def test_default_timing_is_stream_and_leaves_costs_untouched():
    s = load_arch(H100)
    assert Predictor(s).timing == "stream"
    assert Predictor(s).cost(LONG) == Predictor(s, timing="stream").cost(LONG)


def _fixed(op, group=None):
    t = op.numel * 1e-6
    return OpCost(t, t, 0.0, 0.0, "compute", Flops(), FrozenMap({}), 0.0, EnergyParts(),
                  details=FrozenMap({"host_s": 2e-6}))


def test_host_pipeline_is_a_two_stage_pipeline():
    """Kernels of 1, 5, 1, 1 us behind a host that needs 2 us per op: host done at 2, 4, 6,
    8 us; device start_i = max(host done_i, device end_{i-1}): 2-3, 4-9, 9-10, 10-11."""
    g = WorkloadGraph("chain")
    prev: tuple[str, ...] = ()
    for i, us in enumerate((1, 5, 1, 1)):
        prev = (g.add_op(f"op{i}", Elementwise(fn="relu", numel=us), prev),)
    tl = run_graph(g, _fixed, host_s=lambda op, c: c.details["host_s"])
    assert [round(r.start_s * 1e6, 9) for r in tl] == [2, 4, 9, 10]
    assert [round(r.end_s * 1e6, 9) for r in tl] == [3, 9, 10, 11]
    assert list(tl.host_end * 1e6) == pytest.approx([2, 4, 6, 8])
    assert tl.host_wait_s(0) == pytest.approx(3e-6)  # 0-2 and 3-4 us waiting for the host
    without = run_graph(g, _fixed)
    assert without.makespan_s == pytest.approx(8e-6) and without.host_end is None


def test_eager_is_host_bound_when_kernels_are_short():
    # GPT-2 decode at batch 1: ~90 kernels of 1-10 us, behind a slow host (10 us per Python
    # call, a spec setting: with the 2.3 us default such kernels and their 4 us device-side
    # launch share about match the host)
    kw = dict(phase="decode", batch=1, context=128)
    slow = load_arch(H100, ["params.eager_dispatch=10 us"])
    stream = simulate("gpt2", slow, **kw)
    eager = simulate("gpt2", slow, timing="eager", **kw)
    tm = eager.meta["timing"]
    assert tm["mode"] == "eager" and tm["host_bound"] and eager.host_bound
    assert tm["host_s"] == pytest.approx(sum(r.host_s for r in eager.records), rel=1e-9)
    assert tm["host_s"] > tm["device_busy_s"]
    # host-bound: the run lasts at least the host's dispatch of every op, and the device
    # waited for it
    assert eager.latency_s >= tm["host_s"] and tm["host_wait_s"] > 0
    assert eager.latency_s > stream.latency_s
    assert tm["host_bound_ops"] > 0
    # an op starts once issued; one of several kernels (RMSNorm's eight) once its first is
    assert all(r.host_end_s is not None and
               r.start_s >= r.host_end_s - float(r.details.get("host_lead_s", 0.0)) - 1e-15
               for r in eager.records)


def test_eager_is_device_bound_when_kernels_are_long():
    stream = simulate("resnet50", H100, batch=64)
    eager = simulate("resnet50", H100, batch=64, timing="eager")
    tm = eager.meta["timing"]
    assert not tm["host_bound"] and tm["host_s"] < tm["device_busy_s"]
    # the host only delays the start: the device's own (eager: conv epilogues unfused) work
    # plus its waits for the host
    assert stream.latency_s <= eager.latency_s <= tm["device_busy_s"] + tm["host_wait_s"] \
        + 1e-12
    assert tm["host_wait_fraction"] < 0.05


def test_run_latency_orders_the_four_timings():
    lat = {t: simulate("bert-base", "a100-sxm-80gb", batch=1, seq=128, timing=t).latency_s
           for t in TIMINGS}
    assert lat["kernel"] < lat["graph"] < lat["stream"] <= lat["eager"]


def test_every_output_names_the_timing():
    slow = load_arch(H100, ["params.eager_dispatch=10 us"])  # a host-bound run (see above)
    r = simulate("gpt2", slow, phase="decode", batch=1, context=64, timing="eager")
    d = r.to_dict()
    assert d["timing"] == "eager" and "host_s" in d["ops"][0] and "host_end_s" in d["ops"][0]
    assert simulate("gpt2", H100, phase="decode", batch=1, context=64).to_dict()["timing"] \
        == "stream"
    tr = r.to_chrome_trace()
    host = [e for e in tr["traceEvents"] if e.get("cat") == "host"]
    assert len(host) == len(r.records)
    assert tr["otherData"]["timing"] == "eager" and tr["otherData"]["host_bound"] is True
    names = {e["args"]["name"] for e in tr["traceEvents"] if e.get("name") == "thread_name"}
    assert "host (eager dispatch)" in names
    text = "\n".join(result_lines(r))
    assert "Timing: eager" in text and "HOST-BOUND" in text and "eager_dispatch = 10 us" in text


def test_explain_states_the_timing_and_its_overheads():
    s = load_arch(H100)
    lines = "\n".join(op_lines(SHORT, predict_op(SHORT, s, timing="graph"), s))
    assert "timing: graph" in lines and "graph_launch_gap = 1 us" in lines
    assert "launch share 4 us replaced by 1 us" in lines
    lines = "\n".join(op_lines(SHORT, predict_op(SHORT, s, timing="eager"), s))
    assert "host dispatch 5.8 us" in lines and "host-bound" in lines
    assert "1 x eager_dispatch 2.3 us + 1 x eager_alloc 500 ns + 1 x eager_launch 3 us" in lines


def test_cpu_eager_is_stream_and_graph_is_refused():
    op = Elementwise(fn="add", numel=1 << 16, dtype="fp32")
    cpu = load_arch("cpu-host", ["params.detect=false"])
    eager = predict_op(op, cpu, timing="eager")
    assert eager.latency_s == predict_op(op, cpu).latency_s and eager.details["host_s"] == 0
    k = predict_op(op, cpu, timing="kernel")
    assert predict_op(op, cpu).latency_s - k.latency_s == pytest.approx(
        default("cpu", "launch_overhead"), rel=1e-9)
    with pytest.raises(HwsimError, match=r"cpu-host \(cpu family\): --timing graph"):
        predict_op(op, cpu, timing="graph")
    # a spec that gives the figure may use it
    g = predict_op(op, load_arch("cpu-host", ["params.detect=false",
                                              "params.graph_launch_gap=1 us"]), timing="graph")
    assert g.latency_s == pytest.approx(k.latency_s + 1e-6, rel=1e-9)
    assert simulate("mlp", cpu, timing="eager").meta["timing"]["host_bound"] is False


def test_systolic_graph_is_kernel_and_eager_is_refused():
    op = MatMul(m=512, n=512, k=512, dtype="bf16")
    tpu = load_arch("tpu-v4")
    assert predict_op(op, tpu, timing="graph").latency_s == predict_op(
        op, tpu, timing="kernel").latency_s
    with pytest.raises(HwsimError, match=r"tpu-v4 \(systolic family\): --timing eager"):
        Predictor(tpu, timing="eager")
    eager = Predictor(load_arch("tpu-v4", ["params.eager_dispatch=20 us"]), timing="eager")
    assert eager.cost(op).details["host_s"] == pytest.approx(20e-6)


def test_spec_params_set_the_overheads():
    s = load_arch(H100, ["params.graph_launch_gap=2 us", "params.eager_dispatch=30 us"])
    base = predict_op(SHORT, H100, timing="kernel").latency_s
    assert predict_op(SHORT, s, timing="graph").latency_s == pytest.approx(base + 2e-6)
    assert predict_op(SHORT, s, timing="eager").details["host_s"] == pytest.approx(
        30e-6 + ALLOC + KLAUNCH)
    # a gap above the launch is capped at it: a graph never waits longer than a stream
    big = load_arch(H100, ["params.graph_launch_gap=9 us"])
    assert predict_op(SHORT, big, timing="graph").latency_s == pytest.approx(
        predict_op(SHORT, big).latency_s)


def test_bad_timing_names_the_value():
    s = load_arch(H100)
    for bad in ("wall", "", "Kernel", 3):
        with pytest.raises(HwsimError, match="--timing: expected one of kernel, graph"):
            check_timing(bad, s.device)


def test_calibration_offers_the_overhead_of_the_timing():
    from simulator.validate.calibrate import _candidates

    dev = load_arch("a100-sxm-80gb").device
    graph = _candidates(dev, [SHORT], "graph")
    assert "graph_launch_gap" in graph and "launch_overhead" not in graph
    assert "kernel_startup" not in graph  # degenerate with the gap outside kernel time
    assert "eager_dispatch" in _candidates(dev, [SHORT], "eager")
    assert "eager_dispatch" not in _candidates(load_arch("cpu-host").device, [SHORT], "eager")


def test_training_fast_path_keeps_the_host_figures():
    """Collapsed blocks (engine/blocks.py) carry their ops' dispatch time: the host figures
    are those of the exact run, and the step time within 2% (each block starts with its host
    in step with its device: one dispatch per block run more than the exact pipeline)."""
    from simulator.train import train, train_system

    runs = [train("gpt2", "h100-sxm", global_batch=8, seq=128, exact=ex,
                  predictor=Predictor(train_system("h100-sxm"), timing="eager"))
            for ex in (False, True)]
    fast, exact = (r.result.meta["timing"] for r in runs)
    assert fast["host_s"] == pytest.approx(exact["host_s"], rel=1e-9)
    assert runs[0].result.latency_s == pytest.approx(runs[1].result.latency_s, rel=0.02)
