"""Edge parts and edge models against published figures (issue 16, parts 4 and 5).

Uncalibrated predictions: every tolerance says why it is that wide. A check the model misses by
far is an ``xfail(strict=True)`` whose reason names what limits the model; it keeps the real
tolerance, so it turns into a failure (XPASS) the day the model learns the missing mechanism and
the tolerance can be enforced.

Measured errors (prediction vs published, on the tree of this change; the Orin rows move with
simulator/mapping/gpu.py and gpu_kernels.py, which were being edited concurrently: ResNet-50
SingleStream read 0.600 ms and BERT SingleStream 6.19 ms the same evening). The Orin
TensorRT checks run under ``timing="graph"`` (simulator/timing.py): a TensorRT engine
enqueues pre-built kernels back to back, 1 us apart (params.graph_launch_gap), not with the
4 us eager launch of the default ``stream`` timing (there, before this change: 0.784 ms
+22.4%, 3,953/s -16.6%, 6.94 ms +21.7%):

========================================  ==========  ============  ======  =========
check                                     hwsim       published     error   tolerance
========================================  ==========  ============  ======  =========
AGX Orin ResNet-50 SingleStream p90       0.628 ms    0.640 ms      -1.9%   15% (graph)
AGX Orin ResNet-50 Offline, GPU share     4,042 /s    4,739 /s      -14.7%  20% (graph)
AGX Orin BERT-99 SingleStream p90 (260)   5.75 ms     5.70 ms       +0.9%   20% (graph)
AGX Orin BERT-99 Offline, SQuAD packed    471 /s      553.7 /s      -15.0%  20% (graph)
H100 SXM BERT-99 Offline (control)        9,390 /s    9,102 /s      +3.2%   15% (graph)
AGX Orin cuBLAS bf16 GEMM 8192^3          28.9 TF/s   33.4-34.1     -13.5%  xfail (10%)
Coral USB MobileNet v2 latency            2.07 ms     2.6 ms        -20.5%  25%
Coral USB ResNet-50 V1 (299x299)          52.2 ms     49 ms         +6.5%   20%
Coral 4 TOPS at 2 W (spec arithmetic)     1.96 W      2 W           -2.0%   10%
Hailo-8 ResNet-50, batch 8                1,781 /s    1,394 /s      +27.8%  35%
========================================  ==========  ============  ======  =========
"""

from __future__ import annotations

import pytest

from simulator import load_arch, predict_op, simulate
from workloads.errors import WorkloadError
from workloads.ops import Attention, MatMul
from workloads.seqlens import resolve_seq_lens
from workloads.transforms.walk import ops_with_counts
from workloads.zoo import build, count_params, load_config

ORIN = "jetson-agx-orin-64gb"

# MLPerf Inference v3.1, closed, edge, NVIDIA "Orin_TRT" (Jetson AGX Orin 64G developer kit,
# MAXN, JetPack 5.1.1, TensorRT 8.5.2), mlperf_log_summary.txt of each run:
# https://github.com/mlcommons/inference_results_v3.1/tree/main/closed/NVIDIA/results/Orin_TRT
MLPERF_RN50_SS_P90_S = 640258e-9      # resnet50/SingleStream: 90th percentile latency (ns)
MLPERF_RN50_OFFLINE = 6423.63         # resnet50/Offline: samples per second (GPU + 2 DLAs)
MLPERF_BERT_SS_P90_S = 5704810e-9     # bert-99/SingleStream: 90th percentile latency (ns)
MLPERF_BERT_OFFLINE = 553.693         # bert-99/Offline: samples per second (GPU only)
# NVIDIA's own v3.0 Orin ResNet-50 Offline config: "GPU-only QPS" 4,500, "DLA-only (1x)" 600,
# "GPU + 2 DLA" 6,100 (closed/NVIDIA/configs/resnet50/Offline/__init__.py, class Orin):
# https://github.com/mlcommons/inference_results_v3.0/blob/main/closed/NVIDIA/configs/resnet50/Offline/__init__.py
ORIN_GPU_SHARE = 4500 / 6100


def _err(predicted: float, published: float) -> float:
    return predicted / published - 1


#: MLPerf's TensorRT engines enqueue pre-built kernels from one stream, back to back: the
#: graph timing of simulator/timing.py (params.graph_launch_gap, 1 us on a GPU, from NVIDIA's
#: CUDA Graphs blog), not the default stream timing's 4 us eager launch per kernel. Orin runs
#: at batch 1 are 40-45% fixed per-kernel cost, so which launch applies decides these checks.
_TRT_LAUNCH = "graph"


# -- Jetson AGX Orin: MLPerf Inference edge --------------------------------------------------
def test_orin_resnet50_singlestream_near_mlperf():
    # 15%: batch 1 is ~56 kernels of a few us each, so the per-kernel gap and fill estimates
    # (1 us + 0.9 us, not fitted to Orin) are about a quarter of the latency.
    r = simulate("resnet50", ORIN, batch=1, dtype="int8", timing=_TRT_LAUNCH)
    assert r.meta["timing"]["mode"] == "graph"
    assert r.latency_s == pytest.approx(MLPERF_RN50_SS_P90_S, rel=0.15), _err(
        r.latency_s, MLPERF_RN50_SS_P90_S)


def test_orin_resnet50_offline_near_the_gpu_share_of_mlperf():
    # The spec models the GPU only; the published Offline run uses the GPU and both DLAs. The
    # comparison is against the GPU's share in NVIDIA's own planning figures (4,500 of 6,100),
    # itself an estimate. 20%: as the A100 Offline check in test_published.py, at TensorRT's
    # batch of 256.
    r = simulate("resnet50", ORIN, batch=256, dtype="int8", timing=_TRT_LAUNCH)
    rate = r.samples / r.latency_s
    assert rate < MLPERF_RN50_OFFLINE  # the DLAs' share is missing, never more than published
    assert rate == pytest.approx(MLPERF_RN50_OFFLINE * ORIN_GPU_SHARE, rel=0.20), _err(
        rate, MLPERF_RN50_OFFLINE * ORIN_GPU_SHARE)


def test_orin_bert_singlestream_near_mlperf_at_the_p90_length():
    # BERT-Large on SQuAD v1.1 with max_seq_len 384; NVIDIA's harness runs each sample at its
    # own length (latencies 3.3 to 6.5 ms in the log). A sample's latency rises with its
    # length, so the p90 latency is that of the p90-length sample: 260 tokens in SQuAD v1.1's
    # published length histogram (workloads/data/squad-v1.1.txt). 20%: the int8 GEMM rate on
    # Orin is an estimate (see the Offline check below).
    p90 = resolve_seq_lens("squad-v1.1").percentile(0.9)
    assert p90 == 260
    r = simulate("bert-large", ORIN, batch=1, seq=p90, dtype="int8", timing=_TRT_LAUNCH)
    assert r.latency_s == pytest.approx(MLPERF_BERT_SS_P90_S, rel=0.20), _err(
        r.latency_s, MLPERF_BERT_SS_P90_S)


def test_orin_bert_offline_near_mlperf():
    # NVIDIA's BERT harness removes the padding: each SQuAD v1.1 sample runs at its own length
    # (TensorRT's variable-length BERT plugins), so the batch is packed: linear layers on the
    # sum of the lengths, attention per sample. The lengths are SQuAD v1.1's published
    # histogram at max_seq_len 384 / doc stride 128 (workloads/data/squad-v1.1.txt: mean 172
    # tokens), 256 of them at evenly spaced quantiles. The engine's int8 LayerNorm is
    # TensorRT's skip-LayerNorm plugin, which loads 8 elements per access (NVIDIA/TensorRT
    # plugin/skipLayerNormPlugin/skipLayerNormKernel.cu, computeSkipLayerNormDQQ:
    # "VPT = 16 / sizeof(__half)"); hwsim's default norm kernel loads one (PyTorch/vLLM).
    # Padded to 384 tokens it reads 193/s (-65%); packed with scalar norm loads 393/s (-29%).
    # Dense: NVIDIA's closed-division engine runs the reference weights quantized to int8
    # (the closed division allows no other weight change, mlcommons/inference
    # Submission_Guidelines.md, so no 2:4 sparsity); GPU only, no DLA (the system description
    # uses the DLAs for resnet50 and retinanet only); batch 256 (NVIDIA's 2023 MLPerf config,
    # closed/NVIDIA/configs/bert/Offline/__init__.py, class Orin: gpu_batch_size 256).
    # The weights stay in the L2: BERT-Large's 3-4 MiB int8 weight matrices are about the
    # 4 MiB L2, and the GEMM's blocking keeps one operand's block resident while the other
    # streams (Goto and van de Geijn's GEBP, simulator/mapping/gpu.py _rereads); keeping a
    # block of both re-read the weights from LPDDR5 44-87 times per GEMM (429/s, -22.5%).
    # Left: the overlap knee the bf16 GEMM check below names (max(c, m) would read -11.7%),
    # and TensorRT's fused embedding+LayerNorm plugin (6 kernels here, 14 ms of 597).
    # 20%: the GPU's int8 efficiency on Orin (0.75, the A100's) is an estimate, not a
    # measurement.
    r = simulate("bert-large", ORIN, batch=256, seq_lens="squad-v1.1", dtype="int8",
                 timing=_TRT_LAUNCH, overrides=("params.norm_vector=8",))
    rate = r.samples / r.latency_s
    assert r.meta["seq_lens"] == "squad-v1.1" and r.tokens < 0.5 * 256 * 384  # no padding
    assert rate == pytest.approx(MLPERF_BERT_OFFLINE, rel=0.20), _err(rate, MLPERF_BERT_OFFLINE)


#: cuBLAS bf16 GEMMs (FP32 accumulate, bf16 out, 2048^3, 4096^3 and 8192^3, warmed) on a Jetson
#: AGX Orin 64GB developer kit in MAXN: 33.4-34.1 TFLOP/s across the three sizes (a user's
#: measurement: infinigence/ApxInf doc/jetson-roofline.md, scripts/bench_device_roofline.cu,
#: https://github.com/infinigence/ApxInf/pull/74; the same run reads 152.8 GB/s, copies
#: 183.3 GB/s and reports 164 KB of shared memory per SM).
ORIN_BF16_GEMM_TFLOPS = (33.4, 34.1)


@pytest.mark.xfail(strict=True, reason=(
    "hwsim 27.4 / 28.0 / 28.9 TFLOP/s for 2048^3 / 4096^3 / 8192^3 vs the measured 33.4-34.1. "
    "At the spec's bf16 0.80 (the A100's and H100's, which the H100's cuBLAS measurements "
    "support) the tensor work alone runs 34 TFLOP/s, so the measurement leaves at most ~2% "
    "for the DRAM stalls, where the gpu mapper's overlap of math c and data m "
    "(simulator/mapping/gpu.py _overlap: c + m exp(-c/m), a stage waiting on its own data) "
    "costs 12-20% at Orin's m/c ~ 0.6 (8192^3: 3.4 GB from LPDDR5, A read 8x and B 16x by "
    "4x4 wave blocks of 128x256 tiles). A plain max(c, m) gives 30.3 / 32.2 / 33.1: the "
    "stages in flight (3 of 48 KiB per SM here) hide most of the stall the formula charges. The "
    "same knee is half of what separates the BERT Offline check above from MLPerf. The S-stage "
    "overlap (a stage's Erlang-distributed data hidden by the math of the S = stages - 1 "
    "stages in flight; gpu.py docstring) reads 29.4 / 29.7 / 30.6, its max-floored "
    "exponential variant 29.9 / 31.7 / 32.7: under 90% of 33.4 (30.1) at 2048^3, the first "
    "also at 4096^3, and "
    "both cost the A100 replay (7.3% -> 8.3-9.4% MAPE): left out."))
def test_orin_bf16_gemm_near_measured():
    # 10%: the measurement spans 2%; the rest is the bf16 compute_efficiency (an A100/H100
    # figure on the same SM generation) and the per-wave fill and epilogue estimates.
    lo, hi = ORIN_BF16_GEMM_TFLOPS
    for n in (2048, 4096, 8192):
        c = predict_op(MatMul(m=n, n=n, k=n, dtype="bf16"), ORIN)
        rate = 2 * n**3 / c.latency_s / 1e12
        assert lo * 0.90 <= rate <= hi * 1.10, (n, rate)


#: The same BERT-99 Offline run on a part whose memory system does not bind: MLPerf Inference
#: v3.1 closed, NVIDIA DGX-H100 "H100-SXM-80GBx1_TRT", bert-99/Offline mlperf_log_summary.txt
#: (https://github.com/mlcommons/inference_results_v3.1/tree/main/closed/NVIDIA/results),
#: batch 1280 (NVIDIA's 2023 config, closed/NVIDIA/configs/bert/Offline/__init__.py, class
#: H100_SXM_80GBx1).
MLPERF_H100_BERT_OFFLINE = 9102.26


def test_bert_offline_control_on_h100_isolates_the_orin_gap():
    # The graph the Orin check runs (packed SQuAD v1.1, dense int8, TensorRT's 8-wide
    # LayerNorm loads) predicts the H100 within a few percent (+3.2%), so an Orin gap is the
    # Orin's memory system or its GEMM rate, not the workload (it was -22.5% while the GEMM
    # blocking re-read BERT's weights from LPDDR5; now -15.0%). 15%: the H100's int8 compute_efficiency (0.70) is an estimate (its header).
    r = simulate("bert-large", "h100-sxm", batch=1280, seq_lens="squad-v1.1", dtype="int8",
                 timing=_TRT_LAUNCH, overrides=("params.norm_vector=8",))
    rate = r.samples / r.latency_s
    assert rate == pytest.approx(MLPERF_H100_BERT_OFFLINE, rel=0.15), _err(
        rate, MLPERF_H100_BERT_OFFLINE)


def test_orin_sm_efficiencies_are_the_a100s():
    # The Orin specs take the A100 80GB's per-SM efficiencies (same SM generation, sm_87 vs
    # sm_80, the same tensor-core rate per SM; see the spec headers): the GEMM efficiency per
    # class and FlashAttention-2's 73% on the A100 (Dao 2023). Orin is run dense in every
    # check here: the closed division's reference weights carry no 2:4 sparsity.
    a100 = load_arch("a100-sxm-80gb").device.params
    for name in (ORIN, f"{ORIN}-15w", f"{ORIN}-30w", f"{ORIN}-50w", "jetson-orin-nano-8gb"):
        p = load_arch(name).device.params
        assert p["attention_efficiency"] == a100["attention_efficiency"] == 0.73, name
        for cls in ("bf16", "fp16", "tf32", "int8", "fp32"):
            assert p["compute_efficiency"][cls] == a100["compute_efficiency"][cls], (name, cls)
        d = load_arch(name).device
        sm_rate = d.peak("int8")[0] / p["sm_count"]
        clock = d.units("matrix")[0].clock_hz
        assert sm_rate / clock == pytest.approx(4 * 1024)  # 4 TCs x 1024 int8 ops per cycle


def test_orin_bert_runs_on_the_gpu_in_int8_with_fused_attention():
    g = build("bert-large", seq=384, dtype="int8")
    (att, n), = [(op, k) for op, k in ops_with_counts(g) if isinstance(op, Attention)]
    assert (att.seq, n) == (384, 24) and not att.causal


# -- Coral Edge TPU ------------------------------------------------------------------------------
# Coral, "Edge TPU performance benchmarks", Table 1, time per inference, "Desktop CPU + USB
# Accelerator (USB 3.0) with Edge TPU" column (https://coral.ai/docs/edgetpu/benchmarks/):
# MobileNet v2 (224x224) 2.6 ms; ResNet-50 V1 (299x299) 49 ms. The Edge TPU compiler caches the
# parameters in the 8 MB SRAM, so MobileNet v2 (3.5 MB) runs from SRAM with only its input image
# crossing USB, and ResNet-50 (25.6 MB) reads the parameters beyond the cache over USB at every
# inference (simulator/mapping/residency.py).
CORAL_MOBILENET_V2_S = 2.6e-3
CORAL_RESNET50_299_S = 49e-3


def test_coral_mobilenet_v2_latency_near_published():
    r = simulate("mobilenet-v2", "coral-edge-tpu")
    # 25%: Coral's own figures for this model span 2.3-2.6 ms across hosts and table versions,
    # and the array shape (64 x 64) and clock behind the published 4 TOPS are estimates
    assert r.latency_s == pytest.approx(CORAL_MOBILENET_V2_S, rel=0.25), _err(
        r.latency_s, CORAL_MOBILENET_V2_S)
    # only the input image and the logits cross USB: every parameter and activation stays on
    # chip (224 x 224 x 3 int8 in, 1000 int8 out)
    assert r.to_dataframe().dram_bytes.sum() == pytest.approx(224 * 224 * 3 + 1000, rel=1e-9)


def test_coral_resnet50_is_usb_bound_near_published():
    r = simulate("resnet50", "coral-edge-tpu", image_size=299)
    # 20%: USB-bound (80% of the 25.6 MB of weights cross USB at every inference), so the
    # error is the achievable USB bulk rate, an estimate (0.4 GB/s of 0.625)
    assert r.latency_s == pytest.approx(CORAL_RESNET50_299_S, rel=0.20), _err(
        r.latency_s, CORAL_RESNET50_299_S)
    res = r.meta["residency"]
    assert 0.7 < res["offchip"][1] < 0.9 and res["offchip"][0] == 0.0


def test_coral_4_tops_at_2_watts():
    """Coral: "4 trillion operations per second (TOPS), using 0.5 watts for each TOPS". The peak
    is derived from the spec's array and clock; the power is static plus the int8 op energy at
    that peak. The spec's datapath_overhead is SET from this 2 W (see its header), so the power
    half is arithmetic on that setting, not a validation of the energy model; 10% covers the
    rounding of the published figures."""
    d = load_arch("coral-edge-tpu").device
    peak, cls = d.peak("int8")
    assert cls == "int8" and peak == pytest.approx(4e12, rel=0.01)
    watts = d.power.static_w + d.energy.per_flop("int8") * peak
    assert watts == pytest.approx(2.0, rel=0.10), watts
    assert d.power.tdp_w == 2.0


# -- Hailo-8 -------------------------------------------------------------------------------------
# Hailo Model Zoo, Hailo-8 classification (Dataflow Compiler v3.27.0): resnet_v1_50, 1,394 FPS at
# batch 1 and at batch 8: https://github.com/hailo-ai/hailo_model_zoo/blob/
# 3385736348fe910608d924c80864e777e0b5ee21/docs/public_models/HAILO8/HAILO8_classification.rst
HAILO_RESNET50_FPS = 1394


def test_hailo8_resnet50_throughput_near_published():
    # Measured +28%. 35% because: hwsim's ResNet-50 is v1.5 (4.09 GMAC) where Hailo's is TF-slim
    # v1 (6.98 G OPS = 3.49 GMAC, 17% less work); the array structure, clock and on-chip
    # bandwidth are estimates (Hailo publishes only the 26 TOPS); and the mapper runs layers one
    # after another on all arrays, while Hailo pins layers to clusters in a pipeline whose
    # slowest stage sets the rate (Hailo's 1,394 FPS is 9.7 of its 26 TOPS). Batch 8: a stream
    # of images, as Hailo's pipelined batch-1 and batch-8 figures (equal) are.
    r = simulate("resnet50", "hailo-8", batch=8)
    rate = r.samples / r.latency_s
    assert rate == pytest.approx(HAILO_RESNET50_FPS, rel=0.35), _err(rate, HAILO_RESNET50_FPS)


# -- edge models: published parameter and FLOP counts -----------------------------------------
#: model -> (MAC tolerance, why). Parameters are exact counts of the reference code (torchvision,
#: Ultralytics): they must match exactly.
CNNS = {
    "mobilenet-v2": 0.02,        # paper "300M" (2-3 significant figures): ours +0.3%
    "mobilenet-v3-large": 0.02,  # paper "219M": ours -1.1% (the paper's count includes the
    #                              hard-swish and SE scaling multiplies, ours only MACs)
    "efficientnet-b0": 0.02,     # paper "0.39B": ours -1.1% (same convention difference)
    "yolov8n": 0.02,             # docs "8.7 GFLOPs" = 2 x MACs (thop, fused BN): ours +0.5%
}


@pytest.mark.parametrize("name", sorted(CNNS))
def test_edge_cnn_params_and_macs_match_published(name):
    cfg = load_config(name)
    assert count_params(cfg) == cfg["published_params"]
    g = build(name)
    assert g.params() == cfg["published_params"]
    assert g.flops().matrix / 2 == pytest.approx(cfg["published_macs"], rel=CNNS[name])
    assert g.meta["image_size"] == cfg["image_size"]


def test_yolov8n_shapes_follow_the_ultralytics_scales():
    from workloads.importers.hf_config import parse_config
    from workloads.zoo.cnn import yolo_widths

    spec = parse_config(load_config("yolov8n"))
    assert yolo_widths(spec) == {64: 16, 128: 32, 256: 64, 512: 128, 1024: 256}
    g = build("yolov8n", batch=2)
    # 80x80 + 40x40 + 20x20 = 8,400 anchors, 80 classes
    sig = g.g.nodes["detect.sigmoid"]["item"]
    assert sig.numel == 2 * 80 * 8400
    with pytest.raises(WorkloadError, match="multiple of 32"):
        build("yolov8n", image_size=600)
    assert build("yolov8n", image_size=320).flops().matrix == pytest.approx(
        g.flops().matrix / 2 / 4, rel=0.01)  # a quarter of the pixels, batch 1 of 2


@pytest.mark.parametrize("name, published, exact", [
    ("llama3.2-1b", 1.23e9, 1_235_814_400),   # model card "1B (1.23B)"
    ("llama3.2-3b", 3.21e9, 3_212_749_824),   # model card "3B (3.21B)"
])
def test_llama32_params_and_flops(name, published, exact):
    # Meta rounds to 3 significant figures ("1.23B" is 1.2358B truncated): 1% tolerance, as
    # test_zoo; the exact count is the HF checkpoint's.
    cfg = load_config(name)
    params = count_params(cfg)
    assert params == exact and params == pytest.approx(published, rel=0.01)
    # Meta publishes no FLOP count: the check is the standard 2 x (non-embedding params) per
    # token plus attention and the tied LM head on the last token, as test_zoo does.
    batch, seq = 1, 512
    d, layers, vocab = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
    body = params - vocab * d                       # the embedding is shared with the head
    attention = 4 * batch * cfg["num_attention_heads"] * cfg["head_dim"] * (
        seq * (seq + 1) / 2) * layers               # QK^T and PV, causal
    expected = 2 * body * batch * seq + attention + 2 * batch * vocab * d
    g = build(name, phase="prefill", batch=batch, seq=seq)
    assert g.flops().matrix == pytest.approx(expected, rel=0.005)
    assert g.meta["tied_params"] == vocab * d
    # decode: the KV cache per token is 2 x layers x kv_heads x head_dim x 2 bytes
    dec = build(name, phase="decode", batch=1, context=1024)
    per_token = 2 * layers * cfg["num_key_value_heads"] * cfg["head_dim"] * 2
    assert dec.meta["kv_cache_bytes"] == per_token * 1025
