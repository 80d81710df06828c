"""``--explain`` (simulator.explain): the numbers in the text recompute by hand.

Each op test parses the explanation of one op on one family (GPU h100-sxm, systolic tpu-v4,
FPGA alveo-u250, CPU cpu-host) and redoes the arithmetic a student would: FLOPs from the
shapes, bytes from the shapes and dtype sizes, intensity = FLOPs / bytes, ridge = peak /
bandwidth, the bounds, and the predicted time against the OpCost and the roofline. Printed
quantities have 4 significant digits, so a parsed value is within 5e-4 (relative) of the
exact one; a value computed from two printed ones within 1e-3. Counts print exactly.
"""

from __future__ import annotations

import json
import math
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.api import predict_op, resolve_system, simulate
from simulator.cli import main
from simulator.cost.dollars import J_PER_KWH, CostOptions
from simulator.explain import op_lines, result_lines, roofline
from workloads.ops import op_from_dict

PRINTED = 5e-4   # one printed 4-significant-digit quantity
DERIVED = 1.5e-3  # a quantity computed from printed ones
PREFIX = {"P": 1e15, "T": 1e12, "G": 1e9, "M": 1e6, "k": 1e3, "": 1.0, "m": 1e-3, "u": 1e-6,
          "n": 1e-9, "p": 1e-12}
QTY = r"(-?[\d,]+(?:\.\d+)?(?:e[+-]?\d+)?) ([PTGMkmunp]?)"


def qty(text: str, unit: str) -> list[float]:
    """Every ``<number> <prefix><unit>`` in ``text``, in SI."""
    pat = QTY + re.escape(unit) + r"(?![\w/])"
    return [float(n.replace(",", "")) * PREFIX[p] for n, p in re.findall(pat, text)]


def line(lines: list[str], start: str) -> str:
    """The first line that starts (after indentation) with ``start``."""
    hits = [x.strip() for x in lines if x.strip().startswith(start)]
    assert hits, f"no line starting {start!r} in:\n" + "\n".join(lines)
    return hits[0]


def count(text: str) -> float:
    """The first exact count after an ``=`` (``... = 137,438,953,472 FLOP``)."""
    return float(re.findall(r"= ([\d,]+(?:\.\d+)?) (?:FLOP|B)\b", text)[0].replace(",", ""))


def explain(arch: str, fields: dict, **kw):
    op = op_from_dict(fields)
    system = resolve_system(arch, ())
    cost = predict_op(op, system, **kw)
    return op, cost, system, op_lines(op, cost, system)


CASES = {
    "gpu-gemm": ("h100-sxm", {"kind": "matmul", "m": 4096, "n": 4096, "k": 4096,
                              "dtype": "bf16"}),
    "systolic-conv": ("tpu-v4", {"kind": "conv2d", "n": 8, "c": 64, "h": 56, "w": 56, "k": 64,
                                 "r": 3, "s": 3, "pad": 1, "dtype": "bf16"}),
    "fpga-gemm": ("alveo-u250", {"kind": "matmul", "m": 1024, "n": 1024, "k": 1024,
                                 "dtype": "int8"}),
    "cpu-gemm": ("cpu-host", {"kind": "matmul", "m": 1024, "n": 1024, "k": 1024,
                              "dtype": "fp32"}),
}


def hand_flops_and_bytes(f: dict) -> tuple[float, float]:
    """FLOPs and compulsory bytes of the test ops, from their shapes (2 FLOP per MAC)."""
    e = {"bf16": 2, "int8": 1, "fp32": 4}[f["dtype"]]
    if f["kind"] == "matmul":
        m, n, k = f["m"], f["n"], f["k"]
        return 2.0 * m * n * k, (m * k + k * n + m * n) * e
    p = (f["h"] + 2 * f["pad"] - f["r"]) // 1 + 1
    q_ = (f["w"] + 2 * f["pad"] - f["s"]) // 1 + 1
    gm, gn, gk = f["n"] * p * q_, f["k"], f["c"] * f["r"] * f["s"]
    byt = (f["n"] * f["c"] * f["h"] * f["w"] + f["k"] * f["c"] * f["r"] * f["s"]
           + f["n"] * f["k"] * p * q_) * e
    return 2.0 * gm * gn * gk, byt


@pytest.mark.parametrize("case", CASES)
def test_op_explanation_recomputes_by_hand(case):
    arch, fields = CASES[case]
    op, cost, system, lines = explain(arch, fields)
    dev = system.device
    flops, nbytes = hand_flops_and_bytes(fields)
    # the work: the formula's product is 2*M*N*K (2*g*M*N*K for the conv's im2col GEMM)
    assert count(line(lines, "FLOPs = 2 x")) == flops
    assert count(line(lines, "total = ")) == flops
    # bytes: per tensor, summing to the hand count
    tensor_lines = [x for x in lines if re.match(r"\s+\S.*\((read|written)\):", x)]
    assert len(tensor_lines) == 3
    assert sum(count(x) for x in tensor_lines) == nbytes
    assert count([x for x in lines if x.strip().startswith("total = ")][1]) == nbytes
    # intensity = FLOPs / bytes
    ai = float(line(lines, "arithmetic intensity =").split("= ")[-1].split()[0])
    assert ai == pytest.approx(flops / nbytes, rel=PRINTED)
    # ridge = peak / bandwidth, both named with their numbers
    ridge_line = line(lines, "ridge point =")
    peak, = qty(ridge_line, "FLOP/s")
    bw, = qty(ridge_line, "B/s")
    ridge = float(ridge_line.split("= ")[-1].split()[0])
    assert ridge == pytest.approx(peak / bw, rel=DERIVED)
    rf = roofline(op, cost, dev)
    assert peak == pytest.approx(dev.peak(op.dtype, "matrix")[0], rel=PRINTED)
    assert bw == pytest.approx(rf.level.bandwidth_Bps, rel=PRINTED)
    verdict = line(lines, "intensity ")
    assert ("compute-bound" in verdict) == (ai >= ridge)
    # the two bounds, from the printed peak and bandwidth
    cb, = qty(line(lines, "compute bound ="), "s")[-1:]
    mb, = qty(line(lines, "memory bound ="), "s")[-1:]
    assert cb == pytest.approx(flops / peak, rel=DERIVED)
    assert mb == pytest.approx(nbytes / bw, rel=DERIVED)
    side = line(lines, "the larger bound:").split(":")[1].split()[0]
    assert side == ("compute" if cb >= mb else "memory")
    # the sum: max(compute, memory) + fixed (+ serial stalls) = predicted = OpCost latency
    total = line(lines, "predicted = ")
    terms = qty(total, "s")
    c, m, fixed, *serial, predicted = terms
    assert predicted == pytest.approx(cost.latency_s, rel=PRINTED)
    assert max(c, m) + fixed + sum(serial) == pytest.approx(predicted, rel=DERIVED)
    assert c == pytest.approx(cost.compute_s, rel=PRINTED)
    assert m == pytest.approx(cost.memory_s, rel=PRINTED)
    # the check: predicted >= both bounds, and the text says it holds
    assert predicted >= max(cb, mb)
    assert "holds" in line(lines, "check: predicted")
    # the binding side the model states matches the larger of its two times
    stated = line(lines, "the larger:").split(":")[1].split()[0]
    assert stated == ("compute" if c >= m else "memory") == cost.bound


def test_efficiency_is_the_spec_value_with_its_source():
    _, cost, system, lines = explain(*CASES["gpu-gemm"])
    eff = line(lines, "compute_efficiency[bf16] =")
    assert float(eff.split("= ")[1].split(":")[0]) == system.device.params[
        "compute_efficiency"]["bf16"] == cost.details["efficiency"]
    assert "params.compute_efficiency.bf16" in eff
    # a family default names simulator/arch/params.py and its source text
    _, _, _, lines = explain("systolic-32x32", {"kind": "matmul", "m": 64, "n": 64, "k": 64,
                                                "dtype": "int8"})
    assert "bandwidth_efficiency" in "\n".join(lines)


def test_gpu_waves_and_fixed_costs_add_up():
    _, cost, _, lines = explain(*CASES["gpu-gemm"])
    d = cost.details
    waves = line(lines, "GPU: C is cut into")
    assert f"{d['tiles']} tiles over {d['sms']} SMs" in waves
    assert f"-> {math.ceil(d['tiles'] / d['sms'])} waves" in waves
    fixed = qty(line(lines, "fixed costs ="), "s")
    assert sum(fixed[:-1]) == pytest.approx(fixed[-1], rel=DERIVED)
    assert fixed[-1] == pytest.approx(cost.overhead_s, rel=PRINTED)
    assert fixed[0] == pytest.approx(d["launch_s"], rel=PRINTED)


def test_systolic_folds_and_fill_drain():
    _, cost, _, lines = explain(*CASES["systolic-conv"])
    d = cost.details
    r, c = d["array"]
    folds = line(lines, "folds:")
    assert f"{r + c - 2} cycles of fill and drain" in folds
    assert count(folds.replace("cycles", "FLOP")) == d["folds"] * d["cycles_per_fold"]
    assert "dataflow ws: weight stationary" in "\n".join(lines)
    cyc = line(lines, "compute cycles =")
    compute_s = qty(cyc, "s")[0]
    assert compute_s == pytest.approx(d["compute_cycles"] / d["clock_hz"], rel=PRINTED)
    # the serial stall term is the stall cycles over the clock
    serial = qty(line(lines, "predicted = "), "s")[3]
    assert serial == pytest.approx(d["stall_cycles"] / d["clock_hz"], rel=PRINTED)


def test_fpga_mac_lanes_from_the_dsp_budget():
    _, cost, _, lines = explain(*CASES["fpga-gemm"])
    d = cost.details
    fp = line(lines, "FPGA:")
    assert f"= {d['mac_lanes']} MAC lanes" in fp
    assert d["mac_lanes"] == math.floor(d["dsp_count"] * d["dsp_utilization"]
                                        * d["macs_per_dsp"])
    assert qty(fp, "FLOP/s")[0] == pytest.approx(d["mac_lanes"] * 2 * d["clock_hz"], rel=PRINTED)


def test_collective_alpha_beta_adds_up():
    _, cost, system, lines = explain("tpu-v4", {"kind": "allreduce", "bytes": 1e8,
                                                "devices": 8, "dtype": "bf16"})
    d = cost.details
    link = system.device.link
    alpha = line(lines, "alpha (latency) =")
    steps = int(re.search(r"= (\d+) steps", alpha).group(1))
    assert steps == 2 * (8 - 1)  # a ring all-reduce: reduce-scatter then all-gather
    assert qty(alpha, "s")[-1] == pytest.approx(steps * link.latency_s, rel=PRINTED)
    beta = line(lines, "beta (bandwidth) =")
    sent, = qty(beta, "B")[-1:]
    assert sent == pytest.approx(2 * 7 / 8 * 1e8, rel=PRINTED)  # 2 (d-1)/d of the payload
    assert qty(beta, "B/s")[0] == pytest.approx(link.bandwidth_Bps, rel=PRINTED)
    time = qty(line(lines, "time = alpha + beta"), "s")
    assert time[0] + time[1] == pytest.approx(time[2], rel=DERIVED)
    assert qty(line(lines, "predicted = "), "s")[-1] == pytest.approx(cost.latency_s,
                                                                     rel=PRINTED)
    assert d["algorithm"] == "ring"


def test_streaming_op_is_memory_bound_below_the_ridge():
    op, cost, _, lines = explain("h100-sxm", {"kind": "softmax", "rows": 4096, "cols": 4096,
                                              "dtype": "bf16"})
    assert count(line(lines, "total = ")) == 5 * 4096 * 4096  # 4 vector + 1 exp per element
    assert "memory-bound" in line(lines, "intensity ")
    assert "vector_efficiency" in "\n".join(lines)
    predicted = qty(line(lines, "predicted = "), "s")
    assert sum(predicted[1:-1]) + max(predicted[0], predicted[1]) - predicted[1] \
        == pytest.approx(predicted[-1], rel=DERIVED)
    assert predicted[-1] == pytest.approx(cost.latency_s, rel=PRINTED)


def _shares(lines: list[str]) -> list[float]:
    sec = lines[lines.index(next(x for x in lines if x.startswith("3. "))):]
    return [float(x) / 100 for x in re.findall(r", ([\d.]+)% of op time", "\n".join(sec))]


def test_run_top_shares_and_cloud_cost():
    r = simulate("gpt2", "h100-sxm", seq=128)
    system = resolve_system("h100-sxm")
    lines = result_lines(r, system, top=5)
    shares = _shares(lines)
    assert 0 < len(shares) <= 5
    assert sum(shares) <= 1.0 + 1e-9
    assert float(line(lines, "these ").split(": ")[1].split("%")[0]) / 100 == \
        pytest.approx(sum(shares), abs=3e-3)  # five shares rounded to 0.1% each
    bounds = [float(x) / 100 for x in
              re.findall(r"^\s+([\d.]+)% \w+-bound", "\n".join(lines), re.M)]
    assert sum(bounds) == pytest.approx(1.0, abs=3e-3)
    cloud = line(lines, "cloud:")
    rate = float(re.search(r"\$([\d,.]+) per hour", cloud).group(1).replace(",", ""))
    t = qty(cloud, "s")[0]
    usd = float(cloud.split("= $")[1].split()[0])
    assert rate == pytest.approx(r.cost.usd_per_hour, rel=PRINTED)
    assert rate * t / 3600 == pytest.approx(r.cost.usd, rel=DERIVED)
    assert usd == pytest.approx(r.cost.usd, rel=PRINTED)
    split = [float(x) for x in re.findall(r"([\d.]+)%", line(lines, "split:"))]
    assert sum(split) == pytest.approx(100.0, abs=0.05 * len(split))  # each rounded to 0.1%
    power = line(lines, "average power =")
    e, = qty(power, "J")
    assert e / qty(power, "s")[0] == pytest.approx(r.avg_power_w, rel=DERIVED)
    tdp = float(re.search(r"vs TDP ([\d,.]+) W", power).group(1).replace(",", ""))
    assert tdp == pytest.approx(system.tdp_w, rel=PRINTED)


def test_run_tco_cost_arithmetic():
    r = simulate("resnet18-cifar", "alveo-u250", batch=8)
    system = resolve_system("alveo-u250")
    assert r.cost.mode == "tco"
    lines = result_lines(r, system, options=CostOptions())
    tco = line(lines, "TCO:")
    price = float(re.search(r"price \$([\d,]+)", tco).group(1).replace(",", ""))
    life = float(re.search(r"= ([\d,]+) s", tco).group(1).replace(",", ""))
    per_s = price / life
    o = CostOptions()
    hw = per_s * r.latency_s
    elec = r.energy_j / J_PER_KWH * o.pue * o.usd_per_kwh
    assert hw + elec == pytest.approx(r.cost.usd, rel=1e-9)
    total = line(lines, "total = $")
    parts = [float(x) for x in re.findall(r"\$([\d.e+-]+)", total)]
    assert parts[0] + parts[1] == pytest.approx(parts[2], rel=DERIVED)
    assert parts[2] == pytest.approx(r.cost.usd, rel=PRINTED)


def test_cli_explain_prints_text_and_json_stays_json(capsys):
    argv = ["op", "matmul", "--m", "256", "--n", "512", "--k", "1024", "--arch", "tpu-v4"]
    assert main([*argv, "--explain"]) == 0
    out = capsys.readouterr().out
    assert "ridge point = peak / bandwidth" in out and "check: predicted" in out
    assert main([*argv, "--explain", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)  # one JSON document, no explanation text
    assert d["flops"] == 2 * 256 * 512 * 1024
    assert main(["run", "--workload", "mlp", "--arch", "cpu-host", "--explain", "--json"]) == 0
    assert "latency_s" in json.loads(capsys.readouterr().out)


_ARCHS = ("h100-sxm", "a100-sxm-80gb", "tpu-v4", "tpu-v5e", "alveo-u250", "cpu-host",
          "eyeriss", "systolic-32x32")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arch=st.sampled_from(_ARCHS),
       m=st.integers(1, 3000), n=st.integers(1, 3000), k=st.integers(1, 3000),
       batch=st.integers(1, 4), dtype=st.sampled_from(("bf16", "int8", "fp32")))
def test_fuzz_matmul_explanation_is_consistent(arch, m, n, k, batch, dtype):
    """Any GEMM shape on any family: the text has no nan/inf, its sum reproduces the OpCost
    latency and the predicted time never beats the roofline it prints."""
    from simulator.errors import HwsimError

    try:
        op, cost, system, lines = explain(arch, {"kind": "matmul", "m": m, "n": n, "k": k,
                                                 "batch": batch, "dtype": dtype})
    except HwsimError:  # a dtype the part cannot run: reported, not explained
        return
    text = "\n".join(lines)
    assert "nan" not in text.lower().replace("nano", "") and " inf " not in text
    assert count(line(lines, "FLOPs = 2 x")) == 2.0 * m * n * k * batch
    rf = roofline(op, cost, system.device)
    assert cost.latency_s >= rf.bound_s * (1 - 1e-9)
    assert "holds" in line(lines, "check: predicted")
    assert qty(line(lines, "predicted = "), "s")[-1] == pytest.approx(cost.latency_s,
                                                                     rel=PRINTED)


def test_systolic_attention_is_two_gemms_plus_the_softmax():
    _, cost, _, lines = explain("tpu-v4", {"kind": "attention", "batch": 8, "heads": 32,
                                           "kv_heads": 8, "head_dim": 128, "seq": 1,
                                           "context": 2048, "phase": "decode",
                                           "dtype": "bf16"})
    d = cost.details
    for name, label in (("qk", "QK^T:"), ("pv", "PV:")):
        g = d["gemms"][name]
        text = line(lines, label)
        assert f"{g['array'][0] + g['array'][1] - 2} of them fill and drain" in text
        assert count(text.replace("cycles", "FLOP")) == g["folds"] * g["cycles_per_fold"]
    soft = line(lines, "compute time = ")
    t = qty(soft, "s")
    assert t[0] == pytest.approx(d["softmax_s"], rel=PRINTED)
    assert d["compute_cycles"] / d["clock_hz"] + t[0] == pytest.approx(t[1], rel=DERIVED)
    assert t[1] == pytest.approx(cost.compute_s, rel=PRINTED)


def test_timing_section_has_its_place(monkeypatch):
    """Which timing applies (kernel, graph, stream, eager; simulator/timing.py) prints between
    the fixed costs and the sum, with the default named."""
    import simulator.explain as ex

    _, cost, system, lines = explain(*CASES["gpu-gemm"])
    i = lines.index("Which time this is")
    assert lines.index("7. Fixed costs") < i < lines.index("8. Adding up")
    assert lines[i + 1].startswith("  timing: stream")
    monkeypatch.setattr(ex, "timing_lines", lambda op, cost, device: ["kernel time"])
    op = op_from_dict(CASES["gpu-gemm"][1])
    lines = ex.op_lines(op, cost, system)
    i = lines.index("Which time this is")
    assert lines.index("7. Fixed costs") < i < lines.index("8. Adding up")
    assert lines[i + 1] == "  kernel time"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arch=st.sampled_from((*_ARCHS, "l4", "raspberry-pi-5", "hailo-8")),
       kind=st.sampled_from(("softmax", "layernorm", "gelu", "add", "embedding")),
       rows=st.integers(1, 4096), cols=st.integers(1, 4096),
       dtype=st.sampled_from(("bf16", "fp32")))
def test_fuzz_streaming_explanation_never_beats_its_bounds(arch, kind, rows, cols, dtype):
    """Streaming ops, whose bytes may come partly from an on-chip level (the producer's
    output still in the L2): the memory bound is the slower level's share, the predicted
    time is never below it, and the sum reproduces the OpCost latency."""
    from simulator.errors import HwsimError

    fields = ({"numel": rows * cols} if kind in ("gelu", "add") else
              {"tokens": rows, "vocab": 50257, "dim": cols} if kind == "embedding" else
              {"rows": rows, "cols": cols})
    try:
        op, cost, system, lines = explain(arch, {"kind": kind, "dtype": dtype, **fields})
    except HwsimError:
        return
    rf = roofline(op, cost, system.device)
    assert sum(b for _, b in rf.shares) == pytest.approx(op.min_bytes, rel=1e-12)
    assert rf.memory_bound_s == pytest.approx(
        max(b / lvl.bandwidth_Bps for lvl, b in rf.shares), rel=1e-12)
    assert cost.latency_s >= rf.bound_s * (1 - 1e-9)
    mb = qty(line(lines, "memory bound ="), "s")[-1]
    assert mb == pytest.approx(rf.memory_bound_s, rel=PRINTED)
    assert qty(line(lines, "predicted = "), "s")[-1] == pytest.approx(cost.latency_s,
                                                                     rel=PRINTED)
