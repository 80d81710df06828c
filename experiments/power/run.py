"""H100 power limit what-if: latency and energy at 300/400/500/600/700 W.

Runs Llama-3-8B on one H100 SXM (arch_specs/gpu/h100-sxm.yaml) under each power limit
(``Predictor(power_limit_w=...)``, the same as ``hwsim run --power-limit W``) for three loads:

* prefill, batch 8 x 2,048 tokens: GEMM-heavy, compute-bound, at the 700 W cap already;
* a GPT-2 XL training step (batch 8 x 1,024, AdamW; Llama-3-8B training does not fit one
  80 GB GPU): GEMM-heavy, forward + backward;
* decode, batch 64, context 450: HBM-bound (the clock barely matters).

Under a limit the run's limiter (simulator/power/run_clock.py: it regulates the power averaged
over a window far longer than a kernel) holds the whole run at ONE clock, the highest at which
its average fits (dynamic power ~ f V^2, V linear in f): compute-bound time stretches by
f_ref / f (f_ref: the run's clock at the TDP, where the mappers' rates apply), HBM-bound time
does not, and energy per op falls with V^2. Writes
results/power_limit.csv and results/power_limit.png. Run:
``python experiments/power/run.py`` (under a minute).
"""

from __future__ import annotations

import csv
from pathlib import Path

from simulator.arch.loader import load_arch
from simulator.plan import make_plan
from simulator.predict import Predictor

OUT = Path(__file__).parent / "results"
ARCH = "h100-sxm"
LIMITS = (300, 400, 500, 600, 700)
LOADS = {
    "prefill b8 x 2048": dict(phase="prefill", batch=8, seq=2048),
    "training gpt2-xl b8 x 1024": dict(model="gpt2-xl", phase="train", batch=8, seq=1024),
    "decode b64 ctx 450": dict(phase="decode", batch=64, context=450),
}


def sweep() -> list[dict]:
    system = load_arch(ARCH)
    rows = []
    for load, kw in LOADS.items():
        for w in LIMITS:
            p = Predictor(system, power_limit_w=float(w))
            args = {k: v for k, v in kw.items() if k != "model"}
            plan = make_plan(kw.get("model", "llama3-8b"), p.system, **args)
            r = p.predict(plan.build(), plan)
            pw = r.meta["power"]
            rows.append({"load": load, "power_limit_w": w, "latency_s": r.latency_s,
                         "energy_j": r.energy_j, "device_power_w": r.device_power_w,
                         "peak_power_w": r.peak_power_w,
                         "effective_clock_ghz": pw["effective_clock_hz"] / 1e9,
                         "tokens_per_s": r.tokens / r.latency_s if r.tokens else None,
                         "energy_per_token_j": r.energy_per_token_j})
    return rows


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(LOADS), figsize=(5 * len(LOADS), 4))
    for ax, load in zip(axes, LOADS, strict=True):
        sel = [r for r in rows if r["load"] == load]
        base = next(r for r in sel if r["power_limit_w"] == max(LIMITS))
        x = [r["latency_s"] / base["latency_s"] for r in sel]
        y = [r["energy_j"] / base["energy_j"] for r in sel]
        ax.plot(x, y, "o-")
        for r, xi, yi in zip(sel, x, y, strict=True):
            ax.annotate(f"{r['power_limit_w']} W\n{r['effective_clock_ghz']:.2f} GHz", (xi, yi),
                        textcoords="offset points", xytext=(6, 4), fontsize=8)
        ax.set_title(f"{load}")
        ax.set_xlabel("latency relative to 700 W")
        ax.set_ylabel("energy relative to 700 W")
        ax.grid(alpha=0.3)
    fig.suptitle("Llama-3-8B on H100 SXM under a power limit (hwsim power-cap step)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    OUT.mkdir(exist_ok=True)
    rows = sweep()
    with open(OUT / "power_limit.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    for r in rows:
        print(f"{r['load']:20s} {r['power_limit_w']:4d} W: latency {r['latency_s'] * 1e3:8.2f} ms"
              f"  energy {r['energy_j']:8.2f} J  avg {r['device_power_w']:5.0f} W  peak "
              f"{r['peak_power_w']:5.0f} W  clock {r['effective_clock_ghz']:.2f} GHz")
    plot(rows, OUT / "power_limit.png")


if __name__ == "__main__":
    main()
