"""Llama-3.1-8B served with vLLM on one H100 / B200 (ML.ENERGY): hwsim's GPU power and energy
per output token against the published figures, and where the watts go.

Simulated as tests/golden/test_published_power.py does (a closed loop of ``max_num_seqs``
users, chunked prefill, the row's mean output length, 600-token prompts chosen from the
published latency; ``--timing graph``: vLLM captures CUDA graphs by default). Writes
results/mlenergy.csv and prints the table, then the split of the power at batch 8 and 512: idle, busy floor and dynamic energy of the serving run (after the
sustained-power limiter, simulator/power/governor.py), and the dynamic energy by kind (tensor
math, HBM, the on-chip path of HBM bytes, L2, L2 -> SM crossbar) of a decode step and of a
600-token prefill chunk at full clock. Run: ``python experiments/power/mlenergy.py`` (~15 s).
"""

from __future__ import annotations

import csv
from pathlib import Path

from simulator.arch.loader import load_arch
from simulator.plan import make_plan
from simulator.power import NO_LIMIT_W
from simulator.predict import Predictor
from simulator.serve import ServeOptions, serve

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "experiments" / "data" / "mlenergy-h100-b200" / "llama3.1-8b_lm-arena-chat.csv"
OUT = Path(__file__).parent / "results"
GPU = {"H100": "h100-sxm", "B200": "b200"}
PROMPT = 600


def table() -> list[dict]:
    rows = []
    for r in csv.DictReader(open(DATA)):
        b = int(r["max_num_seqs"])
        if r["gpu_model"] == "B200" and b > 16:
            continue  # the published B200 throughput stops following the batch (see the test)
        o = ServeOptions(users=b, max_batch=b, requests=max(3 * b, 64), prompt_len=PROMPT,
                         output_len=round(float(r["avg_output_len"])), chunked_prefill=True,
                         seed=0)
        s = load_arch(GPU[r["gpu_model"]])
        # vLLM runs its iterations as CUDA graphs (tests/golden/test_published_power.py)
        m = serve("llama3-8b", s, o, predictor=Predictor(s, timing="graph")).metrics
        span, eb = m["duration_s"], m["energy_breakdown"]
        p, e = m["avg_device_power_w"], m["device_energy_per_output_token_j"]
        pp, pe = float(r["avg_power_watts"]), float(r["energy_per_token_joules"])
        rows.append({"gpu": r["gpu_model"], "batch": b, "power_w": p, "published_power_w": pp,
                     "power_err": p / pp - 1, "j_per_token": e, "published_j_per_token": pe,
                     "energy_err": e / pe - 1, "tokens_per_s": m["output_tokens_per_s"],
                     "published_tokens_per_s": float(r["output_throughput_tokens_per_sec"]),
                     "idle_w": eb["idle_j"] / span, "floor_w": eb["active_floor_j"] / span,
                     "dynamic_w": eb["dynamic_j"] / span,
                     "sustained_clock_scale": m["sustained_clock_scale"]})
    return rows


def split(arch: str = "h100-sxm") -> list[str]:
    """Dynamic power by kind of a decode step and a prefill chunk at full clock."""
    p = Predictor(load_arch(arch), power_limit_w=NO_LIMIT_W, timing="graph")
    out = []
    for tag, kw in (("decode b8 ctx 800", dict(phase="decode", batch=8, context=800)),
                    ("decode b512 ctx 800", dict(phase="decode", batch=512, context=800)),
                    ("prefill 600 tokens", dict(phase="prefill", batch=1, seq=PROMPT))):
        plan = make_plan("llama3-8b", p.system, **kw)
        r = p.predict(plan.build(), plan)
        e, t = r.energy, r.latency_s
        parts = {"compute": e.compute_j / t, **{k: v / t for k, v in e.memory_j.items()}}
        out.append(f"{tag}: {t * 1e3:.1f} ms, " + ", ".join(
            f"{k} {v:.0f} W" for k, v in sorted(parts.items(), key=lambda kv: -kv[1])))
    return out


def main() -> None:
    OUT.mkdir(exist_ok=True)
    rows = table()
    with open(OUT / "mlenergy.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print("| gpu | batch | power | published | error | J/token | published | error | "
          "tokens/s (published) | idle / floor / dynamic W | clock |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['gpu']} | {r['batch']} | {r['power_w']:.0f} W | "
              f"{r['published_power_w']:.0f} W | {100 * r['power_err']:+.1f}% | "
              f"{r['j_per_token']:.3f} | {r['published_j_per_token']:.3f} | "
              f"{100 * r['energy_err']:+.1f}% | {r['tokens_per_s']:.0f} "
              f"({r['published_tokens_per_s']:.0f}) | {r['idle_w']:.0f} / {r['floor_w']:.0f} / "
              f"{r['dynamic_w']:.0f} | {r['sustained_clock_scale']:.3f} |")
    for line in split():
        print(line)


if __name__ == "__main__":
    main()
