"""Published power and energy figures the power model (simulator/power) must land near.

Uncalibrated predictions; every tolerance says where it comes from. A check the model misses is
an ``xfail(strict=True)`` that keeps the target tolerance and names what the model lacks, so it
turns into a failure (XPASS) the day the model learns it.

ML.ENERGY (experiments/data/mlenergy-h100-b200, README there): Llama-3.1-8B-Instruct bf16,
vLLM continuous batching on one GPU, LM-Arena chat prompts, ~390-405 output tokens, batch held
at ``max_num_seqs``; GPU power from NVML over the steady state. Simulated with ``hwsim serve``'s
simulator: a closed loop of ``max_num_seqs`` users (``--users B --max-batch B``), chunked
prefill, the row's mean output length, and 600-token prompts. The prompt length is not
published; 600 is chosen from the measured LATENCY, not the power: the inter-token latency
grows from 7.3 ms (batch 8) to 47 ms (batch 512) while a batch-512 decode step alone takes
~24 ms, the rest being the prefill of 1.2 new requests per iteration, and 600 tokens reproduce
the measured throughput within 9% at every H100 batch size (LM-Arena conversations are
multi-turn, so prompts carry their history). Targets: average GPU power within 10% and energy
per output token within 15% (issue 15), no per-row fitting.

Timing ``graph`` (simulator/timing.py): vLLM captures CUDA graphs for its decode and mixed
batches unless ``--enforce-eager`` is set (vLLM's default, ``enforce_eager=False``; its log
reads "Capturing cudagraphs for decoding ... To run the model in eager mode, set
'enforce_eager=True'"), and the ML.ENERGY runs use vLLM's defaults: kernels replay back to back
with a graph node's gap (~1 us) instead of a launch each (4 us). At batch 8, a decode step is
~290 kernels, most of them microsecond-scale norms, activations and GEMVs, so the launches are
a fifth of the B200 step (5.5 ms with launches, 4.4 ms as a graph, against the published
median inter-token latency of 4.6 ms; H100 8.5 vs 7.4 ms against 7.3 ms).

The model's power in a serving run: idle, the busy floor while an iteration runs, and each
op's dynamic energy at FULL clock; the power limiter then holds the run's average at the limit
(simulator/power/governor.py: the limiter regulates average power over a window far longer than
an iteration, so GEMM phases above the limit and attention phases below it average out). The
per-FLOP energy of GH100 (arch_specs/gpu/h100-sxm.yaml) comes from the clock these parts hold
on full-load GEMMs at 700 W (1,500-1,830 MHz, tile-ai/TileOPs #1587, DeepGEMM #120), not
from this table.

Measured on this tree (hwsim vs published; throughput -8..+6% of the published on H100, the
batch-512/768 rows slowest, which is what moves their J/token):

=====  =======  =========  ======  ===========  ===========  ======
batch  power    published  error   J/token      published    error
=====  =======  =========  ======  ===========  ===========  ======
8      482 W    486 W      -1.0%   0.465        0.455        +2.2%
16     494 W    513 W      -3.8%   0.255        0.263        -2.9%
32     530 W    560 W      -5.3%   0.157        0.165        -5.1%
64     575 W    610 W      -5.9%   0.108        0.119        -8.7%
96     622 W    644 W      -3.4%   0.096        0.103        -6.6%
128    637 W    669 W      -4.9%   0.085        0.095        -10.5%
192    672 W    688 W      -2.3%   0.080        0.084        -4.2%
256    694 W    691 W      +0.5%   0.075        0.077        -1.8%
384    695 W    687 W      +1.3%   0.073        0.074        -1.6%
512    700 W    688 W      +1.7%   0.078        0.070        +10.8%
768    700 W    685 W      +2.2%   0.080        0.071        +12.2%
=====  =======  =========  ======  ===========  ===========  ======

B200 rows 8 and 16: 692 W vs 639 W (+8.2%), 0.395 vs 0.391 J/token (+1.2%; 1,750 tokens/s
against 1,637 published); 702 W vs 667 W (+5.2%), 0.212 vs 0.242 J/token (-12.6%; 3,314
against 2,751 tokens/s). With stream timing (a 4 us launch per kernel) B200 batch 8 ran at
1,411 tokens/s and +17% J/token: the launches of ~290 small decode kernels, which vLLM's CUDA
graphs do not pay.

B200 (arch_specs/gpu/b200.yaml, another helper's part): rows 8 and 16 only. From batch 32 the
published throughput stops following the batch (4,570 tokens/s at 128 < 5,589 at 64; inter-
token latency 26.7 ms at 128 vs 9.0 ms at 64) and power falls to 449 W: a serving-stack limit
of the published run, not hardware physics this model has.
"""

from __future__ import annotations

import csv
from functools import cache
from pathlib import Path

import pytest

from simulator.api import simulate
from simulator.arch.loader import load_arch
from simulator.power import power_model
from simulator.predict import Predictor
from simulator.serve import ServeOptions, serve
from workloads.graph import WorkloadGraph
from workloads.ops import Conv2d, MatMul

DATA = Path(__file__).resolve().parents[2] / "experiments" / "data" / "mlenergy-h100-b200" / \
    "llama3.1-8b_lm-arena-chat.csv"
PROMPT = 600  # tokens; chosen from the published latency (module docstring)
POWER_TOL, ENERGY_TOL = 0.10, 0.15  # issue 15 targets
GPU = {"H100": "h100-sxm", "B200": "b200"}


def _rows() -> list[dict[str, str]]:
    with open(DATA) as f:
        return list(csv.DictReader(f))


@cache
def _serve(arch: str, batch: int, output: int) -> dict:
    o = ServeOptions(users=batch, max_batch=batch, requests=max(3 * batch, 64),
                     prompt_len=PROMPT, output_len=output, chunked_prefill=True, seed=0)
    s = load_arch(arch)
    # vLLM's CUDA graphs (module docstring)
    return serve("llama3-8b", s, o, predictor=Predictor(s, timing="graph")).metrics


# rows outside the target today: (gpu, batch) -> what limits the model
_POWER_MISS: dict[tuple[str, int], str] = {}
_ENERGY_MISS: dict[tuple[str, int], str] = {}


def _cases(miss: dict) -> list:
    out = []
    for r in _rows():
        key = (r["gpu_model"], int(r["max_num_seqs"]))
        if key[0] == "B200" and key[1] > 16:
            continue  # see the module docstring
        marks = [pytest.mark.slow] if key[1] >= 256 else []
        if key in miss:
            marks.append(pytest.mark.xfail(strict=True, reason=miss[key]))
        out.append(pytest.param(r, id=f"{key[0]}-b{key[1]}", marks=marks))
    return out


@pytest.mark.parametrize("row", _cases(_POWER_MISS))
def test_mlenergy_serving_gpu_power(row):
    m = _serve(GPU[row["gpu_model"]], int(row["max_num_seqs"]),
               round(float(row["avg_output_len"])))
    assert m["avg_device_power_w"] == pytest.approx(float(row["avg_power_watts"]),
                                                    rel=POWER_TOL)


@pytest.mark.parametrize("row", _cases(_ENERGY_MISS))
def test_mlenergy_serving_energy_per_output_token(row):
    m = _serve(GPU[row["gpu_model"]], int(row["max_num_seqs"]),
               round(float(row["avg_output_len"])))
    # GPU energy only (NVML), as published: the device part of the simulated energy
    assert m["device_energy_per_output_token_j"] == pytest.approx(
        float(row["energy_per_token_joules"]), rel=ENERGY_TOL)


def test_mlenergy_h100_power_rises_with_batch_and_stays_under_the_cap():
    """The published shape: power grows with the batch and saturates below the 700 W TDP."""
    p = [_serve("h100-sxm", b, 400)["avg_device_power_w"] for b in (8, 32, 128)]
    assert p[0] < p[1] < p[2] <= 700


# -- H100 idle and TDP ------------------------------------------------------------------------
def test_h100_idle_and_tdp():
    """Idle: nvidia-smi reads 70-100 W for an idle H100 SXM in low P-states and 140-145 W at P0
    with a model loaded (gpu-burn issue #114); the model's idle (90 W) and its P0-with-nothing-
    running must sit in that 70-145 W band. TDP 700 W (datasheet): a large bf16 GEMM runs at the
    cap, never above it (peak power <= 700 W, and within 5% of it)."""
    s = load_arch("h100-sxm")
    pm = power_model(s.device)
    assert 70 <= pm.idle_w <= 145
    assert pm.tdp_w == 700 and pm.limit_w == 700
    g = WorkloadGraph("gemm", meta={"batch": 1, "samples": 1})
    g.add_op("mm", MatMul(m=16384, n=16384, k=8192, dtype="bf16"))
    r = simulate(g, s)
    assert r.peak_power_w <= 700 * (1 + 1e-6)
    assert r.device_power_w == pytest.approx(700, rel=0.05)
    idle = simulate("gpt2", "dgx-h100", batch=1, seq=32)  # GPUs 1-7 idle
    assert idle.per_device[7].avg_power_w == pytest.approx(pm.idle_w)


def test_a100_gemm_power_at_the_cap():
    """A100 SXM runs large cuBLAS GEMMs at its 400 W power limit (datasheet TDP; the clock
    drops below the 1.41 GHz boost under such loads): the model's 8192^3 bf16 GEMM draws within
    5% of 400 W and never more than the cap."""
    g = WorkloadGraph("gemm", meta={"batch": 1, "samples": 1})
    g.add_op("mm", MatMul(m=8192, n=8192, k=8192, dtype="bf16"))
    r = simulate(g, "a100-sxm-80gb")
    assert r.device_power_w == pytest.approx(400, rel=0.05)
    assert r.peak_power_w <= 400 * (1 + 1e-6)


def test_tpu_v4_performance_per_watt():
    """TPU v4 (Google Cloud TPU v4 docs; Jouppi et al., ISCA 2023): 275 TFLOP/s bf16 peak,
    measured min/mean/max chip power 90/170/192 W, so 1.43 TFLOP/s/W at peak and max power.
    A large bf16 GEMM reaches ~87% of peak in the systolic model: it must land at 1.0-1.5
    TFLOP/s/W and a bf16 transformer prefill within 15% of the 170 W measured mean."""
    g = WorkloadGraph("gemm", meta={"batch": 1, "samples": 1})
    g.add_op("mm", MatMul(m=8192, n=8192, k=8192, dtype="bf16"))
    r = simulate(g, "tpu-v4")
    tf_per_w = r.flops / r.latency_s / r.device_power_w / 1e12
    assert 1.0 <= tf_per_w <= 1.5, tf_per_w
    p = simulate("gpt2", "tpu-v4", phase="prefill", batch=32, seq=1024)
    assert p.device_power_w == pytest.approx(170, rel=0.15), p.device_power_w


def test_eyeriss_alexnet_conv_chip_power():
    """Eyeriss (Chen et al., ISSCC 2016 / JSSC 2017): 278 mW on the AlexNet conv layers at
    200 MHz, batch 4. 25%: the mapper runs row-stationary as weight-stationary."""
    g = WorkloadGraph("alexnet-conv", meta={"batch": 4, "samples": 4})
    prev: list[str] = []
    for name, kw in [("conv1", dict(c=3, h=227, w=227, k=96, r=11, s=11, stride=4)),
                     ("conv2", dict(c=96, h=27, w=27, k=256, r=5, s=5, pad=2, groups=2)),
                     ("conv3", dict(c=256, h=13, w=13, k=384, r=3, s=3, pad=1)),
                     ("conv4", dict(c=384, h=13, w=13, k=384, r=3, s=3, pad=1, groups=2)),
                     ("conv5", dict(c=384, h=13, w=13, k=256, r=3, s=3, pad=1, groups=2))]:
        prev = [g.add_op(name, Conv2d(n=4, dtype="fp16", **kw), inputs=prev)]
    r = simulate(g, "eyeriss")
    assert r.device_power_w == pytest.approx(0.278, rel=0.25), r.device_power_w


@pytest.mark.parametrize("arch", ["alveo-u250", "alveo-u280"])
def test_alveo_board_power_under_load(arch):
    """Alveo U250/U280 (Xilinx DS962 data sheet): 225 W maximum board power, 75 W from the
    PCIe slot plus the aux connector. Under a full int8 ResNet-50 design the board draws more
    than idle plus a third of the way to the maximum (the fabric, DDR/HBM controllers and DSPs
    all toggling) and stays under 60% of the maximum (hwsim's designs use ~9-18k DSPs at
    300 MHz; DS962's maximum covers full-chip worst-case designs). No measured per-design board
    power was found to check against more tightly."""
    d = load_arch(arch).device
    r = simulate("resnet50", arch, batch=16, dtype="int8")
    lo = d.power.static_w + (d.power.tdp_w - d.power.static_w) / 3
    assert lo < r.device_power_w < 0.6 * d.power.tdp_w, r.device_power_w
