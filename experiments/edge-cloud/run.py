"""ResNet-50, MobileNet v2 and Llama-3.2-3B: on the edge or in the cloud?

Runs :func:`simulator.edge_cloud.edge_vs_cloud` for each model on an edge part (Jetson Orin
Nano 8GB; also the Coral Edge TPU for MobileNet) against a cloud part (L4) over Wi-Fi, LTE and
5G, then sweeps what flips the answer: uplink bandwidth and RTT (latency, device energy),
cloud batch (cost, cloud energy) and edge utilisation (cost).

Writes results/options.csv, results/crossovers.csv, results/sweeps.csv and
results/edge_vs_cloud.png. Run: ``python experiments/edge-cloud/run.py`` (about a minute).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from simulator.edge_cloud import PRESETS, edge_vs_cloud, with_rates

OUT = Path(__file__).parent / "results"
CLOUD = "l4"
CLOUD_BATCH = 8
MODELS = {  # model -> edge parts
    "resnet50": ["jetson-orin-nano-8gb"],
    "mobilenet-v2": ["jetson-orin-nano-8gb", "coral-edge-tpu"],
    "llama3.2-3b": ["jetson-orin-nano-8gb"],
}
LLM = {"prompt_tokens": 128, "gen_tokens": 128}


def _kw(model: str) -> dict:
    return LLM if model.startswith("llama") else {}


def options() -> list[dict]:
    rows = []
    for model, edges in MODELS.items():
        for i, edge in enumerate(edges):
            for o in edge_vs_cloud(model, edge, CLOUD, list(PRESETS.values()),
                                   cloud_batch=CLOUD_BATCH, **_kw(model)):
                if o.where == "cloud" and i > 0:
                    continue  # the cloud rows differ only in the waiting device's idle power
                rows.append({"model": model, **o.to_dict()})
    return rows


def _first_crossing(xs, edge_vals, cloud_vals):
    """First x where the sign of (cloud - edge) changes, interpolated in log x; None if none."""
    d = [c - e for e, c in zip(edge_vals, cloud_vals, strict=True)]
    for i in range(1, len(xs)):
        if (d[i - 1] > 0) != (d[i] > 0):
            t = d[i - 1] / (d[i - 1] - d[i])
            return math.exp(math.log(xs[i - 1]) + t * (math.log(xs[i]) - math.log(xs[i - 1])))
    return None



def _sweep_row(model: str, sweep: str, x: float, e, c, cloud_energy: bool = False) -> dict:
    """One row of results/sweeps.csv: the edge and cloud options at one sweep value."""
    row = {"model": model, "sweep": sweep, "x": x,
           "edge_latency_s": e.latency_s, "cloud_latency_s": c.latency_s,
           "edge_device_j": e.device_energy_j, "cloud_device_j": c.device_energy_j,
           "edge_usd_per_m": e.usd_per_million, "cloud_usd_per_m": c.usd_per_million}
    if cloud_energy:
        row["cloud_energy_j"] = c.cloud_energy_j
    return row

def sweeps() -> tuple[list[dict], list[dict]]:
    grid_mbps = [0.01 * 10 ** (k / 8) for k in range(0, 41)]  # 10 kbit/s .. 1 Gbit/s
    grid_rtt = [0.001 * 10 ** (k / 8) for k in range(0, 33)]  # 1 ms .. 10 s
    batches = [1, 2, 4, 8, 16, 32, 64, 128]
    utils = [0.001 * 10 ** (k / 8) for k in range(0, 25)]  # 0.1% .. 100%
    sweep_rows, cross = [], []
    edge = "jetson-orin-nano-8gb"
    for model in MODELS:
        kw = _kw(model)
        e_lat, c_lat, e_j, c_j = [], [], [], []
        for mbps in grid_mbps:  # Wi-Fi energy model, uplink varied, downlink 2.5x
            net = with_rates(PRESETS["wifi"], uplink_bps=mbps * 1e6, downlink_bps=2.5 * mbps * 1e6)
            e, c = edge_vs_cloud(model, edge, CLOUD, net, cloud_batch=CLOUD_BATCH, **kw)
            e_lat.append(e.latency_s), c_lat.append(c.latency_s)
            e_j.append(e.device_energy_j), c_j.append(c.device_energy_j)
            sweep_rows.append(_sweep_row(model, "uplink_mbps", mbps, e, c))
        cross.append({"model": model, "what": "latency: cloud faster above uplink (Mbit/s)",
                      "value": _first_crossing(grid_mbps, e_lat, c_lat)})
        cross.append({"model": model, "what": "device energy: cloud lower above uplink (Mbit/s)",
                      "value": _first_crossing(grid_mbps, e_j, c_j)})
        e_lat, c_lat = [], []
        for rtt in grid_rtt:  # Wi-Fi rates, RTT varied
            e, c = edge_vs_cloud(model, edge, CLOUD, with_rates(PRESETS["wifi"], rtt_s=rtt),
                                 cloud_batch=CLOUD_BATCH, **kw)
            e_lat.append(e.latency_s), c_lat.append(c.latency_s)
            sweep_rows.append(_sweep_row(model, "rtt_s", rtt, e, c))
        cross.append({"model": model, "what": "latency: edge faster above RTT (s)",
                      "value": _first_crossing(grid_rtt, e_lat, c_lat)})
        e_usd, c_usd = [], []
        for b in batches:
            e, c = edge_vs_cloud(model, edge, CLOUD, PRESETS["wifi"], cloud_batch=b, **kw)
            e_usd.append(e.usd_per_million), c_usd.append(c.usd_per_million)
            sweep_rows.append(_sweep_row(model, "cloud_batch", b, e, c, cloud_energy=True))
        cross.append({"model": model, "what": "cost: cloud cheaper above cloud batch",
                      "value": _first_crossing(batches, e_usd, c_usd)})
        e_usd, c_usd = [], []
        for u in utils:
            e, c = edge_vs_cloud(model, edge, CLOUD, PRESETS["wifi"], cloud_batch=CLOUD_BATCH,
                                 edge_utilization=u, **kw)
            e_usd.append(e.usd_per_million), c_usd.append(c.usd_per_million)
            sweep_rows.append({"model": model, "sweep": "edge_utilization", "x": u,
                               "edge_usd_per_m": e.usd_per_million,
                               "cloud_usd_per_m": c.usd_per_million})
        cross.append({"model": model,
                      "what": "cost: edge cheaper above edge utilisation (cloud batch 8, 50% "
                              "utilised)", "value": _first_crossing(utils, c_usd, e_usd)})
    return sweep_rows, cross


def _write(path: Path, rows: list[dict]) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, keys)
        w.writeheader()
        w.writerows(rows)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    ok = [r for r in rows if r["error"] is None]
    fig, ax = plt.subplots(figsize=(9, 6))
    markers = {"resnet50": "o", "mobilenet-v2": "s", "llama3.2-3b": "^"}
    costs = [r["usd_per_million"] for r in ok]
    norm = LogNorm(min(costs), max(costs))
    for r in ok:
        sc = ax.scatter(r["latency_s"], r["device_energy_j"], c=[r["usd_per_million"]],
                        cmap="viridis", norm=norm, marker=markers[r["model"]], s=90,
                        edgecolors="k" if r["where"] == "edge" else "none", linewidths=1.2)
        label = ("edge " + r["arch"].split("-")[0] if r["where"] == "edge"
                 else f"L4/{r['network']}")
        ax.annotate(f"{r['model']}\n{label}", (r["latency_s"], r["device_energy_j"]),
                    fontsize=6.5, xytext=(4, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("end-to-end latency per inference (s)")
    ax.set_ylabel("device (battery) energy per inference (J)")
    ax.set_title(f"Edge or cloud? (cloud: L4, batch {CLOUD_BATCH}, 50% utilised; "
                 "edge: 10% utilised)\n○ ResNet-50  □ MobileNet v2  △ Llama-3.2-3B "
                 "(128 in, 128 out); black edge = on-device", fontsize=9)
    fig.colorbar(sc, ax=ax, label="$ per million inferences (log)")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=130)


def main() -> None:
    OUT.mkdir(exist_ok=True)
    rows = options()
    _write(OUT / "options.csv", rows)
    sweep_rows, cross = sweeps()
    _write(OUT / "sweeps.csv", sweep_rows)
    _write(OUT / "crossovers.csv", cross)
    plot(rows, OUT / "edge_vs_cloud.png")
    for r in rows:
        print(f"{r['model']:13s} {r['name']:32s} "
              + (f"{r['latency_s']:10.4g} s {r['device_energy_j']:10.4g} J "
                 f"{r['cloud_energy_j']:10.4g} J ${r['usd_per_million']:10.4g}/M"
                 if r["error"] is None else "does not run: " + r["error"]))
    for c in cross:
        v = c["value"]
        print(f"{c['model']:13s} {c['what']}: {'never in range' if v is None else f'{v:.4g}'}")


if __name__ == "__main__":
    main()
