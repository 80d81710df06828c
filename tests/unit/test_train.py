"""hwsim train: ZeRO memory and traffic, gradient accumulation, MFU/HFU, nodes, bad layouts."""

from __future__ import annotations

import json

import pytest

from simulator import HwsimError, WorkloadError
from simulator.cli import main
from simulator.train import train

KW = dict(global_batch=32, seq=512, tp=2, dp=4)


@pytest.fixture(scope="module")
def zero_runs():
    return {z: train("llama2-7b", "dgx-a100", micro_batch=4, zero=z, **KW) for z in (0, 1, 2)}


def test_zero_shards_optimizer_state_then_gradients(zero_runs):
    mem = {z: r.metrics["memory_per_device_bytes"] for z, r in zero_runs.items()}
    # ZeRO-1: Adam state (12 B/param) over dp = 4; ZeRO-2: the 2 B/param gradients too
    assert mem[1]["optimizer_state"] == pytest.approx(mem[0]["optimizer_state"] / 4)
    assert mem[1]["gradients"] == pytest.approx(mem[0]["gradients"])
    assert mem[2]["gradients"] == pytest.approx(mem[0]["gradients"] / 4)
    assert mem[2]["weights"] == mem[0]["weights"]


def test_zero_traffic_is_a_reduce_scatter_and_an_all_gather(zero_runs):
    # the same bytes an all-reduce moves: (p-1)/p each way (Rajbhandari et al. 2020, sec. 7)
    def sent(r, prefix):
        return sum(x.details["bytes_sent"] for x in r.result.records
                   if x.name.startswith(prefix) and x.device == 0)

    ar = sent(zero_runs[0], "dp_grad_allreduce")
    rs_ag = sent(zero_runs[1], "dp_grad_reducescatter") + sent(zero_runs[1], "dp_weight_allgather")
    assert rs_ag == pytest.approx(ar, rel=1e-9)


def test_gradient_accumulation_repeats_micro_batches_with_one_optimizer_step():
    one = train("gpt2", "dgx-a100", global_batch=32, seq=256, tp=1, dp=4)
    acc = train("gpt2", "dgx-a100", global_batch=32, micro_batch=2, seq=256, tp=1, dp=4)
    assert acc.metrics["accumulation_steps"] == 4
    m1, m4 = one.metrics["memory_per_device_bytes"], acc.metrics["memory_per_device_bytes"]
    # activations of one micro-batch of 2 instead of 8 samples; weights and state unchanged
    assert m4["activations"] < m1["activations"] / 2
    assert m4["optimizer_state"] == m1["optimizer_state"]
    # the same work, in smaller GEMMs: FLOPs within 1% (one optimizer step either way)
    assert acc.metrics["executed_flops"] == pytest.approx(one.metrics["executed_flops"], rel=0.01)
    assert acc.metrics["step_time_s"] >= one.metrics["step_time_s"] * 0.95


def test_mfu_and_hfu():
    plain = train("llama2-7b", "dgx-a100", micro_batch=4, **KW)
    redo = train("llama2-7b", "dgx-a100", micro_batch=4, recompute="full", **KW)
    assert 0 < plain.metrics["mfu"] < 1
    assert plain.metrics["mfu"] == pytest.approx(plain.metrics["hfu"])
    # full recompute re-runs the forward: hardware FLOPs ~4/3 of the model's
    assert redo.metrics["hfu"] / redo.metrics["mfu"] == pytest.approx(4 / 3, rel=0.05)
    assert redo.metrics["step_time_s"] > plain.metrics["step_time_s"]
    assert plain.metrics["exposed_comm_s"] <= plain.metrics["comm_time_s"] + 1e-12
    assert plain.metrics["bubble_fraction"] == 0.0


def test_nodes_scale_the_system_and_cross_the_network():
    r = train("llama2-7b", "dgx-a100", nodes=2, global_batch=16, micro_batch=2, seq=512, tp=8,
              dp=2)
    assert (r.metrics["nodes"], r.metrics["devices"]) == (2, 16)
    links = {x.details.get("link") for x in r.result.records if x.name.startswith("dp_grad")}
    assert links == {"infiniband-hdr"}


@pytest.mark.parametrize("kw,match", [
    (dict(tp=3, dp=1), "does not divide"),
    (dict(tp=2, dp=1, schedule="1f1b"), "applies to pipeline parallelism"),
    (dict(tp=1, dp=1, pp=64), "needs 64 devices"),
    (dict(tp=1, dp=1, pp=16, nodes=2), "only 12 layers"),
    (dict(tp=2, dp=1, recompute="partial"), "none, selective or full"),
    (dict(tp=2, dp=1, zero=1), "needs --dp > 1"),
    (dict(tp=2, dp=2, pp=2, zero=3), "--zero 3 with --pp"),
    (dict(tp=2, dp=4, micro_batch=3), "does not divide"),
    (dict(tp=4, dp=4), "needs 16 devices"),
    (dict(tp=2, dp=2, nodes=0), "--nodes"),
])
def test_bad_layouts_are_clear_errors(kw, match):
    with pytest.raises((HwsimError, WorkloadError), match=match):
        train("gpt2" if kw.get("pp", 1) > 8 else "llama2-7b", "dgx-a100", global_batch=16,
              seq=256, **kw)


def test_cli_json_has_the_contract(capsys):
    code = main(["train", "--workload", "gpt2", "--arch", "dgx-a100", "--tp", "1", "--dp", "8",
                 "--global-batch", "16", "--micro-batch", "1", "--seq", "256", "--zero", "1",
                 "--json"])
    assert code == 0
    d = json.loads(capsys.readouterr().out,
                   parse_constant=lambda c: (_ for _ in ()).throw(AssertionError(c)))
    for key in ("step_time_s", "tokens_per_s", "mfu", "hfu", "bubble_fraction",
                "memory_per_device_bytes", "comm_time_s", "exposed_comm_s", "energy_j",
                "cost_usd"):
        assert key in d, key
    assert d["accumulation_steps"] == 2
    assert main(["train", "--schedule", "1f1b", "--virtual-stages", "2", "--pp", "2"]) == 2
    assert "interleaved" in capsys.readouterr().err


def test_sequence_parallel_swaps_all_reduces_for_reduce_scatter_and_all_gather():
    from workloads.ops import Collective, Norm
    from workloads.transforms.tensor_parallel import tensor_parallel
    from workloads.transforms.walk import ops_with_counts
    from workloads.zoo import build_model

    g = build_model("llama2-7b", phase="forward", batch=2, seq=512)
    tp_only, sp = tensor_parallel(g, 4), tensor_parallel(g, 4, sequence_parallel=True)

    def colls(graph):
        out: dict[str, float] = {}
        for op, n in ops_with_counts(graph):
            if isinstance(op, Collective):
                out[op.collective] = out.get(op.collective, 0.0) + op.bytes * n
        return out

    a, b = colls(tp_only), colls(sp)
    assert set(a) == {"allreduce"} and set(b) == {"reducescatter", "allgather"}
    # ring volume: an all-reduce is a reduce-scatter plus an all-gather of the same tensor
    assert b["reducescatter"] == pytest.approx(a["allreduce"])
    assert b["allgather"] == pytest.approx(a["allreduce"])
    norms = [op for op, _ in ops_with_counts(sp) if isinstance(op, Norm)]
    assert all(op.rows == 2 * 512 // 4 for op in norms)  # norms see 1/tp of the tokens
    plain = train("llama2-13b", "dgx-a100", global_batch=8, micro_batch=1, seq=2048, tp=8, dp=1)
    seq = train("llama2-13b", "dgx-a100", global_batch=8, micro_batch=1, seq=2048, tp=8, dp=1,
                sequence_parallel=True)
    assert (seq.metrics["memory_per_device_bytes"]["activations"]
            < plain.metrics["memory_per_device_bytes"]["activations"])
    assert seq.metrics["step_time_s"] < plain.metrics["step_time_s"]
    with pytest.raises(HwsimError, match="needs --tp > 1"):
        train("gpt2", "dgx-a100", global_batch=8, seq=256, tp=1, dp=8, sequence_parallel=True)
    with pytest.raises(WorkloadError, match="dense decoder"):
        train("mixtral-8x7b", "dgx-h100", global_batch=8, seq=256, tp=8, dp=1,
              sequence_parallel=True)


def test_search_ranks_the_layouts_that_fit(capsys):
    from simulator.layout_search import search

    res = search("gpt2", "dgx-a100", global_batch=16, micro_batch=2, seq=256, top=3)
    times = [r.metrics["step_time_s"] for r in res.fits]
    assert len(res.fits) == 3 and times == sorted(times)
    assert all(r.metrics["tp"] * r.metrics["dp"] == 8 for r in res.fits)
    assert res.evaluated >= len(res.fits) + len(res.refused)
    assert main(["train", "--search", "--workload", "gpt2", "--global-batch", "16",
                 "--micro-batch", "2", "--seq", "256", "--top", "2"]) == 0
    assert "fastest that fit" in capsys.readouterr().out
    assert main(["train", "--search", "--tp", "2"]) == 2


def test_pipeline_schedules_have_the_gpipe_bubble_and_1f1b_saves_memory():
    from workloads.transforms.pipeline_train import schedule_order

    # schedule algebra: every micro-batch's F and B once per stage, B(i) after F(i)
    for sch in ("gpipe", "1f1b"):
        for s in range(4):
            order = schedule_order(sch, s, 4, 8)
            assert sorted(order) == sorted([("F", i) for i in range(8)] +
                                           [("B", i) for i in range(8)])
            assert all(order.index(("F", i)) < order.index(("B", i)) for i in range(8))
    kw = dict(global_batch=16, micro_batch=1, seq=512, tp=1, pp=4, dp=2)
    g = train("gpt2", "dgx-a100", schedule="gpipe", **kw)
    f = train("gpt2", "dgx-a100", schedule="1f1b", **kw)
    one = train("gpt2", "dgx-a100", global_batch=1, seq=512, tp=1, dp=1)
    m, p = 8, 4
    # (m + p - 1) stage-slots of a micro-batch's forward+backward on a quarter of the layers;
    # the embedding and LM head make the end stages heavier: 20% tolerance
    ideal = (m + p - 1) * one.metrics["step_time_s"] / p
    assert g.metrics["step_time_s"] == pytest.approx(ideal, rel=0.2)
    assert f.metrics["step_time_s"] == pytest.approx(g.metrics["step_time_s"], rel=0.02)
    assert g.metrics["bubble_fraction"] >= (p - 1) / (m + p - 1) * 0.8
    # 1F1B holds at most p micro-batches' activations on the first stage, GPipe all m
    act_g = g.metrics["memory_per_device_bytes"]["activations"]
    act_f = f.metrics["memory_per_device_bytes"]["activations"]
    assert act_f < act_g * 0.75
    assert g.metrics["pipeline_microbatches"] == 8 and f.metrics["schedule"] == "1f1b"
    grads = {x.name for x in f.result.records if x.name.startswith("dp_grad")}
    assert any(".optimizer.s3." in n for n in grads)  # each stage's gradients, over dp


def test_interleaved_schedule_shrinks_the_bubble_by_the_virtual_stages():
    # Narayanan et al. SC'21 sec. 2.2.2: v chunks per device cut the bubble time by v;
    # gpt2's heavier last stage (tied LM head) keeps the measured cut below the ideal 2x
    kw = dict(global_batch=8, seq=128, tp=1, pp=2, dp=1, micro_batch=1)
    one = train("gpt2", "dgx-a100", schedule="1f1b", **kw).metrics
    two = train("gpt2", "dgx-a100", virtual_stages=2, **kw).metrics
    assert two["schedule"] == "interleaved" and two["virtual_stages"] == 2
    idle_1 = one["bubble_fraction"] * one["step_time_s"]
    idle_2 = two["bubble_fraction"] * two["step_time_s"]
    assert idle_2 < 0.85 * idle_1
    assert two["step_time_s"] < one["step_time_s"]


def test_cli_runs_zero3_with_selective_recompute(capsys):
    code = main(["train", "--workload", "gpt2", "--arch", "dgx-a100", "--tp", "2", "--dp", "4",
                 "--global-batch", "16", "--micro-batch", "2", "--seq", "256", "--zero", "3",
                 "--recompute", "selective", "--json"])
    assert code == 0
    d = json.loads(capsys.readouterr().out)
    assert (d["zero"], d["recompute"]) == (3, "selective")
    # selective recomputation re-runs only cheap non-GEMM ops: HFU a little above MFU
    assert d["mfu"] < d["hfu"] < d["mfu"] * 1.1
    base = train("gpt2", "dgx-a100", tp=2, dp=4, global_batch=16, micro_batch=2, seq=256)
    mem, mem0 = d["memory_per_device_bytes"], base.metrics["memory_per_device_bytes"]
    # ZeRO-3 shards the optimizer state over the 4 replicas (Rajbhandari et al. 2020)
    assert mem["optimizer_state"] == pytest.approx(mem0["optimizer_state"] / 4, rel=0.01)
    assert mem["weights"] < mem0["weights"]
