"""Bucketed data-parallel gradient reduction overlapped with the backward pass (PyTorch DDP):
bucket count and bytes, the exposed communication it hides, the communication bound."""

from __future__ import annotations

import pytest

from simulator.arch.loader import load_arch
from simulator.plan import _replica, make_plan
from simulator.predict import Predictor
from workloads.errors import WorkloadError
from workloads.ops import Collective
from workloads.transforms.data_parallel import DEFAULT_BUCKET_BYTES, data_parallel
from workloads.transforms.fuse import fuse_epilogues
from workloads.transforms.training import training_step
from workloads.transforms.walk import ops_with_counts
from workloads.zoo import build_model

A100 = load_arch("dgx-a100")


def _replica_of(model: str, batch: int, seq: int):
    g = build_model(model, phase="train", batch=batch, seq=seq)
    return fuse_epilogues(training_step(g, params=g.meta["params_per_device"]))


def _dp_graph(dp: int = 2, bucket: float | None = DEFAULT_BUCKET_BYTES, zero: int = 0, **kw):
    """The replicas plan.py builds for ``kw``, merged with ``bucket`` and ``zero``."""
    plan = make_plan("gpt2", A100, phase="train", dp=dp, **kw)
    reps = {b: _replica(plan, b) for b in set(plan.replica_batches())}
    return data_parallel([reps[b] for b in plan.replica_batches()],
                         plan.layout.devices_per_replica, zero=zero, bucket_bytes=bucket)


def _reductions(g, prefix: str = "dp_grad_") -> dict[str, float]:
    return {n: g.item(n).bytes for n in g.g.nodes if n.startswith(prefix)}


# -- buckets ------------------------------------------------------------------------------------
def test_one_bucket_per_layer_then_the_rest_and_the_same_bytes():
    one = _reductions(_dp_graph(bucket=None, batch=4, seq=128, tp=1))
    many = _reductions(_dp_graph(batch=4, seq=128, tp=1))
    assert list(one) == ["dp_grad_allreduce.d0"]  # unbucketed: today's single all-reduce
    # gpt2 layer: 7,087,872 parameters = 14.18 MB of bf16 gradients, so one layer per 25 MB
    # bucket (DDP never overfills a bucket): 12 layer buckets + embeddings/final norm = 13
    assert len(many) == 13
    assert many["dp_grad_allreduce.b0.d0"] == 7_087_872 * 2
    # the gradients are the same, only cut: the total is exact
    assert sum(many.values()) == one["dp_grad_allreduce.d0"] == 124_439_808 * 2


def test_bigger_buckets_hold_more_layers():
    many = _reductions(_dp_graph(bucket=60e6, batch=4, seq=128, tp=1))
    # 60 MB / 14.18 MB = 4 layers per bucket: 3 buckets of layers + the rest
    assert len(many) == 4
    assert many["dp_grad_allreduce.b0.d0"] == 4 * 7_087_872 * 2
    assert sum(many.values()) == 124_439_808 * 2


@pytest.mark.parametrize("kw", [
    dict(batch=8, seq=128, tp=2),                            # per tensor-parallel shard
    dict(batch=8, seq=128, tp=1, pp=2, microbatches=4),      # per pipeline stage
    dict(batch=16, seq=128, tp=1, micro_batch=2),            # gradient accumulation
])
@pytest.mark.parametrize("zero", [0, 2])
def test_bucketed_bytes_equal_the_unbucketed_total(kw, zero):
    def total(g):
        return sum(op.bytes * n for op, n in ops_with_counts(g)
                   if isinstance(op, Collective) and op.collective in ("allreduce",
                                                                        "reducescatter")
                   and op.devices == 2)

    one, many = _dp_graph(bucket=None, zero=zero, **kw), _dp_graph(zero=zero, **kw)
    assert len(_reductions(many)) > len(_reductions(one))
    assert total(many) == pytest.approx(total(one), rel=1e-12)


def test_only_the_last_micro_batch_triggers_reductions():
    g = _dp_graph(batch=8, seq=128, tp=1, pp=2, microbatches=4)
    # each stage's buckets wait for the backward of micro-batch 3 (the last) of that stage
    waits = {p for n in _reductions(g) for p in g.g.predecessors(n)}
    assert {w.split(".")[1] for w in waits} == {"mb3"}
    acc = _dp_graph(batch=16, seq=128, tp=1, micro_batch=2)  # 4 micro-batches per replica
    waits = {p for n in _reductions(acc) for p in acc.g.predecessors(n)}
    assert {w.split(".")[2] for w in waits} == {"3"}  # dp<r>.microbatches.3.<node>
    assert acc.item("dp0.microbatches").times == 3    # the first three stay one repeat


def test_bad_bucket_size_is_an_error():
    r = _replica_of("gpt2", 1, 64)
    with pytest.raises(WorkloadError, match="bucket_bytes"):
        data_parallel([r, r], bucket_bytes=-1.0)


# -- overlap ------------------------------------------------------------------------------------
def _exposed(r) -> float:
    """Time device 0 communicates while it does not compute."""
    return r.records.busy_s(0) - r.records.busy_s(0, "compute")


def test_buckets_hide_the_reduction_behind_the_backward_pass():
    # llama2-7b, 2 replicas on NVLink: a 13.5 GB all-reduce (~45 ms) against ~490 ms of compute
    p = Predictor(A100)
    rep = _replica_of("llama2-7b", 1, 2048)
    single = p.predict(rep, check_capacity_first=False).latency_s
    runs = {b: p.predict(data_parallel([rep, rep], 1, bucket_bytes=b), check_capacity_first=False)
            for b in (None, DEFAULT_BUCKET_BYTES)}
    flat, bucketed = runs[None], runs[DEFAULT_BUCKET_BYTES]
    reduce_s = sum(x.end_s - x.start_s for x in flat.records
                   if x.device == 0 and x.name.startswith("dp_grad"))
    # unbucketed: the whole all-reduce waits for the whole backward, all of it exposed
    assert _exposed(flat) == pytest.approx(reduce_s, rel=1e-6)
    assert flat.latency_s - single == pytest.approx(reduce_s, rel=1e-6)
    # bucketed: only the last layer's bucket and the embeddings/LM head bucket (524 MB,
    # reduced after the whole backward) are exposed: 3.1 ms of 44.9 ms, 6.8%
    assert _exposed(bucketed) < 0.1 * _exposed(flat)
    assert _exposed(bucketed) == pytest.approx(0.068 * _exposed(flat), rel=0.1)
    assert bucketed.latency_s - single == pytest.approx(_exposed(bucketed), rel=1e-6)
    assert bucketed.latency_s < flat.latency_s


def test_nothing_beats_the_communication_bound():
    # the replicas on devices 0 and 8 of two DGX nodes: their reductions cross InfiniBand and
    # take longer than gpt2's whole backward pass on one sample
    system = load_arch("dgx-a100", ("count=16",))
    p = Predictor(system)
    rep = _replica_of("gpt2", 1, 64)
    runs = {b: p.predict(data_parallel([rep, rep], 8, bucket_bytes=b), check_capacity_first=False)
            for b in (None, DEFAULT_BUCKET_BYTES)}
    for r in runs.values():
        reduce_s = sum(x.end_s - x.start_s for x in r.records
                       if x.device == 0 and x.name.startswith("dp_grad"))
        assert reduce_s > r.records.busy_s(0, "compute")  # communication-bound
        assert r.latency_s >= reduce_s
    # overlap still helps (the backward hides under the first buckets) but cannot beat it
    assert runs[DEFAULT_BUCKET_BYTES].latency_s <= runs[None].latency_s
