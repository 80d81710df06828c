"""``hwsim train --search`` by branch and bound (simulator/train_search.py): the lower bound
holds, pruning never drops a layout that belongs in the top, and worker processes give the
same answer as one process."""

from __future__ import annotations

import pytest

import simulator.layout_search as ts
from simulator.cli import main
from simulator.layout_search import search
from simulator.predict import Predictor
from simulator.train import train, train_system
from simulator.train_search import TrainLayout, step_lower_bound

KW = dict(global_batch=64, micro_batch=1, seq=128, dtype="fp16")
LAYOUTS = [  # (tp, pp, dp, zero, sequence parallel) of 16 A100s
    (1, 4, 4, 1, False), (2, 4, 2, 0, True), (1, 12, 1, 0, False), (2, 2, 4, 1, False),
    (1, 1, 16, 3, False), (4, 1, 4, 3, True), (1, 6, 2, 2, False),
]


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda t: "tp{}-pp{}-dp{}-z{}-sp{}".format(*t))
def test_lower_bound_is_below_the_step_and_not_vacuous(layout):
    tp, pp, dp, zero, sp = layout
    system = train_system("dgx-a100", 2)
    p = Predictor(system)
    lay = TrainLayout(tp, pp, dp, zero, sp, "selective")
    bound = step_lower_bound(p, "gpt2", lay, **KW)
    step = train("gpt2", system, tp=tp, pp=pp, dp=dp, zero=zero, sequence_parallel=sp,
                 recompute="selective", predictor=p, exact=True, **KW).metrics["step_time_s"]
    assert bound <= step * (1 + 1e-9)
    # compute (or, for ZeRO-3, communication) is most of a step: the bound is not trivial
    assert bound > 0.3 * step


def _fits(res):
    return [(r.metrics["tp"], r.metrics["pp"], r.metrics["dp"], r.metrics["zero"],
             r.metrics["sequence_parallel"], round(r.metrics["step_time_s"], 12))
            for r in res.fits]


def test_pruning_keeps_the_true_top(monkeypatch):
    args = dict(workload="gpt2", arch="dgx-a100", nodes=2, recompute="full", top=3, **KW)
    # every deep layout bounded, so that pruning has something to prune
    monkeypatch.setattr(ts, "BOUND_ABOVE_STAGE_PASSES", 0)
    pruning = search(**args)
    assert pruning.pruned, "expected some layouts pruned"
    # no pruning at all: every layout that fits screened
    monkeypatch.setattr(ts, "PRUNE_MARGIN", float("inf"))
    every = search(**args)
    assert not every.pruned
    assert _fits(pruning) == _fits(every)
    # and every pruned layout's bound was above the top-th screened time
    kth = sorted(t for _, t in pruning.screened)[2]
    assert all(b > kth for _, b in pruning.pruned)
    # nothing lost: each layout is refused, pruned or screened
    assert len(pruning.refused) + len(pruning.pruned) + len(pruning.screened) \
        == pruning.evaluated


def test_worker_processes_give_the_same_layouts():
    args = dict(workload="gpt2", arch="dgx-a100", nodes=2, recompute="full", top=4, **KW)
    assert _fits(search(**args, jobs=2)) == _fits(search(**args, jobs=1))


def test_jobs_only_with_search(capsys):
    assert main(["train", "--workload", "gpt2", "--global-batch", "8", "--jobs", "2"]) == 2
    assert "--jobs" in capsys.readouterr().err
