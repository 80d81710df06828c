"""Speed targets of ``hwsim explore`` (``pytest -m bench``; not in the default run).

The issue's targets: at least 1,000 design points per minute per core for a transformer-layer
workload on a parametric systolic part, and a near-linear speed-up from 1 to 2 local Dask
workers. Both are measured side by side in one run and printed; the asserts are the targets.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from simulator.explore import load, load_study, run_study

pytestmark = pytest.mark.bench

STUDY = """\
name: bench-systolic
base: systolic-32x32
workloads:
  - {workload: bert-base, phase: forward, batch: 1, seq: 128}
axes:
  compute.pe_array.count: [1, 2, 4, 8, 16]
  params.sram.ifmap: [16 KiB, 32 KiB, 64 KiB, 128 KiB, 256 KiB]
  params.sram.filter: [16 KiB, 32 KiB, 64 KiB, 128 KiB, 256 KiB]
  memory.dram.bandwidth: [10 GB/s, 25.6 GB/s, 51.2 GB/s, 102.4 GB/s]
  dtype: [int8, fp16]
objectives: {latency_s: min, energy_j: min}
search: {method: grid}
"""


def _study(tmp_path: Path):
    p = tmp_path / "bench.yaml"
    p.write_text(STUDY, encoding="utf-8")
    return load_study(p)


def test_points_per_minute_per_core(tmp_path, capsys):
    s = _study(tmp_path)
    t0 = time.perf_counter()
    run = run_study(s, tmp_path / "one")
    wall = time.perf_counter() - t0
    per_min = run.evaluated / wall * 60
    with capsys.disabled():
        print(f"\nhwsim explore, bert-base (12 transformer layers) on systolic-32x32 variants: "
              f"{run.evaluated} points in {wall:.1f} s on one core = {per_min:,.0f} points/min")
    assert set(load(run.directory)["status"]) == {"ok"}
    assert per_min >= 1000


def test_dask_one_to_two_workers(tmp_path, capsys):
    pytest.importorskip("distributed")
    s = _study(tmp_path)
    walls = {}
    for n in (1, 2):
        t0 = time.perf_counter()
        run_study(s, tmp_path / f"dask{n}", backend="dask", jobs=n)
        walls[n] = time.perf_counter() - t0
    with capsys.disabled():
        print(f"\nhwsim explore on a Dask LocalCluster ({s.grid_size()} points): 1 worker "
              f"{walls[1]:.1f} s, 2 workers {walls[2]:.1f} s: {walls[1] / walls[2]:.2f}x "
              "(cluster start-up included)")
    assert walls[1] / walls[2] > 1.5
