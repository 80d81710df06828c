"""Interleaved 1F1B with virtual stages (Narayanan et al., SC'21, sec. 2.2.2): the schedule's
algebra, the bubble from a real event run, activation memory, and the errors."""

from __future__ import annotations

import pytest

from simulator.arch.loader import load_arch
from simulator.predict import Predictor
from workloads.errors import WorkloadError
from workloads.memory import footprint_by_device
from workloads.transforms.pipeline_train import (
    chunk_order,
    held_chunks,
    pipeline_train,
    schedule_order,
)
from workloads.zoo import build

P, M = 4, 8

# A GPT-2-shaped decoder with a tiny vocabulary: with gpt2's tied 50257-word LM head (about
# five layers of GEMMs) the last stage is ~40% slower than the others, and that imbalance, not
# the schedule, would set the idle time. Balanced stages isolate the schedule's bubble.
FLAT = """model_type: gpt2
n_embd: 1024
n_layer: 24
n_head: 16
n_positions: 1024
vocab_size: 256
activation_function: gelu_new
"""


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "flat.yaml"
    path.write_text(FLAT)
    return build(str(path), phase="train", batch=1, seq=512)


@pytest.fixture(scope="module")
def predictor():
    return Predictor(load_arch("dgx-a100"))


@pytest.fixture(scope="module")
def runs(micro, predictor):
    """(schedule, v) -> (step time s, bubble fraction, graph) of P stages, M micro-batches."""
    out = {}
    for sch, v in (("gpipe", 1), ("1f1b", 1), ("interleaved", 1), ("interleaved", 2),
                   ("interleaved", 3)):
        g = pipeline_train([micro] * M, P, schedule=sch, virtual_stages=v)
        r = predictor.predict(g)
        step = r.latency_s
        # as simulator/train.py: mean over the stages of the share of the step a device idles
        bubble = sum(1.0 - r.records.busy_s(s) / step for s in range(P)) / P
        out[sch, v] = (step, bubble, g)
    return out


def _list_schedule(schedule: str, p: int, m: int, v: int, f: float = 1.0, b: float = 2.0
                   ) -> float:
    """Makespan of the stage orders with a chunk's forward f / v and backward b / v long and
    free hand-offs; asserts that no stage waits forever (the order respects the data flow)."""
    chunks = p * v
    orders = [chunk_order(schedule, s, p, m, v) for s in range(p)]
    done: dict[tuple[str, int, int], float] = {}
    free, pos = [0.0] * p, [0] * p
    while any(pos[s] < len(orders[s]) for s in range(p)):
        moved = False
        for s in range(p):
            while pos[s] < len(orders[s]):
                kind, i, c = orders[s][pos[s]]
                if kind == "F":
                    deps = [("F", i, c - 1)] if c else []
                else:  # the loss follows the last forward; a gradient flows back a chunk
                    deps = [("F", i, c)] + ([("B", i, c + 1)] if c < chunks - 1 else [])
                if any(d not in done for d in deps):
                    break
                start = max([free[s]] + [done[d] for d in deps])
                done[kind, i, c] = free[s] = start + (f if kind == "F" else b) / v
                pos[s] += 1
                moved = True
        assert moved, f"{schedule} p={p} m={m} v={v}: deadlock at {pos}"
    return max(free)


@pytest.mark.parametrize("p,m,v", [(4, 8, 2), (4, 4, 2), (4, 8, 3), (2, 6, 4), (8, 16, 2),
                                   (3, 9, 3)])
def test_each_stage_runs_every_chunk_of_every_micro_batch_once_forward_first(p, m, v):
    for s in range(p):
        order = chunk_order("interleaved", s, p, m, v)
        mine = [(i, c) for i in range(m) for c in range(s, p * v, p)]
        assert sorted(order) == sorted([("F", i, c) for i, c in mine] +
                                       [("B", i, c) for i, c in mine])
        assert all(order.index(("F", i, c)) < order.index(("B", i, c)) for i, c in mine)
        # Megatron-LM's warm-up, then one forward before the first backward
        warm = min(2 * (p - s - 1) + (v - 1) * p, v * m)
        assert [k for k, _, _ in order[:warm]] == ["F"] * warm
        assert len(held_chunks(order)) == min(warm + 1, v * m)


@pytest.mark.parametrize("p,m,v", [(4, 8, 1), (4, 8, 2), (4, 8, 4), (4, 4, 2), (2, 6, 3),
                                   (8, 16, 2), (3, 9, 4)])
def test_with_uniform_chunks_the_bubble_shrinks_by_v_exactly(p, m, v):
    # the pipeline's fill and drain: (p - 1) stage-slots of (f + b) / v (Narayanan et al.
    # SC'21, eq. 2); exact when every chunk costs the same and hand-offs are free
    assert _list_schedule("interleaved", p, m, v) == pytest.approx((m + (p - 1) / v) * 3.0)
    if v == 1:
        assert chunk_order("interleaved", 0, p, m) == chunk_order("1f1b", 0, p, m)
        assert _list_schedule("1f1b", p, m, 1) == _list_schedule("gpipe", p, m, 1)


def test_gpipe_and_1f1b_orders_are_one_chunk_per_stage():
    assert chunk_order("1f1b", 1, 3, 3) == [("F", 0, 1), ("F", 1, 1), ("B", 0, 1), ("F", 2, 1),
                                            ("B", 1, 1), ("B", 2, 1)]
    for sch in ("gpipe", "1f1b"):
        assert [(k, i) for k, i, _ in chunk_order(sch, 2, 4, 5)] == schedule_order(sch, 2, 4, 5)


def test_event_run_bubble_matches_the_analytic_fraction(runs):
    # (p - 1) / (v m + p - 1) of the step. The event run's busy time also counts the hand-offs
    # (on both ends) and each stage's optimizer update, and hand-offs on the critical path
    # lengthen the step: together within 1.5 points of the step here (measured 0.3-1.1).
    for key, v in ((("gpipe", 1), 1), (("1f1b", 1), 1), (("interleaved", 2), 2),
                   (("interleaved", 3), 3)):
        assert runs[key][1] == pytest.approx((P - 1) / (v * M + P - 1), abs=0.015), key


def test_interleaving_shrinks_the_bubble_time_by_v(runs):
    def idle(key):  # the bubble in seconds: step time less the mean stage's busy time
        step, bubble, _ = runs[key]
        return step * bubble

    # v-fold, plus v-fold as many hand-offs on the critical path: 10% (measured +3%, +7%)
    for v in (2, 3):
        assert idle(("interleaved", v)) / idle(("1f1b", 1)) == pytest.approx(1 / v, rel=0.1)
    assert runs["interleaved", 3][0] < runs["interleaved", 2][0] < runs["1f1b", 1][0]


def test_one_virtual_stage_is_1f1b(runs):
    step_i, bubble_i, g_i = runs["interleaved", 1]
    step_f, bubble_f, g_f = runs["1f1b", 1]
    assert step_i == pytest.approx(step_f, rel=1e-12)
    assert bubble_i == pytest.approx(bubble_f, rel=1e-12)
    assert set(g_i.g.nodes) == set(g_f.g.nodes)
    assert g_i.meta["virtual_stages"] == 1 and g_i.meta["pp_schedule"] == "interleaved"


def test_chunks_wrap_around_the_stages_and_each_stage_updates_once(runs):
    g = runs["interleaved", 2][2]
    assert [g.group_of(f"mb0.chunk{c}.layers") for c in range(P * 2)] == [
        (0,), (1,), (2,), (3,), (0,), (1,), (2,), (3,)]
    assert g.group_of("mb0.pp_fwd.c3") == (3, 0)  # last stage back to the first
    assert g.group_of("mb0.pp_bwd.c4") == (0, 3)
    # 24 layers: 3 per chunk, 6 per stage, as 1F1B's 6 per stage
    assert [g.item(f"mb0.chunk{c}.layers").times for c in range(8)] == [3] * 8
    opt = {n: g.item(n).numel for n in g.g.nodes if n.startswith("optimizer")}
    f = runs["1f1b", 1][2]
    assert opt == {n: f.item(n).numel for n in f.g.nodes if n.startswith("optimizer")}
    assert g.meta["params_per_device"] == f.meta["params_per_device"]


def test_interleaving_holds_more_activations_than_1f1b_and_fewer_than_gpipe(runs):
    act = {k: footprint_by_device(v[2])[0].activations for k, v in runs.items()}
    assert act["1f1b", 1] < act["interleaved", 2] < act["gpipe", 1]
    # stage 0 holds 2(p-1) + (v-1)p + 1 = 11 chunks of 3 layers against 1F1B's 4 micro-batches
    # of 6: 1 + (p-1)/(pv) = 1.375x (Korthikanti et al. 2022). 3%: the embedding output is
    # held for 7 micro-batches instead of 4, and the hand-off buffers for more chunks
    # (measured 1.398).
    assert act["interleaved", 2] / act["1f1b", 1] == pytest.approx(1 + (P - 1) / (P * 2),
                                                                   rel=0.03)
    # more virtual stages: smaller chunks in flight, closer to 1F1B
    assert act["1f1b", 1] < act["interleaved", 3] < act["interleaved", 2]


@pytest.mark.parametrize("kw,match", [
    (dict(schedule="interleaved", virtual_stages=0), "virtual_stages must be a positive "
                                                     "integer, got 0"),
    (dict(schedule="1f1b", virtual_stages=2), "virtual_stages=2 needs schedule='interleaved'"),
    (dict(schedule="interleaved", virtual_stages=4), r"pp=4 x virtual_stages=4 = 16 model "
                                                     r"chunks but only 12 layers"),
    (dict(schedule="interleaved", virtual_stages=2, m=6), "microbatches=6 is not divisible "
                                                          "by pp=4"),
    (dict(schedule="zigzag"), "must be one of gpipe, 1f1b, interleaved, got 'zigzag'"),
])
def test_bad_interleaved_layouts_are_clear_errors(kw, match):
    mb = build("gpt2", phase="train", batch=1, seq=64)
    m = kw.pop("m", M)
    with pytest.raises(WorkloadError, match=match):
        pipeline_train([mb] * m, P, **kw)


def test_schedule_order_points_to_chunk_order_for_interleaved():
    with pytest.raises(WorkloadError, match="chunk_order"):
        schedule_order("interleaved", 0, 4, 8)
    with pytest.raises(WorkloadError, match="not divisible by pp=4"):
        chunk_order("interleaved", 0, 4, 6, 2)
