"""Profiler traces and per-op CSV profiles in: kernel classes by name, kernels matched to ops
through the trace's ids, the ops built from the recorded shapes, Vidur CSVs read as the golden
replay reads them, and calibration of kernel-time parameters from such data.

The Kineto fixture (``tests/fixtures/kineto_llama2_7b_tp2_layer.json``) is one Llama-2 7B layer
at tensor parallel 2, 512 tokens, fp16, on an A100 80GB, in the schema torch.profiler writes
(``record_shapes=True``): cpu_op / cuda_runtime / kernel events linked by ``External id`` and
``correlation``, vLLM and cuBLAS/CUTLASS kernel names. Its kernel durations are the Vidur A100
medians for that layer (``experiments/data/vidur-a100/llama2-7b_mlp.csv``, tp 2, 512 tokens) and
the NCCL 2-GPU 4 MiB all-reduce (``dgx_all_reduce.csv``); the flash-attention kernel (21.3 us) is
an estimate (Vidur profiles attention separately).
"""

from __future__ import annotations

import copy
import csv
import json
import statistics
from pathlib import Path

import pytest

from simulator.api import predict_op
from simulator.errors import HwsimError
from simulator.mapping.gpu import kernel_time
from simulator.validate.calibrate import fit, split_by_shape
from simulator.validate.compare import compare, record_op
from simulator.validate.dataset import SCHEMA, Dataset, Measurement, shape_key
from simulator.validate.traces import (
    kernel_class,
    load_measurements,
    read_kineto,
    read_profile_csv,
)

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "kineto_llama2_7b_tp2_layer.json"
VIDUR = ROOT / "experiments" / "data" / "vidur-a100"


@pytest.mark.parametrize("name,cls", [
    ("sm80_xmma_gemm_f16f16_f16f32_f32_tn_n_tilesize128x128x32_stage4_warpsize2x2x1_tensor16x8x16"
     "_kernel", "matmul"),
    ("ampere_fp16_s16816gemm_fp16_128x128_ldg8_f2f_stages_32x5_tn", "matmul"),
    ("ampere_bf16_s1688gemm_bf16_64x64_sliced1x2_ldg8_f2f_tn", "matmul"),
    ("cutlass_80_tensorop_f16_s16816gemm_f16_256x128_32x3_tn_align8", "matmul"),
    ("void gemv2T_kernel_val<int, int, __half, __half, float, 128, 16, 4, 4, false, false>(...)",
     "matmul"),
    ("void cublasLt::splitKreduce_kernel<32, 16, int, float, __half, float>(...)", "matmul"),
    ("sm90_xmma_gemm_bf16bf16_bf16f32_f32_tn_n_tilesize128x256x64_warpgroupsize2x1x1_wgmma", "matmul"),
    ("void vllm::rms_norm_kernel<c10::Half>(c10::Half*, c10::Half const*, ...)", "norm"),
    ("void at::native::(anonymous namespace)::vectorized_layer_norm_kernel<c10::Half, float>",
     "norm"),
    ("void at::native::vectorized_elementwise_kernel<4, at::native::CUDAFunctor_add<c10::Half>>",
     "elementwise"),
    ("void at::native::unrolled_elementwise_kernel<at::native::direct_copy_kernel_cuda>", "elementwise"),
    ("void vllm::act_and_mul_kernel<c10::Half, &vllm::silu_kernel<c10::Half>, true>", "elementwise"),
    ("void vllm::rotary_embedding_kernel<c10::Half, true>(long const*, ...)", "elementwise"),
    ("void at::native::(anonymous namespace)::indexSelectLargeIndex<c10::Half, long>", "embedding"),
    ("ncclKernel_AllReduce_RING_LL_Sum_half(ncclDevComm*, unsigned long, ncclWork*)", "allreduce"),
    ("ncclDevKernel_AllGather_RING_LL(ncclDevComm*, unsigned long, ncclWork*)", "allgather"),
    ("void pytorch_flash::flash_fwd_kernel<Flash_fwd_kernel_traits<128, 128, 32, 4>>", "attention"),
    ("fmha_cutlassF_f16_aligned_64x64_rf_sm80(PyTorchMemEffAttention::AttentionKernel)",
     "attention"),  # a CUTLASS kernel, but attention: attention is matched before GEMM
    ("void cunn_SoftMaxForward<4, c10::Half, float, c10::Half>", "softmax"),
    ("Memcpy DtoD (Device -> Device)", "other"),
])
def test_kernel_classes_by_name(name, cls):
    assert kernel_class(name) == cls


@pytest.fixture(scope="module")
def trace():
    return read_kineto(FIXTURE)


def test_fixture_kernels_become_ops_with_their_shapes(trace):
    recs, meta = trace
    by = {(r.group, r.op.get("n"), r.op.get("k")): r for r in recs}
    qkv = by[("aten::mm", 6144, 4096)]              # fused QKV at tp 2: (32 + 2 x 32)/2 x 128
    assert qkv.op == {"kind": "matmul", "m": 512, "n": 6144, "k": 4096, "weight": True,
                      "dtype": "fp16"}
    assert qkv.time_s == pytest.approx(128.5e-6)   # the kernel's dur, us -> s
    assert qkv.extra["kernels"] == ["ampere_fp16_s16816gemm_fp16_128x128_ldg8_f2f_stages_32x5_tn"]
    groups = sorted(r.group for r in recs)
    assert groups == sorted(["_C::rms_norm", "aten::mm", "aten::mm", "aten::mm", "aten::mm",
                             "_C::rotary_embedding", "aten::_scaled_dot_product_flash_attention",
                             "record_param_comms", "aten::add", "_C::silu_and_mul"])
    norm = next(r for r in recs if r.kind == "norm")
    assert norm.reps == 2 and norm.time_s == pytest.approx(11.5e-6)   # median of 11.0, 12.0
    assert norm.op == {"kind": "norm", "norm": "rmsnorm", "rows": 512, "cols": 4096,
                       "dtype": "fp16"}
    ar = next(r for r in recs if r.kind == "collective")
    assert ar.op["bytes"] == 2097152 * 2 and ar.op["devices"] == 2     # 4 MiB of fp16, 2 GPUs
    assert ar.time_s == pytest.approx(63.6e-6)
    act = next(r for r in recs if r.group == "_C::silu_and_mul")
    assert act.op["numel"] == 512 * 5504           # the output: ffn 11008 / tp 2 per token
    att = next(r for r in recs if r.kind == "attention")
    assert (att.op["heads"], att.op["seq"], att.op["head_dim"]) == (16, 512, 128)
    assert meta["device"]["name"] == "NVIDIA A100-SXM4-80GB"
    assert meta["kernels"]["matmul"]["count"] == 4
    assert meta["kernels"]["allreduce"]["total_s"] == pytest.approx(127.2e-6)


def test_an_unlinked_kernel_is_listed_not_dropped(trace):
    _, meta = trace
    assert len(meta["skipped"]) == 1
    s = meta["skipped"][0]
    assert "FillFunctor" in s["kernel"] and s["reason"].startswith("no CPU op linked")


def _edit(tmp_path: Path, fn) -> Path:
    doc = json.loads(FIXTURE.read_text())
    fn(doc)
    out = tmp_path / "edited.json"
    out.write_text(json.dumps(doc))
    return out


def test_kernels_link_through_the_runtime_correlation(tmp_path):
    """Older Kineto versions put no External id on the kernel: the launch's correlation."""
    def strip(doc):
        for ev in doc["traceEvents"]:
            if ev.get("cat") == "kernel":
                ev["args"].pop("External id", None)
    recs, meta = read_kineto(_edit(tmp_path, strip))
    assert len(recs) == 10 and len(meta["skipped"]) == 1


def test_kernels_link_by_the_op_ranges_without_ids(tmp_path):
    """No External id anywhere on the GPU side (kernel or launch): the launch's time on its
    thread falls inside the innermost CPU op's range (aten::mm inside aten::matmul inside
    aten::linear), which is the op matched."""
    def strip(doc):
        for ev in doc["traceEvents"]:
            if ev.get("cat") in ("kernel", "cuda_runtime"):
                ev["args"].pop("External id", None)
    recs, meta = read_kineto(_edit(tmp_path, strip))
    assert len(recs) == 10 and len(meta["skipped"]) == 1
    assert sorted(r.group for r in recs if r.kind == "matmul") == ["aten::mm"] * 4


def test_a_kernel_of_another_class_under_an_op_is_skipped(tmp_path):
    def swap(doc):
        for ev in doc["traceEvents"]:
            if ev.get("cat") == "kernel" and "rms_norm" in ev["name"]:
                ev["name"] = "void flash_fwd_kernel<...>"
    recs, meta = read_kineto(_edit(tmp_path, swap))
    assert not any(r.kind == "norm" for r in recs)
    assert sum("kernel class attention under a norm op" in s["reason"]
               for s in meta["skipped"]) == 2


def test_without_shapes_nothing_is_matched_and_the_error_says_how_to_record(tmp_path):
    def drop(doc):
        for ev in doc["traceEvents"]:
            ev.get("args", {}).pop("Input Dims", None)
            if ev.get("name") == "record_param_comms":
                ev["args"].pop("Group size")
    p = _edit(tmp_path, drop)
    with pytest.raises(HwsimError, match="record_shapes=True"):
        load_measurements([p])


def test_compare_on_the_trace_is_kernel_time(trace):
    ds = load_measurements([FIXTURE])
    assert ds.meta["timing"] == "kernel"
    c = compare(ds, "dgx-a100")
    assert c.timing == "kernel" and not c.unsupported
    assert set(c.by_kind) == {"matmul", "norm", "elementwise", "collective", "attention"}
    row = next(r for r in c.op_rows() if r.kind == "norm")
    rec = next(r for r in ds.records if r.id == row.id)
    assert row.predicted_s == pytest.approx(kernel_time(predict_op(record_op(rec), "dgx-a100")))
    # wall timing of the same data adds the launch overhead to every prediction
    w = compare(ds, "dgx-a100", timing="wall")
    assert all(a.predicted_s > b.predicted_s for a, b in zip(w.op_rows(), c.op_rows())
               if a.kind != "collective")


# -- CSV profiles ----------------------------------------------------------------------------
def test_vidur_compute_rows_read_as_the_golden_replay_reads_them():
    recs, skipped = read_profile_csv(VIDUR / "llama2-7b_mlp.csv")
    assert not skipped
    r = next(x for x in recs if x.group == "attn_pre_proj" and x.extra["tp"] == 2
             and x.extra["tokens"] == 512)
    assert r.op == {"kind": "matmul", "m": 512, "n": 6144, "k": 4096, "weight": True,
                    "dtype": "fp16"}
    with open(VIDUR / "llama2-7b_mlp.csv", newline="") as f:
        rows = [x for x in csv.DictReader(f) if x["num_tokens"] == "512"
                and x["num_tensor_parallel_workers"] == "2"]
    want = statistics.median(float(x["time_stats.attn_pre_proj.median"]) for x in rows) * 1e-3
    assert r.time_s == pytest.approx(want) and r.reps == len(rows)
    assert {x.group for x in recs} == {"emb", "input_layernorm", "attn_pre_proj", "attn_rope",
                                       "attn_post_proj", "post_attention_layernorm",
                                       "mlp_up_proj", "mlp_act", "mlp_down_proj", "add"}


def test_vidur_network_rows_in_one_node_only():
    recs, skipped = read_profile_csv(VIDUR / "dgx_all_reduce.csv")
    assert {r.op["devices"] for r in recs} == {2, 4, 8}
    assert all(r.extra["devices_per_node"] == r.op["devices"] for r in recs)
    assert skipped and all("several nodes" in s["reason"] for s in skipped)
    r = next(x for x in recs if x.op["devices"] == 2 and x.op["bytes"] == 4 * 2**20)
    assert r.time_s == pytest.approx(63e-6)       # the 0.063 ms row (bytes, not elements)


def test_hwsim_csv_form(tmp_path):
    p = tmp_path / "ops.csv"
    p.write_text("name,kind,m,n,k,dtype,time_us\nqkv,matmul,16,6144,4096,fp16,25.5\n"
                 "ln,norm,,,,fp16,4.0\n")
    with pytest.raises(HwsimError, match=r"ops.csv:3: norm"):
        read_profile_csv(p)          # a norm needs rows and cols
    p.write_text("name,kind,m,n,k,dtype,time_us\nqkv,matmul,16,6144,4096,fp16,25.5\n")
    recs, _ = read_profile_csv(p)
    assert recs[0].time_s == pytest.approx(25.5e-6) and recs[0].group == "qkv"


# -- calibration on kernel time --------------------------------------------------------------
def _synthetic(truth: dict) -> Dataset:
    """Kernel times predicted by dgx-a100 with ``truth`` applied: a fit must find it again."""
    from simulator.arch.calibration import apply_params
    from simulator.arch.loader import load_arch
    from simulator.predict import Predictor
    from simulator.validate.measure import op_record_dict
    from workloads.ops import Collective, Elementwise, MatMul, Norm

    system = apply_params(load_arch("dgx-a100"), truth)
    pred = Predictor(system)
    ops = [Norm(norm="rmsnorm", rows=t, cols=d, dtype="fp16")
           for t in (1, 4, 16, 64, 256, 1024) for d in (4096, 8192)]
    ops += [Elementwise(fn="add", numel=t * 4096, dtype="fp16") for t in (1, 8, 64, 512, 4096)]
    ops += [MatMul(m=t, n=n, k=4096, weight=True, dtype="fp16")
            for t in (1, 64, 512, 2048) for n in (4096, 12288)]
    ops += [Collective(collective="allreduce", bytes=float(b), devices=p, dtype="fp16")
            for p in (2, 4, 8) for b in (2**22, 2**24, 2**26, 2**28)]
    recs = []
    for i, op in enumerate(ops):
        d = op_record_dict(op)
        recs.append(Measurement(id=f"s{i:03d}", mode="op", kind=op.kind, op=d,
                                shape_key=shape_key(d), time_s=kernel_time(pred.cost(op)),
                                reps=1))
    meta = {"schema": SCHEMA, "created": "now", "device": {"kind": "cuda", "name": "A100"},
            "software": {}, "settings": {}, "timing": "kernel"}
    return Dataset(Path("synthetic"), meta, tuple(recs))


def test_fit_recovers_kernel_startup_and_nccl_bandwidth():
    """Two parameters moved from the spec (1.2 us, 0.8) in the data; the fit finds both
    (kernel_startup within 5 %: it trades a little against the GEMMs' efficiency on this
    small set, 19 training ops) and the held-out error of the streaming kernels and the
    all-reduces falls to noise. GEMM shapes are piecewise (tiles, waves), so the GEMM part of
    the fit is not asserted here."""
    truth = {"kernel_startup": 2.5e-6, "nvlink_efficiency": 0.6}
    r = fit(_synthetic(truth), "dgx-a100", holdout=0.5, seed=0, prior=0.0)
    p = r.profile
    assert {"kernel_startup", "nvlink_efficiency"} <= set(p.fitted)
    assert p.value("kernel_startup") == pytest.approx(2.5e-6, rel=0.05)
    assert p.value("nvlink_efficiency") == pytest.approx(0.6, rel=0.02)
    assert "launch_overhead" in p.kept       # kernel time does not see the launch
    assert r.holdout_after.overall.mape < 0.02 < r.holdout_before.overall.mape
    assert p.stats["timing"] == "kernel"
    kinds = p.stats["kinds"]
    for k in ("collective", "norm", "elementwise"):
        assert kinds[k]["holdout_mape_after"] < 0.01 < 0.1 < kinds[k]["holdout_mape_before"], k
    assert "pipeline_latency" not in p.fitted and "pipeline_latency" not in p.kept


def test_half_split_is_deterministic_and_disjoint():
    ds = _synthetic({})
    c = compare(ds, "dgx-a100")
    a = split_by_shape(c.rows, 0.5, 0)
    assert a == split_by_shape(c.rows, 0.5, 0)
    train, held = a
    assert not train & held and len(train) + len(held) == len(c.rows)
    assert abs(len(train) - len(held)) <= 4     # one shape of rounding per op class


def test_dataset_folder_and_profiles_do_not_mix(tmp_path):
    (tmp_path / "ds").mkdir()
    with pytest.raises(HwsimError, match="compared on its own"):
        load_measurements([FIXTURE, tmp_path / "ds"])
    with pytest.raises(HwsimError, match="no such file"):
        load_measurements([tmp_path / "missing.json"])


def test_records_of_two_inputs_keep_distinct_ids(tmp_path):
    other = tmp_path / "copy.json"
    other.write_text(FIXTURE.read_text())
    ds = load_measurements([FIXTURE, other])
    assert len(ds.records) == 20 and len({r.id for r in ds.records}) == 20
    assert copy.copy(ds.meta["source"]) == [str(FIXTURE), str(other)]
