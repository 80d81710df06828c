"""Published training throughput against hwsim's predicted step time.

Megatron-LM's Table 1 (Narayanan et al., SC'21: GPT 1.7B to 1T on up to 3072 A100s) and PaLM
540B on TPU v4 (one of its two 3072-chip pods, against the published throughput / 1.95,
PaLM's two-pod speed-up), both from tests/golden/training_published.json. For Megatron the
published figure is teraFLOP/s per GPU counted with the paper's Eq. 3; the prediction applies
the same formula to hwsim's step time, so the comparison is of step time alone.

Each row runs in its own process under a time limit; the
table gives published and predicted throughput, the error, and the step's breakdown on device
0: compute, exposed communication, pipeline bubble, the recomputed share of executed FLOPs and
the optimizer's share of the step.

    python experiments/training_published/run.py                       # every row, 60 s each
    python experiments/training_published/run.py --rows megatron-1.7b,megatron-3.6b
    python experiments/training_published/run.py --time-limit 600 --rows megatron-76b
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "golden" / "training_published.json"
HERE = Path(__file__).resolve().parent


# names the training graph gives the optimizer update on replica 0's first device
_OPTIMIZER_NAMES = ("dp0.optimizer.adam", "dp0.optimizer.s0")


def megatron_flops(batch: int, seq: int, layers: int, hidden: int, vocab: int) -> float:
    """FLOPs of one iteration by Narayanan et al. 2021, Eq. 3 (with the recomputed forward)."""
    h, s, v, n = hidden, seq, vocab, layers
    return 96 * batch * s * n * h * h * (1 + s / (6 * h) + v / (16 * n * h))


def load_cases(path: Path = DATA) -> list[dict[str, Any]]:
    """One case per published figure: its name, published value, hwsim layout, comparison."""
    data = json.loads(path.read_text())
    meg = data["megatron_sc21"]
    vocab, seq = meg["setup"]["vocabulary"], meg["setup"]["sequence_length"]
    cases = []
    for row in meg["rows"]:
        pub = row["published"]
        flops = megatron_flops(pub["batch_size"], seq, pub["layers"], pub["hidden_size"], vocab)
        cases.append({
            "name": row["name"], "model": row["model"], "hwsim": row["hwsim"],
            "gpus": pub["gpus"], "metric": "TFLOP/s/GPU",
            "published": pub["teraflops_per_gpu"], "iteration_flops": flops,
            "published_step_s": flops / (pub["teraflops_per_gpu"] * 1e12 * pub["gpus"]),
            "blocked": row.get("blocked")})
    palm = data["palm_540b"]
    pub = palm["published"]
    cases.append({
        "name": "palm-540b", "model": pub["model"], "hwsim": palm["hwsim"],
        "gpus": pub["chips_per_pod"], "metric": "tokens/s (one pod)",
        "published": pub["derived_one_pod_tokens_per_s"],
        "tokens": palm["hwsim"]["global_batch"] * pub["sequence_length"],
        "published_step_s": pub["derived_one_pod_step_s"], "blocked": palm.get("blocked")})
    return cases


def _train(model: str, kw: dict[str, Any]):
    """train() with the row's layout; an interleaved schedule falls back to 1F1B while hwsim
    does not model it (the note says so)."""
    from simulator.errors import HwsimError
    from simulator.train import train

    kw = dict(kw)
    arch = kw.pop("arch")
    kw.pop("count", None)
    v = kw.pop("virtual_stages", None)
    if v and v > 1:
        try:
            return train(model, arch, schedule="interleaved", virtual_stages=v, **kw), None
        except HwsimError as e:
            if "interleaved" not in str(e):
                raise
            note = f"interleaved ({v} virtual stages) not modelled yet: ran 1F1B"
            return train(model, arch, **kw), note
    return train(model, arch, **kw), None


def simulate_case(case: dict[str, Any]) -> dict[str, Any]:
    """Run one case in this process; returns hwsim's numbers and the comparison."""
    t0 = time.perf_counter()
    r, note = _train(case["model"], case["hwsim"])
    wall = time.perf_counter() - t0
    m = r.metrics
    step = m["step_time_s"]
    optimizer_s = sum(r.result.records.sum_over("latency_s", device=0, name=n)
                      for n in _OPTIMIZER_NAMES)
    if case["metric"] == "TFLOP/s/GPU":
        predicted = case["iteration_flops"] / step / case["gpus"] / 1e12
    else:
        predicted = case["tokens"] / step
    executed = m["executed_flops"]
    return {
        "status": "ok", "note": note, "sim_wall_s": wall,
        "schedule": m["schedule"], "predicted": predicted,
        "error": predicted / case["published"] - 1,
        "step_s": step, "step_error": step / case["published_step_s"] - 1,
        "mfu": m["mfu"], "hfu": m["hfu"],
        "compute_share": m["compute_time_s"] / step,
        "exposed_comm_share": m["exposed_comm_s"] / step,
        "bubble": m["bubble_fraction"],
        "recompute_share": (executed - m["model_flops"]) / executed if executed else 0.0,
        "optimizer_share": optimizer_s / step if optimizer_s else None,
        "comm_time_s": m["comm_time_s"], "warnings": m["warnings"]}


def _child(case: dict[str, Any], conn) -> None:
    try:
        conn.send(simulate_case(case))
    except Exception as e:  # reported in the table, not raised: one row must not stop the rest
        conn.send({"status": "error", "note": f"{type(e).__name__}: {e}"})
    finally:
        conn.close()


def run_with_limit(case: dict[str, Any], limit_s: float) -> dict[str, Any]:
    """simulate_case in a child process, stopped after ``limit_s`` seconds."""
    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_child, args=(case, send), daemon=True)
    t0 = time.perf_counter()
    p.start()
    send.close()
    timed_out = not recv.poll(limit_s)
    try:
        out = None if timed_out else recv.recv()
    except EOFError:  # the child died without answering (killed for memory, say)
        out = None
    p.join(timeout=5)
    if p.is_alive():
        p.terminate()
        p.join()
    if out is None and not timed_out:
        return {"status": "error", "sim_wall_s": time.perf_counter() - t0,
                "note": f"the row's process exited with code {p.exitcode} without a result"}
    if out is None:
        return {"status": "timeout", "sim_wall_s": time.perf_counter() - t0,
                "note": f"stopped after {limit_s:.0f} s; raise --time-limit"}
    out.setdefault("sim_wall_s", time.perf_counter() - t0)  # errors: time to the refusal
    return out


def _pct(x: float | None, digits: int = 0) -> str:
    return "-" if x is None else f"{100 * x:.{digits}f}%"


def _signed(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:+.1f}%"


COLUMNS = ("row", "devices", "layout", "metric", "published", "predicted", "error", "pub step s",
           "pred step s", "step err", "compute", "exp comm", "bubble", "recompute", "optimizer",
           "sim s", "status")


def table_rows(cases: list[dict[str, Any]], results: list[dict[str, Any]]) -> list[list[str]]:
    out = []
    for c, r in zip(cases, results):
        h = c["hwsim"]
        layout = f"tp{h['tp']} pp{h['pp']} dp{h['dp']} mb{h['micro_batch']}"
        ok = r["status"] == "ok"
        pred = f"{r['predicted']:.4g}" if ok else "-"
        status = r["status"] + (f" ({r['note']})" if r.get("note") else "")
        out.append([
            c["name"], str(c["gpus"]), layout, c["metric"], f"{c['published']:g}", pred,
            _signed(r.get("error")), f"{c['published_step_s']:.2f}",
            f"{r['step_s']:.2f}" if ok else "-", _signed(r.get("step_error")),
            _pct(r.get("compute_share")), _pct(r.get("exposed_comm_share")),
            _pct(r.get("bubble")), _pct(r.get("recompute_share")),
            _pct(r.get("optimizer_share"), 1),
            f"{r['sim_wall_s']:.1f}" if r.get("sim_wall_s") is not None else "-", status])
    return out


def markdown(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", help="comma-separated row names (default: all)")
    ap.add_argument("--time-limit", type=float, default=60.0,
                    help="seconds per row before it is stopped (default 60)")
    ap.add_argument("--try-blocked", action="store_true",
                    help="also run rows marked blocked in the data file")
    ap.add_argument("--out", type=Path, default=HERE, help="folder for results.json/.md")
    args = ap.parse_args(argv)

    cases = load_cases()
    if args.rows:
        wanted = [n.strip() for n in args.rows.split(",") if n.strip()]
        known = {c["name"] for c in cases}
        unknown = sorted(set(wanted) - known)
        if unknown:
            ap.error(f"unknown rows {unknown}; known: {sorted(known)}")
        cases = [c for c in cases if c["name"] in wanted]
    results = []
    for c in cases:
        if c["blocked"] and not args.try_blocked:
            r = {"status": "blocked", "note": c["blocked"].split(":")[0]}
            print(f"{c['name']}: blocked: {c['blocked']}", flush=True)
            results.append(r)
            continue
        else:
            r = run_with_limit(c, args.time_limit)
        results.append(r)
        print(f"{c['name']}: {r['status']}"
              + (f" {_signed(r['error'])} in {r['sim_wall_s']:.1f} s" if r["status"] == "ok"
                 else f" ({r.get('note')})"), flush=True)
    rows = table_rows(cases, results)
    md = markdown(rows)
    print()
    print(md)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text(
        "# Published training throughput vs hwsim\n\nGenerated by `python experiments/"
        "training_published/run.py` (time limit " f"{args.time_limit:.0f} s per row).\n\n" + md)
    payload = [{"name": c["name"], "metric": c["metric"], "published": c["published"],
                "published_step_s": c["published_step_s"], "hwsim": c["hwsim"], **r}
               for c, r in zip(cases, results)]
    (args.out / "results.json").write_text(json.dumps(payload, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
