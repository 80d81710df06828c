"""Scale-out training against published throughput (tests/golden/training_published.json).

Megatron-LM's Table 1 (Narayanan et al., SC'21, arXiv:2104.04473): GPT models from 1.7B to 1T
parameters on 32 to 3072 A100 GPUs. The paper reports teraFLOP/s per GPU counted with its
Eq. 3 (hardware FLOPs, recomputation included); the prediction applies the same formula to
hwsim's step time, so each check compares step time alone.

Tolerance: predicted per-GPU TFLOP/s within 35% of the published figure. hwsim is uncalibrated
and predicts every row faster than measured, most on the small models: it models attention as
one fused kernel, while the 2021 software materialised the s x s scores in HBM (softmax and
dropout, twice with recomputation). 35% holds the rows where that cost is small (39B-310B:
+25% to +32%); rows beyond it are strict xfails that give the measured error, so a fix that
brings them in shows as an XPASS. experiments/training_published has the table with the
step-time breakdown and an estimate of the materialised-attention cost.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulator.train import train
from workloads.zoo import count_params, load_config

DATA = json.loads(Path(__file__).with_name("training_published.json").read_text())
MEG = DATA["megatron_sc21"]
ROWS = {r["name"]: r for r in MEG["rows"]}
SEQ = MEG["setup"]["sequence_length"]
VOCAB = MEG["setup"]["vocabulary"]
PEAK_TF = MEG["setup"]["peak_teraflops_per_gpu"]
TOL = DATA["tolerance"]["teraflops_per_gpu_rel"]

# Measured with this tree (--attention materialized, as Megatron-LM ran in 2021): +31% (1.7B),
# +25% (3.6B), +20% (7.5B), +16% (18B), +14% (39B), +20% (76B), +14% (145B), +17% (310B)
# in per-GPU TFLOP/s (+37% to +21% before streaming kernels were costed as the kernels
# libraries run: issue 12, part 2). Rows more than 35% off are strict xfails.
XFAIL: dict[str, str] = {}
# Simulation time today: under 3 s per row up to 310B (1920 GPUs), 20 s for 530B (2520 GPUs,
# interleaved, simulated whole) and 15 s for 1T (3072 GPUs, three short pipelines
# extrapolated) on the fast path.
SKIP: dict[str, str] = {}
SLOW: set[str] = set()


def megatron_flops(batch: int, layers: int, hidden: int) -> float:
    """Narayanan et al. 2021, Eq. 3: FLOPs of one iteration with activation recomputation."""
    s, v, n, h = SEQ, VOCAB, layers, hidden
    return 96 * batch * s * n * h * h * (1 + s / (6 * h) + v / (16 * n * h))


def _row_param(name: str):
    marks = []
    if name in XFAIL:
        marks.append(pytest.mark.xfail(strict=True, reason=XFAIL[name]))
    if name in SLOW:
        marks.append(pytest.mark.slow)
    if name in SKIP:
        marks.append(pytest.mark.skip(reason=SKIP[name]))
    return pytest.param(name, marks=marks, id=name)


def test_table1_transcription_is_self_consistent():
    # percent of peak and aggregate petaFLOP/s follow from the per-GPU figure (all rounded)
    for name, row in ROWS.items():
        pub, run = row["published"], row["run_config"]
        assert abs(100 * pub["teraflops_per_gpu"] / PEAK_TF - pub["percent_of_peak"]) < 0.6, name
        agg = pub["teraflops_per_gpu"] * pub["gpus"] / 1000
        assert agg == pytest.approx(pub["aggregate_petaflops"], rel=0.01), name
        assert pub["tensor_parallel"] * pub["pipeline_parallel"] * run["data_parallel"] \
            == pub["gpus"], name
        assert pub["batch_size"] % (run["data_parallel"] * run["micro_batch"]) == 0, name


@pytest.mark.parametrize("name", sorted(ROWS))
def test_zoo_config_matches_eq2_and_table1(name):
    # hwsim's count equals the paper's Eq. 2 (plus the final LayerNorm) and rounds to the
    # printed Table 1 value
    pub = ROWS[name]["published"]
    h, n = pub["hidden_size"], pub["layers"]
    eq2 = 12 * n * h * h * (1 + 13 / (12 * h) + (VOCAB + SEQ) / (12 * n * h))
    cfg = load_config(ROWS[name]["model"])
    assert (cfg["n_embd"], cfg["n_layer"], cfg["n_head"]) == (h, n, pub["attention_heads"])
    params = count_params(cfg)
    assert params == pytest.approx(eq2, rel=1e-4)
    assert round(params / 1e9, 1) == pub["params_billion"]


@pytest.mark.parametrize("name", [_row_param(n) for n in ROWS])
def test_megatron_table1_teraflops_per_gpu(name):
    row = ROWS[name]
    pub, kw = row["published"], dict(row["hwsim"])
    v = kw.pop("virtual_stages")
    if v:  # the published run used the interleaved 1F1B schedule
        kw.update(schedule="interleaved", virtual_stages=v)
    r = train(row["model"], kw.pop("arch"), **kw)
    flops = megatron_flops(pub["batch_size"], pub["layers"], pub["hidden_size"])
    predicted = flops / r.metrics["step_time_s"] / pub["gpus"] / 1e12
    assert predicted == pytest.approx(pub["teraflops_per_gpu"], rel=TOL)


def test_palm_540b_published_figures_are_consistent():
    # PaLM Appendix B: MFU = tokens/s x (6N + 12 L H Q T) / (chips x 275 TFLOP/s) = 46.2%
    pub = DATA["palm_540b"]["published"]
    per_token = 6 * 540.35e9 + 12 * 118 * 48 * 256 * pub["sequence_length"]
    mfu = pub["tokens_per_s"] * per_token / (pub["chips"] * pub["peak_teraflops_per_chip"] * 1e12)
    assert mfu == pytest.approx(pub["mfu"], abs=0.001)
    assert pub["model_parallel_per_pod"] * pub["fsdp_data_parallel_per_pod"] \
        == pub["chips_per_pod"]


def test_palm_540b_one_pod_tokens_per_s():
    # One of PaLM's two 3072-chip pods (12-way model x 256-way fully sharded data parallel) on
    # its 12 x 16 x 16 torus slice, against the published throughput / 1.95 (the two-pod
    # speed-up PaLM reports). Measured with this tree: 115,577 tokens/s vs 122,205 (-5.4%);
    # MFU 45.6% vs 46.2% published for the two pods.
    palm = DATA["palm_540b"]
    pub, kw = palm["published"], dict(palm["hwsim"])
    r = train(pub["model"], kw.pop("arch"), **kw)
    assert r.metrics["devices"] == pub["chips_per_pod"]
    assert r.metrics["tokens_per_s"] == pytest.approx(pub["derived_one_pod_tokens_per_s"],
                                                      rel=DATA["tolerance"]["palm_tokens_per_s_rel"])
    # the recipe fits only with the activations sharded over the model axis
    assert r.metrics["memory_per_device_bytes"]["total"] < r.metrics["memory_capacity_bytes"]
