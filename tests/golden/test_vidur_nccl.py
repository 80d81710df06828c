"""Replay of public NCCL timings on DGX A100 nodes (the Vidur profiles) against hwsim's NCCL
model (:mod:`simulator.network.nccl`): cases, MAPE and bias, uncalibrated.

The data (``experiments/data/vidur-a100`` or ``$HWSIM_VIDUR_A100``; source, MIT license and
columns in its README) are Kineto kernel times, medians in milliseconds, of
``torch.distributed.all_reduce`` and ``send``/``recv`` on fp16 buffers, 11 back-to-back calls
after a barrier (vidur/profiling/collectives). ``size`` is bytes (Vidur's collectives_wrapper
records ``self._size * 2``). ``num_workers`` GPUs with ``devices_per_node`` of them per node:
all-reduce inside one node (2/4/8 GPUs) and across 2 nodes (2 x 1, 2 x 2, 2 x 4, 2 x 8);
send/recv inside a node and between two nodes.
"""

from __future__ import annotations

import csv
import math
import os
import statistics
from collections import defaultdict
from functools import cache
from pathlib import Path

from simulator.arch.loader import load_arch
from simulator.mapping.gpu import kernel_time
from simulator.predict import Predictor
from workloads.ops import Collective

DATA = Path(os.environ.get("HWSIM_VIDUR_A100", Path(__file__).resolve().parents[2]
                           / "experiments/data/vidur-a100"))
MIB = 2**20
Case = tuple[int, float, float]  # (bytes, measured s, predicted s)


@cache
def _profile(name: str, col: str) -> dict[tuple[int, int], dict[int, float]]:
    """{(GPUs, GPUs per node): {bytes: median measured s}} of one network profile."""
    out: dict[tuple[int, int], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    with open(DATA / name, newline="") as f:
        for r in csv.DictReader(f):
            key = (int(r["num_workers"]), int(r["devices_per_node"]))
            out[key][int(r["size"])].append(float(r[col]) * 1e-3)  # ms -> s
    return {k: {n: statistics.median(ts) for n, ts in v.items()} for k, v in out.items()}


@cache
def _predictor(count: int) -> Predictor:
    return Predictor(load_arch("dgx-a100", [f"count={count}"] if count > 8 else []))


def _predict(kind: str, nbytes: float, workers: int, per_node: int) -> float:
    """hwsim's kernel time of ``kind`` over ``workers`` GPUs, ``per_node`` per node."""
    nodes = workers // per_node
    devices = tuple(node * 8 + i for node in range(nodes) for i in range(per_node))
    op = Collective(collective=kind, bytes=float(nbytes), devices=workers, dtype="fp16")
    return kernel_time(_predictor(8 * nodes).cost(op, devices))


@cache
def _allreduce(workers: int, per_node: int, lo: float = 0.0, hi: float = math.inf
               ) -> tuple[Case, ...]:
    prof = _profile("dgx_all_reduce.csv", "time_stats.all_reduce.median")[(workers, per_node)]
    return tuple((n, m, _predict("allreduce", n, workers, per_node))
                 for n, m in sorted(prof.items()) if lo <= n < hi)


def _stats(cases: tuple[Case, ...] | list[Case]) -> tuple[int, float, float]:
    """(cases, MAPE %, bias %) with bias the mean signed relative error (+ = too slow)."""
    errs = [(p - m) / m for _, m, p in cases]
    return len(errs), 100 * sum(map(abs, errs)) / len(errs), 100 * sum(errs) / len(errs)


def _table() -> str:
    lines = ["GPUs | size | cases | MAPE | bias"]
    for p in (2, 4, 8):
        for lo, hi in ((4, 16), (16, 32), (32, 65), (4, 65)):
            n, mape, bias = _stats(_allreduce(p, p, lo * MIB, hi * MIB))
            lines.append(f"{p} | {lo}-{min(hi, 64)} MiB | {n} | {mape:.1f}% | {bias:+.1f}%")
    return "\n".join(lines)


def test_nccl_allreduce_in_one_node():
    """All-reduce inside one DGX A100, 2/4/8 GPUs, 4-64 MiB, as NCCL runs it: the pair its
    tuner estimates fastest (getAlgoInfo), timed as its kernels move the data: 24 ring
    channels, 2 MiB chunks, two slices per step moved in 64 KiB copy rounds, one NVLink
    latency (the spec's 2 us) per round and per step's flag, the bytes at NCCL's 240 GB/s bus
    bandwidth, and each loop's one local copy (runRing runs 2p-1 primitives for 2(p-1) link
    steps: n/p read and written in HBM at 0.88 x 2.039 TB/s, its rounds waiting the spec's
    600 ns HBM latency). From 33.5% / -33.5% (NCCL's tuner estimate) to 15.5% / -15.3%
    (kernels, 2 x (p-1) steps, fastest pair) to 9.5% / -6.0% now; by size over the three GPU
    counts 4-16 MiB 21.3/-21.3 -> 15.2/-10.4, 16-32 MiB 14.9/-14.9 -> 7.3/-4.1, 32-64 MiB
    7.1/-6.7 -> 2.2/-0.4:

    ====  ==========  =====  ================  ================  ================
    GPUs  size        cases  tuner estimate    kernels, 2(p-1)   + local copy,
                                                                 tuner's pick
    ====  ==========  =====  ================  ================  ================
    2     4-16 MiB    384    44.9% / -44.9%    31.7% / -31.7%    22.0% / -22.0%
    2     16-32 MiB   128    37.7% / -37.7%    20.6% / -20.6%     9.5% / -9.5%
    2     32-64 MiB   257    33.8% / -33.8%    14.7% / -14.7%     3.0% / -2.9%
    4     4-16 MiB    384    37.6% / -37.6%    22.4% / -22.4%    16.2% / -16.2%
    4     16-32 MiB   128    29.0% / -29.0%     9.5% / -9.5%      5.0% / -5.0%
    4     32-64 MiB   257    26.1% / -26.1%     4.8% / -4.8%      1.0% / -0.2%
    8     4-16 MiB    384    30.7% / -30.7%     9.8% / -9.7%      7.3% / +6.9%
    8     16-32 MiB   128    32.6% / -32.6%    14.5% / -14.5%     7.5% / +2.3%
    8     32-64 MiB   257    22.4% / -22.4%     1.9% / -0.5%      2.6% / +1.7%
    ====  ==========  =====  ================  ================  ================

    Per GPU count (769 cases each) 2: 40.0/-40.0 -> 24.2/-24.2 -> 13.6/-13.5, 4: 32.3/-32.3
    -> 14.4/-14.4 -> 9.3/-9.0, 8: 28.3/-28.3 -> 7.9/-7.4 -> 5.8/+4.4. The local copy is 1 of
    3 primitives at 2 GPUs, 1 of 15 at 8: it closes most of the 2 and 4 GPU gap at large
    sizes. The tuner's pick keeps LL128 on 8 GPUs up to ~23 MiB, where the profile drops by
    ~59 us at NCCL's switch to Simple (369 -> 310 us). Short of |bias| <= 5%: at 2 GPUs a
    ~22 us constant (4-46 MiB) and at 4 GPUs ~20-30 us at 6-16 MiB stay unexplained; the
    same harness's send/recv shows no such fixed time (8 us at 2 KiB) and NCCL's published
    internals (kernel start, work fetch, baseLat) give ~10 us, so it is left unmodelled
    rather than fitted."""
    cases = {p: _allreduce(p, p, 4 * MIB) for p in (2, 4, 8)}
    n, mape, bias = _stats([c for cs in cases.values() for c in cs])
    assert n == 2307
    assert mape <= 10.0 and -7.0 <= bias <= -5.0, f"MAPE {mape:.1f}%, bias {bias:+.1f}%\n" \
        + _table()
    levels = {2: (14.5, -14.5, -12.5), 4: (10.0, -10.0, -8.0), 8: (6.5, 3.5, 5.5)}
    for p, (top, lo, hi) in levels.items():
        _, m, b = _stats(cases[p])
        assert m <= top and lo <= b <= hi, (p, m, b, _table())


def test_the_profiles_step_where_the_kernels_add_a_copy_round():
    """NCCL's Simple kernels move each slice in rounds of 512 threads x 16 B x 8 = 64 KiB, two
    slices per chunk of the 24 channels x p ranks: one more round per slice every p x 3 MiB
    (24 x p x 128 KiB). The profiles step there: 2 GPUs every 6 MiB, 4 GPUs every 12 MiB
    (median jump across +-0.5 MiB 10.5-12 us at 2 GPUs, 12-17.5 us at 4), and barely
    half-way between (1-5.5 us): the evidence for the channel count and the round size. 24
    channels at 2 and 4 GPUs as at 8, as NCCL builds them on an NVSwitch board whatever the
    GPU count: its search (graph/search.cc, speedArrayIntra from 40 GB/s) fits 6 rings of
    40 GB/s in each GPU's 12 x 20 GB/s to the NVSwitches, ncclTopoDupChannels doubles them
    (bwIntra >= 25) and connectRings (graph/connect.cc) doubles them again."""
    for p, period in ((2, 6 * MIB), (4, 12 * MIB)):
        prof = _profile("dgx_all_reduce.csv", "time_stats.all_reduce.median")[(p, p)]
        at = [k * period for k in range(2, 64 * MIB // period) if k * period < 63 * MIB]
        mid = [x + period // 2 for x in at if x + period // 2 < 63 * MIB]
        assert statistics.median(_jump(prof, x) for x in at) > 2.5 * statistics.median(
            _jump(prof, x) for x in mid), p
        # the model steps by one 2 us round per slice and step there, by bytes only between
        assert all(_model_jump(x, p) >= 2 * (p - 1) * 2 * 2e-6 for x in at), p
        assert all(_model_jump(x, p) < 2e-6 for x in mid), p


def _jump(prof: dict[int, float], x: int) -> float:
    """Median measured time of the 4 sizes just above ``x`` less that of the 4 just below."""
    sizes = sorted(prof)
    below = [prof[n] for n in sizes if x - 4 * 131072 <= n < x][-4:]
    above = [prof[n] for n in sizes if x < n <= x + 4 * 131072][:4]
    return statistics.median(above) - statistics.median(below)


def _model_jump(x: int, p: int) -> float:
    """The model's step from ``x`` to ``x`` + 128 KiB bytes over ``p`` GPUs of a node."""
    return _predict("allreduce", x + 131072, p, p) - _predict("allreduce", x, p, p)


def test_small_allreduces_carry_the_host():
    """Below 1 MiB the profiled NCCL kernel times jump between ~10 and ~60 us from one size
    to the next (2 GPUs: 10 us at 4 KiB, 46 us at 20 KiB, 32 us at 496 KiB): each rank's
    eager ``torch.distributed.all_reduce`` launches its kernel from Python, and a kernel
    waits for the last rank's launch. That is eager timing (part 1 of issue 12), not the
    device time predicted here: the model stays below most of them (all at 2 GPUs, 78% at
    4, 85% at 8; medians 55/42/40 us measured against 17/23/30 us)."""
    for p in (2, 4, 8):
        cs = _allreduce(p, p, 0.0, 1 * MIB)
        below = sum(pred < meas for _, meas, pred in cs) / len(cs)
        assert below >= 0.75, (p, below)
        assert statistics.median(m for _, m, _ in cs) > 1.3 * statistics.median(
            q for _, _, q in cs)


def test_two_node_runs_replayed():
    """Across two DGX A100 nodes (NCCL's multi-node ring and tree over the spec's 25 GB/s HDR
    NIC per GPU, one channel of 24 GB/s per NIC, NCCL's own multi-node estimate:
    simulator.network.nccl), >= 4 MiB. The profiles run far below the NICs: 2 x 1 GPUs move
    5.8 GB/s of bus bandwidth at 64 MiB (HDR's 25 GB/s would give ~23), 2 x 4 22 GB/s, 2 x 8
    17.5 GB/s with a bimodal switch at 24 MiB (7.5 -> 17 GB/s); send/recv between the nodes
    7.9 GB/s. That is one ~6 GB/s path per node pair as the profiled cluster ran (no
    GPUDirect RDMA over the HDR rails, or a slower fabric than DGX's), not the DGX A100
    reference design the spec describes; the model predicts the reference design, 4-9x
    faster (published reference-design runs: tests/golden/test_published_nccl_multinode.py):

    ============  =====  ================
    GPUs          cases  MAPE / bias
    ============  =====  ================
    2 x 1         769    72.8% / -72.8%
    2 x 2         769    81.2% / -81.2%
    2 x 4         769    74.3% / -74.3%
    2 x 8         769    89.3% / -89.3%
    send/recv     769    69.1% / -69.1%
    ============  =====  ================

    Send/recv keeps the alpha-beta model (one step at the NIC's 25 GB/s and 5 us). The
    in-node send/recv (2 GPUs, alpha-beta at 300 GB/s and 2 us) is 20.6% / -20.6%: NCCL's
    p2p reaches 221 GB/s from 8 MiB up."""
    levels = {(2, 1): 72.8, (4, 2): 81.2, (8, 4): 74.3, (16, 8): 89.3}
    for (w, per), level in levels.items():
        n, mape, bias = _stats(_allreduce(w, per, 4 * MIB))
        assert n == 769 and abs(mape - level) < 3 and bias < -60, (w, per, mape, bias)
    sr = _profile("dgx_send_recv.csv", "time_stats.send_recv.median")
    for (w, per), level in (((2, 1), 69.1), ((2, 2), 20.6)):
        cs = [(n, m, _predict("sendrecv", n, w, per)) for n, m in sorted(sr[(w, per)].items())
              if n >= 4 * MIB]
        n, mape, bias = _stats(cs)
        assert n == 769 and abs(mape - level) < 3, (w, per, mape, bias)
