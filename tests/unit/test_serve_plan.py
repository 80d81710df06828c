"""``plan()`` / ``hwsim plan``: capacity planning over parts x tp x precision x batch limit x
replicas. Laws (a plan re-simulates within its SLOs, tighter SLOs never cost less, more load
never needs fewer devices, the bounds never prune a fleet that would have passed), determinism,
costs, and one-line errors for bad input. Small models and loads keep it fast."""

import json
import math

import pytest

from simulator.cli import main
from simulator.errors import HwsimError
from simulator.serve import ServeOptions, serve
from simulator.serve.planner import HOURS_PER_YEAR, fleet_system, plan

# llama2-13b on L4 (24 GB, 300 GB/s): tp 1 bf16 does not fit, several TTFT/TPOT bounds bite
GRID = dict(tps=[1, 2, 4], dtypes=["bf16", "fp8"], max_batches=[16, 64], top=20)
LOAD = ServeOptions(rate=4.0, requests=150, prompt_len=256, output_len=32)
# llama2-7b on L4 at a rate that needs several replicas: the throughput bound bites
HEAVY = ServeOptions(rate=32.0, requests=200, prompt_len=256, output_len=64)
HEAVY_GRID = dict(tps=[1, 2], dtypes=["fp8"], max_batches=[16, 64], top=20)


def _p99s(workload, load, tp, replicas, max_batch, dtype, arch="l4"):
    o = ServeOptions(rate=load.rate, requests=load.requests, prompt_len=load.prompt_len,
                     output_len=load.output_len, tp=tp, replicas=replicas,
                     max_batch=max_batch, dtype=dtype)
    m = serve(workload, fleet_system(arch, tp * replicas), o).metrics
    return m["ttft_s"]["p99"], m["tpot_s"]["p99"]


@pytest.fixture(scope="module")
def grid_plan():
    return plan("llama2-13b", ["l4"], LOAD, 0.05, 0.03, **GRID)


@pytest.fixture(scope="module")
def heavy_plan():
    return plan("llama2-7b", ["l4"], HEAVY, 1.0, 0.05, **HEAVY_GRID)


def test_the_grid_exercises_every_bound(grid_plan, heavy_plan):
    s = grid_plan.stats
    assert s.pruned_memory and s.pruned_ttft_bound and s.pruned_tpot_bound
    assert s.configurations == 3 * 2 * 2 and s.simulations >= 1
    assert heavy_plan.stats.replicas_skipped > 0
    for st in (grid_plan.stats, heavy_plan.stats):  # every configuration is accounted for
        assert st.configurations == (st.pruned_by_bound + st.pruned_layout + st.pruned_price
                                     + st.pruned_cost + st.searched)
    stages = {m.stage for m in grid_plan.near_misses}
    assert {"memory", "ttft-bound", "tpot-bound"} <= stages


@pytest.mark.parametrize("which", ["grid_plan", "heavy_plan"])
def test_every_planned_fleet_meets_both_slos_when_re_simulated(which, request):
    r = request.getfixturevalue(which)
    workload, load = ("llama2-13b", LOAD) if which == "grid_plan" else ("llama2-7b", HEAVY)
    assert r.feasible
    for f in r.fleets[:3]:
        ttft, tpot = _p99s(workload, load, f.tp, f.replicas, f.max_batch, f.dtype)
        assert ttft <= r.slo["ttft_p99_s"] and tpot <= r.slo["tpot_p99_s"], f
        assert ttft == pytest.approx(f.ttft_p99_s) and tpot == pytest.approx(f.tpot_p99_s)
    costs = [f.usd_per_hour for f in r.fleets]
    assert costs == sorted(costs)


def test_bound_pruned_candidates_never_meet_the_slos(grid_plan):
    """Simulate what the analytical bounds threw away: none of it passes, at any size."""
    slo_t, slo_p = grid_plan.slo["ttft_p99_s"], grid_plan.slo["tpot_p99_s"]
    pruned = [m for m in grid_plan.near_misses if m.stage in ("memory", "ttft-bound",
                                                               "tpot-bound")]
    assert len(pruned) >= 3
    for m in pruned:
        for replicas in (1, 6):
            if m.stage == "memory":
                with pytest.raises(HwsimError, match="no room for a KV cache|KV blocks"):
                    _p99s("llama2-13b", LOAD, m.tp, replicas, 64, m.dtype)
                continue
            ttft, tpot = _p99s("llama2-13b", LOAD, m.tp, replicas, 64, m.dtype)
            assert ttft > slo_t or tpot > slo_p, (m, replicas)


def test_replica_counts_below_the_throughput_bound_never_meet_the_slos(heavy_plan):
    below = [(b["tp"], b["dtype"], int(mb), n) for b in heavy_plan.bounds
             for mb, n in b["min_replicas"].items() if n > 1]
    assert below
    for tp, dtype, mb, n in below:
        ttft, tpot = _p99s("llama2-7b", HEAVY, tp, n - 1, mb, dtype)
        assert ttft > 1.0 or tpot > 0.05, (tp, mb, n)


def test_a_tighter_slo_never_gives_a_cheaper_answer():
    costs = []
    for ttft, tpot in ((1.0, 0.06), (0.5, 0.04), (0.3, 0.03), (0.1, 0.02)):
        r = plan("llama2-7b", ["l4"], HEAVY, ttft, tpot, **HEAVY_GRID)
        costs.append(r.fleets[0].usd_per_hour if r.feasible else math.inf)
    assert costs == sorted(costs) and costs[0] < math.inf


def test_more_load_never_needs_fewer_devices():
    devices, costs = [], []
    for rate in (2.0, 8.0, 32.0):
        load = ServeOptions(rate=rate, requests=200, prompt_len=256, output_len=64)
        r = plan("llama2-7b", ["l4"], load, 1.0, 0.05, **HEAVY_GRID)
        devices.append(r.fleets[0].devices)
        costs.append(r.fleets[0].usd_per_hour)
    assert devices == sorted(devices) and devices[0] < devices[-1]
    assert costs == sorted(costs)


def test_same_inputs_same_json_byte_for_byte():
    a = plan("llama2-7b", ["l4"], HEAVY, 1.0, 0.05, **HEAVY_GRID).to_json()
    b = plan("llama2-7b", ["l4"], HEAVY, 1.0, 0.05, **HEAVY_GRID).to_json()
    assert a == b
    doc = json.loads(a)
    assert doc["feasible"] and "wall_s" not in doc["search"]
    assert {"fleets", "near_misses", "search", "bounds", "cost", "slo", "load"} <= set(doc)


def test_cost_modes_cloud_share_and_tco_whole_systems():
    load = ServeOptions(rate=2.0, requests=40, prompt_len=128, output_len=16)
    kw = dict(tps=[1], dtypes=["bf16"], max_batches=[64])
    cloud = plan("gpt2", ["dgx-h100"], load, 0.5, 0.05, **kw).fleets[0]
    assert cloud.devices == 1 and "0.125 x dgx-h100" in cloud.hardware
    assert cloud.usd_per_hour == pytest.approx(98.32 / 8)
    r = plan("gpt2", ["dgx-h100"], load, 0.5, 0.05, cost_mode="tco", years=4, pue=1.3,
             usd_per_kwh=0.12, hosting_usd_per_kw_year=1500, **kw)
    tco = r.fleets[0]
    assert tco.hardware == "1 x dgx-h100 (7 h100-sxm idle)"
    b = tco.cost_breakdown
    assert b["hardware_usd_per_hour"] == pytest.approx(350_000 / (4 * HOURS_PER_YEAR))
    assert b["hosting_usd_per_hour"] == pytest.approx(10.2 * 1500 / HOURS_PER_YEAR, rel=0.01)
    assert b["energy_usd_per_hour"] == pytest.approx(tco.avg_power_w / 1e3 * 1.3 * 0.12)
    assert tco.avg_power_w > 7 * 90  # the idle GPUs of the bought system draw power too
    assert tco.usd_per_hour == pytest.approx(sum(b.values()))
    offered = r.load["output_tokens_per_s"]  # the load's, which every passing fleet serves
    assert offered == pytest.approx(r.load["arrival_rate_per_s"] * 16)
    assert tco.usd_per_million_tokens == pytest.approx(tco.usd_per_hour / (offered * 3600) * 1e6)
    assert tco.energy_per_output_token_j == pytest.approx(
        tco.avg_power_w / tco.output_tokens_per_s)


def test_fleet_system_buys_parts_one_by_one_and_systems_whole():
    assert fleet_system("l4", 1).count == 1
    s = fleet_system("h100-sxm", 6)
    assert s.count == 6 and s.link is not None and s.topology == "switch"
    d = fleet_system("dgx-h100", 12)
    assert d.count == 16 and d.nodes == 2


def test_a_device_cap_turns_big_fleets_into_near_misses():
    r = plan("llama2-7b", ["l4"], HEAVY, 1.0, 0.05, max_devices=2, **HEAVY_GRID)
    assert all(f.devices <= 2 for f in r.fleets)
    capped = [m for m in r.near_misses if "would need more than 2 devices" in m.reason]
    assert capped and all(m.stage == "simulated" and m.replicas for m in capped)


def test_no_fleet_meets_an_impossible_slo():
    r = plan("llama2-7b", ["l4"], HEAVY, 1.0, 0.001, **HEAVY_GRID)
    assert not r.feasible and r.near_misses
    assert all(m.stage == "tpot-bound" for m in r.near_misses)
    assert r.near_misses[0].miss == min(m.miss for m in r.near_misses) > 1


@pytest.mark.parametrize("kw, match", [
    (dict(load=ServeOptions(rate=0.0)), "--rate must be a positive"),
    (dict(load=ServeOptions(rate=-3.0)), "--rate must be a positive"),
    (dict(load=ServeOptions(offline=True)), "open-loop load"),
    (dict(load=ServeOptions()), "give exactly one load"),
    (dict(parts=[]), "--arch"),
    (dict(parts=[""]), "--arch"),
    (dict(parts=["nope-9000"]), "unknown part 'nope-9000'"),
    (dict(slo_ttft_p99=0.0), "--ttft-p99 must be a finite number > 0"),
    (dict(slo_tpot_p99=float("nan")), "--tpot-p99"),
    (dict(cost_mode="free"), "--cost must be one of cloud, tco"),
    (dict(pue=0.8), "--pue must be >= 1"),
    (dict(tps=[0]), "--tp must be positive integers"),
    (dict(dtypes=["fp9"]), "--dtype: unknown dtype 'fp9'"),
    (dict(max_batches=[]), "--max-batch: give at least one value"),
    (dict(workload="resnet50"), "serves decoder \\(LLM\\) models, not cnn"),
    (dict(load=ServeOptions(rate=1.0, prompt_len=9000)), "9000-token prompt"),
])
def test_bad_input_is_a_one_line_error(kw, match):
    args = dict(workload="gpt2", parts=["l4"], load=ServeOptions(rate=1.0, requests=10),
                slo_ttft_p99=0.5, slo_tpot_p99=0.05)
    args.update(kw)
    with pytest.raises(HwsimError, match=match):
        plan(args.pop("workload"), args.pop("parts"), args.pop("load"), args.pop("slo_ttft_p99"),
             args.pop("slo_tpot_p99"), **args)


# -- the command line ------------------------------------------------------------------------
FAST = ["plan", "--workload", "llama2-7b", "--arch", "l4", "--requests", "100",
        "--prompt-len", "256", "--output-len", "32", "--tp", "1,2", "--dtype", "fp8",
        "--max-batch", "64"]


def test_cli_table_and_json(capsys):
    assert main([*FAST, "--rate", "4", "--ttft-p99", "1", "--tpot-p99", "0.05"]) == 0
    out = capsys.readouterr().out
    assert "Cheapest fleets that meet the SLOs" in out and "$/1M tok" in out
    assert "Search: 2 configurations" in out
    assert main([*FAST, "--rate", "4", "--ttft-p99", "1", "--tpot-p99", "0.05", "--json"]) == 0
    a = capsys.readouterr().out
    assert main([*FAST, "--rate", "4", "--ttft-p99", "1", "--tpot-p99", "0.05", "--json"]) == 0
    assert capsys.readouterr().out == a
    doc = json.loads(a)
    f = doc["fleets"][0]
    assert {"usd_per_hour", "usd_per_million_tokens", "energy_per_output_token_j",
            "avg_power_w", "replicas", "tp", "dtype", "max_batch"} <= set(f)


def test_cli_no_feasible_fleet_exits_1_with_the_closest(capsys):
    assert main([*FAST, "--rate", "4", "--ttft-p99", "1", "--tpot-p99", "0.001"]) == 1
    out = capsys.readouterr().out
    assert "No fleet meets the SLOs" in out and "TPOT >=" in out
    assert main([*FAST, "--rate", "4", "--ttft-p99", "1", "--tpot-p99", "0.001",
                 "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["feasible"] is False


@pytest.mark.parametrize("extra, match", [
    (["--rate", "0"], "error: --rate must be a positive number"),
    (["--rate", "-2"], "error: --rate must be a positive number"),
    (["--arch", "", "--rate", "1"], "error: --arch"),
    (["--arch", "l4,,h100-sxm", "--rate", "1"], "error: --arch"),
    (["--arch", "nope-9000", "--rate", "1"], "error: .*unknown part"),
    (["--rate", "1", "--tp", "1,x"], "error: --tp"),
    (["--rate", "1", "--ttft-p99", "-1"], "error: --ttft-p99"),
])
def test_cli_bad_input_exits_2_with_one_line(extra, match, capsys):
    argv = [*FAST, "--ttft-p99", "1", "--tpot-p99", "0.05", *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert __import__("re").search(match, err), err


@pytest.mark.parametrize("rows, match", [
    ("arrival_s,prompt_tokens,output_tokens\n0.0,128,16\n0.5,,16\n", r":3: missing prompt"),
    ("arrival_s,prompt_tokens,output_tokens\n0.0,128,16\n0.5,128,-4\n", r":3: output_tokens"),
    ("arrival_s,prompt_tokens\n0.0,128\n", r":2: missing output_tokens"),
])
def test_cli_bad_trace_exits_2_naming_the_line(rows, match, tmp_path, capsys):
    trace = tmp_path / "t.csv"
    trace.write_text(rows)
    assert main([*FAST, "--trace", str(trace), "--ttft-p99", "1", "--tpot-p99", "0.05"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and __import__("re").search(match, err), err


def test_cli_trace_load(tmp_path, capsys):
    trace = tmp_path / "t.jsonl"
    trace.write_text("".join(json.dumps({"arrival_s": i * 0.25, "prompt_tokens": 200 + i,
                                         "output_tokens": 24}) + "\n" for i in range(60)))
    assert main([*FAST, "--trace", str(trace), "--ttft-p99", "1", "--tpot-p99", "0.05",
                 "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["load"]["requests"] == 60 and doc["load"]["kind"].startswith("trace")
