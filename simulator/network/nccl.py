"""NCCL's collectives inside one node and across nodes over the NICs: the (algorithm,
protocol) NCCL's tuner picks, and the time its kernels take to run it.

Two models, both from NCCL's published source (NCCL 2.18-2.21, the versions behind PyTorch
2.1-2.5; walk-through in Hu et al., "Demystifying NCCL", arXiv 2507.04786, 2025):

**The tuner** (``src/graph/tuning.cc``) ranks every (algorithm, protocol) pair by
``latency + bytes / algorithm bandwidth`` and NCCL runs the fastest by that estimate:

- latency = ``baseLat[algorithm][protocol] + steps x hwLat[link][algorithm][protocol]`` in
  microseconds (ring: baseLat LL/LL128/Simple 6.6/14/8.4, hwLat NVLink 0.6/1.9/3.4, PCIe
  1.0/2.5/5.7; tree: 6.8/14/0 and 0.6/1.25/28 (PCIe 1.0/1.9/28); NVLS: Simple only, 0 + 23),
  ``steps`` 2(p-1) for a ring all-reduce, p-1 for a ring all-gather or reduce-scatter,
  2(p-1) for the tree (a chain inside one node), one for NVLS;
- bus bandwidth = the GPU's NVLink bandwidth as NCCL counts it (line rate x
  ``link_efficiency``: 20 of 25 GB/s per Ampere link, ``SM80_NVLINK_BW``), then per protocol:
  Simple x1; LL128 x0.92 (120 of 128 bytes are data); LL x1/4 for all-reduce (x1/3 for the
  others: 8-byte stores of 4 data bytes and a flag), at most ``llMaxBws`` (one node: Volta
  39.0 GB/s, Ampere and Hopper 87.7); tree
  x0.92, LL x1/3.8, LL128 x7/9, and the static ``treeCorrectionFactor`` by size;
- algorithm bandwidth = bus bandwidth x p / steps for the ring (NCCL's ``busbw = algbw x
  2(p-1)/p`` for all-reduce), x 1/2 for the tree, x 5/6 for NVLS (NVLink SHARP: the NVSwitch
  reduces, H100/H200 NVSwitch 3 only).

**The kernels** (``src/device/all_reduce.h``, ``all_gather.h``, ``reduce_scatter.h``,
``prims_simple.h``, ``prims_ll128.h``; ``src/enqueue.cc``): where the part's spec gives NCCL's
channel count (``params.nccl_channels``), a ring's Simple and LL128 runs are priced as the
kernels move the data, not by the tuner's fixed ``hwLat`` per step. The bytes still cross at
the bus bandwidth above; what changes is the latency, which grows with the data per channel:

- the buffer is cut over ``C`` channels (one thread block each) and ``p`` chunks per channel
  and loop; a loop moves at most ``C x p x chunk`` bytes, ``chunk`` = NCCL_BUFFSIZE 4 MiB /
  NCCL_STEPS 8 x ALLREDUCE_CHUNKSTEPS 4 = 2 MiB for Simple (the same for all-gather and
  reduce-scatter), one 4,915,200 / 8 B LL128 step of which 120/128 is data (576,000 B);
  below ``C x threads x threshold`` bytes NCCL uses fewer channels (``getAlgoInfo``:
  NCCL_SIMPLE_THREAD_THRESHOLD 64 B x 512 threads, LL128 8 B x 640);
- Simple: each ring step of a loop moves one chunk in two slices (SLICESTEPS 2 of
  CHUNKSTEPS 4; at least ``sliceSize / 32`` = 32 KiB each), and a thread block moves a slice
  in rounds of 512 threads x 16 B x an unroll of 8 (``ncclCollUnroll`` on sm80+: 4 before)
  = 64 KiB: each round waits for its loads across the link, and each step waits for the
  previous rank's flag, one link latency each;
- LL128: data and flags travel together in 128-byte lines; a chunk is rounded up to whole
  grains of 640 threads x 60 B / 2 = 19,200 B (``minChunkSize`` in ``runRing``), and each
  grain of each step waits for its lines to land, one link latency;
- time = baseLat[protocol] + steps x handoffs x link latency + bus bytes / bus bandwidth,
  ``handoffs`` summed over the loops (full chunks, then the rest in one shorter loop, as
  ``runRing``'s ``realChunkSize``): slices x rounds + 1 per chunk (Simple) or grains
  (LL128); ``bus bytes`` = 2(p-1)/p n for all-reduce, (p-1)/p n for all-gather and
  reduce-scatter;
- plus one local copy per loop: ``runRing`` runs one primitive more than it has link steps
  (all-reduce: send, p-2 recvReduceSend, recvReduceCopySend, p-2 recvCopySend, recv = 2p-1
  for 2(p-1) steps; all-gather and reduce-scatter p for p-1). With P2P read (NCCL's default
  over NVLink on Ampere, ``p2pGetInfo`` in ``transport/p2p.cc``, where "the SIMPLE buffer
  is local"; "P2P/IPC/read" in NCCL logs of A100 nodes, NCCL issue #687) the first send
  copies the rank's chunk into its own buffer for the peer to read; with P2P write the last
  recv copies it out of its own buffer. Either way n/p bytes are read and written in the GPU's DRAM
  (``local_Bps``, the part's HBM rate x its ``bandwidth_efficiency``), its rounds (grains)
  wait the DRAM latency, and a Simple copy hands its flag over the link once per loop. The
  copy is 1 of 3 primitives on 2 ranks, 1 of 15 on 8: the reason small rings run slower per
  bus byte.

LL (small sizes, latency-bound), the tree and NVLS keep the tuner's estimate as their time.
NCCL runs the pair its tuner estimates fastest (``getAlgoInfo``), even where the estimate
misjudges: on 8 A100s it keeps LL128 up to ~23 MiB, where Simple would run faster (the
public Vidur profiles drop by ~59 us at the switch). The tuner's bus bandwidth is NCCL's
per-generation NVLink constant times the part's links (``tuner_bus_Bps``: 20 GB/s x 12 on
A100), not the rate of a what-if fabric: a faster fabric keeps NCCL's choice and speeds every
pair, so "more link bandwidth is never slower" holds, while more bytes can be faster where
the tuner switches protocol (as on the real machine).

**Across nodes** (:func:`nccl_net_candidates`; ``ncclTopoTuneModel`` for nNodes > 1 and
``ncclTopoGetAlgoTime``, NCCL 2.19-2.20, commit b6475625 of NVIDIA/nccl), ``k`` nodes of
``m`` ranks each (p = k m), on a rail-optimized fabric:

- channels: NCCL's ring (and tree) graph crosses each node once per channel through one NIC,
  one channel per NIC the group drives (``nics``); a channel moves the largest entry of
  NCCL's ``speedArrayInter`` (``src/graph/search.cc``: Ampere 48, 30, 28, 24, 20, ... GB/s;
  Hopper ``sm90SpeedArrayInter`` 48, 45, 42, 40, 30, 24, ...) not above one NIC's rate, and
  not above the GPU's NVLink share (its NCCL bus bandwidth over the (m-1)/m of the channels
  that leave it by NVLink). HDR 200 Gb/s (25 GB/s) gives 24 GB/s a NIC, NDR 400 Gb/s
  (50 GB/s) 48: NCCL's maintainers quote 46-48 GB/s per NDR NIC for a two-node ring
  (nccl-tests issues #290, #267) and a 4-NIC A100 run measures 85-96 GB/s (#119);
- bus bandwidth = channels x that rate, then per algorithm and protocol: ring LL / 4 (at most
  ``llMaxBws`` of the host: 39.0 GB/s on 2 nodes, 20.4 beyond, the x86 Intel row); ring
  LL128 x0.92 (x0.7 with one rank per node) up to channels x ``perChMaxRingLL128Bw``
  (Volta and Ampere 20, Hopper 36.7 GB/s); tree x0.92 up to channels x ``perChMaxTreeBw``
  (Volta 18.5 on 2 nodes / 10.0 beyond, Ampere 23.6 / 17.8, Hopper 41.4 / 36.0), LL / 3.8,
  LL128 x120/128 up to channels x ``perChMaxTreeLL128Bw`` (Volta and Ampere 20, Hopper
  36.7 / 29.0), the row by the part's ``compute_capability``, and the tree's
  ``treeCorrectionFactor`` by size; algorithm bandwidth = bus x p / steps (ring), x 1/2 (tree);
- latency (us) = ``baseLat`` + ring: (steps - inter-node steps) x max(``hwLat[NVLINK]``, the
  proxy's ``getNetOverhead`` 1 us, x3 for Simple) + inter-node steps x ``hwLat[NET]``
  (ring LL/LL128/Simple 2.7/4.0/14.0; 2k inter-node steps for all-reduce, k-1 for all-gather
  and reduce-scatter), x1.4 for a Simple ring all-reduce (sm80+, x1.9 before: "plateau
  effect of ring");
  tree: 2 ((m-1) x ``hwLat[NVLINK]`` + floor(log2 k) x ``hwLat[NET]`` (5.0/8.5/28));
- time = latency + bytes / algorithm bandwidth, NCCL's own estimate: the NIC rate is the
  one NCCL reads from the hardware (no separate tuner belief as inside the node), so the
  estimate is the model of the run and NCCL runs the smallest.

LL128 runs only on the compute capabilities NCCL enables it on by default (7.0, 8.0, 9.0,
10.0: ``NcclModel.ll128``, from the spec's ``compute_capability``), in a node and across.
LL128 is taken as enabled across nodes, as NCCL enables it where each GPU's NIC sits on its
PCIe switch (``typeInter <= PATH_PXB``, a DGX's rails). Not modelled across nodes: NVLS-tree (H100 NVLink SHARP with an inter-node tree, chosen by
NCCL >= 2.18 on multi-node HGX H100) and CollNet (InfiniBand SHARP): both need switch support
the specs do not describe; the ring and tree are what ``NCCL_ALGO=Ring``/``Tree`` runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from simulator.arch.spec import Link
from simulator.network.phases import PROTOCOLS, CollectiveTime, Phase

__all__ = ["NcclModel", "nccl_candidates", "nccl_choice", "nccl_net_candidates",
           "nccl_net_choice", "ring_time", "net_channel_Bps"]


@dataclass(frozen=True)
class NcclModel:
    """What NCCL needs to know about the GPUs beyond the route: the fraction of the NVLink
    line rate it moves as data (``link_efficiency``, NCCL's per-link bandwidth over the line
    rate), whether the NVSwitches reduce (NVLink SHARP, ``nvls``), NCCL's ring channel count
    (``channels``; 0: unknown, the tuner's estimate prices the ring), the copy loop's
    unroll (``unroll``: 8 on sm80 and later, 4 before), the GPU's own memory for the ring's
    one local copy per loop (``local_Bps`` achievable DRAM bandwidth, ``local_latency_s`` its
    load latency; 0: not priced) and the bus bandwidth NCCL's tuner believes
    (``tuner_bus_Bps``: its per-generation NVLink constant times the part's links, not what
    the fabric of a what-if study runs at; 0: the route's). ``generation`` picks NCCL's
    per-generation tables (tuning.cc's compCapIndex: "volta" before sm80, "ampere": sm80,
    "hopper": sm90 and later; search.cc's pre-sm90 speeds for Volta and Ampere)."""

    link_efficiency: float = 0.8
    nvls: bool = False
    channels: int = 0
    unroll: int = 8
    local_Bps: float = 0.0
    local_latency_s: float = 0.0
    tuner_bus_Bps: float = 0.0
    generation: str = "ampere"
    ll128: bool = True


# NCCL src/graph/tuning.cc (2.18-2.21): latencies in us, [algorithm][protocol LL, LL128, Simple]
_BASE_LAT = {"ring": (6.6, 14.0, 8.4), "tree": (6.8, 14.0, 0.0), "nvls": (0.0, 0.0, 0.0)}
_HW_LAT = {
    "nvlink": {"ring": (0.6, 1.9, 3.4), "tree": (0.6, 1.25, 28.0), "nvls": (0.0, 0.0, 23.0)},
    "pci": {"ring": (1.0, 2.5, 5.7), "tree": (1.0, 1.9, 28.0), "nvls": (0.0, 0.0, 0.0)},
}
_LL_MAX_BW = {"volta": 39.0e9, "ampere": 87.7e9, "hopper": 87.7e9}  # llMaxBws, one node
# treeCorrectionFactor[protocol][log2(bytes / 64)], powers of two from 64 B to 256 MiB
_TREE_CORRECTION = (
    (1.0, 1.0, 1.0, 1.0, .9, .8, .7, .7, .7, .7, .6, .5, .4, .4, .5, .6, .7, .8, .9, 1.0, 1.0,
     1.0, 1.0),
    (1.0, 1.0, 1.0, 1.0, 1.0, .9, .8, .8, .8, .7, .6, .6, .6, .6, .6, .6, .8, .9, .9, .9, .9,
     1.0, 1.0),
    (.9, .9, .9, .9, .9, .9, .9, .8, .7, .6, .6, .5, .5, .5, .5, .6, .7, .8, .7, .7, .8, .9,
     .9),
)

# NCCL's kernels (src/include/collectives.h, device/common.h, device/all_reduce.h, enqueue.cc)
_STEPS = 8                                  # NCCL_STEPS: buffer slots per connection
_SIMPLE_CHUNK = (1 << 22) // _STEPS * 4     # NCCL_BUFFSIZE 4 MiB / 8 x CHUNKSTEPS 4 = 2 MiB
_SIMPLE_MIN_SLICE = (1 << 22) // _STEPS * 2 // 32  # sliceSize / 32 (primitives): 32 KiB
_SIMPLE_THREADS = 512                       # NCCL_SIMPLE_MAX_NTHREADS (the copy warps)
_SIMPLE_THREAD_THRESHOLD = 64               # NCCL_SIMPLE_THREAD_THRESHOLD, bytes per thread
_LL128_THREADS = 640                        # NCCL_LL128_MAX_NTHREADS
_LL128_THREAD_THRESHOLD = 8                 # NCCL_LL128_THREAD_THRESHOLD
_LL128_CHUNK = 120 * _LL128_THREADS * 8 * 120 // 128  # one LL128 step of data: 576,000 B
_LL128_GRAIN = _LL128_THREADS * 60 // 2     # minChunkSize: 640 x 60 B per grain / 2 = 19,200 B
_WORDS = {"allreduce": "all-reduce", "allgather": "all-gather",
          "reducescatter": "reduce-scatter"}


def _hw(link: Link) -> str:
    """NCCL's link class for the latency table: PCIe for a PCIe link, else NVLink."""
    return "pci" if "pci" in link.name.lower() else "nvlink"


def _channels(n: float, channels: int, threads: int, threshold: int) -> int:
    """NCCL's channel count for ``n`` bytes: fewer than ``channels`` while each thread would
    move fewer than ``threshold`` bytes (``getAlgoInfo``)."""
    return max(1, min(channels, int(n // (threads * threshold))))


def ring_time(kind: str, n: float, p: int, protocol: str, model: NcclModel, latency_s: float,
              bus_Bps: float) -> tuple[float, float, str]:
    """The time of NCCL's ring ``kind`` of ``n`` bytes over ``p`` ranks with ``protocol``
    (Simple or LL128) as its kernels run it (module docstring): returns (latency part,
    bandwidth part, how) in seconds, the bandwidth part ``bus bytes / bus_Bps``."""
    if protocol not in ("Simple", "LL128"):
        raise ValueError(f"no kernel model for NCCL protocol {protocol!r}")
    steps = 2 * (p - 1) if kind == "allreduce" else p - 1
    base = _BASE_LAT["ring"][PROTOCOLS.index(protocol)] * 1e-6
    beta = steps / p * n / bus_Bps
    if protocol == "Simple":
        c = _channels(n, model.channels, _SIMPLE_THREADS, _SIMPLE_THREAD_THRESHOLD)
        round_bytes = _SIMPLE_THREADS * 16 * model.unroll

        def handoffs_of(chunk: float) -> int:
            slice_ = max(chunk / 2, min(chunk, _SIMPLE_MIN_SLICE))
            slices = max(1, math.ceil(chunk / slice_))
            return slices * max(1, math.ceil(slice_ / round_bytes)) + 1

        chunk_max, unit = _SIMPLE_CHUNK, f"copy rounds of {round_bytes // 1024} KiB"
    else:  # LL128
        c = _channels(n, model.channels, _LL128_THREADS, _LL128_THREAD_THRESHOLD)

        def handoffs_of(chunk: float) -> int:
            return max(1, math.ceil(chunk / _LL128_GRAIN))

        chunk_max, unit = _LL128_CHUNK, f"grains of {_LL128_GRAIN} B"
    # full loops of chunk_max per channel and rank, then the rest in one shorter loop
    # (runRing's realChunkSize)
    loops, rest = divmod(n, c * p * chunk_max)
    handoffs = int(loops) * handoffs_of(chunk_max) + (handoffs_of(rest / (c * p)) if rest else 0)
    nloops = int(loops) + (1 if rest else 0)
    how = (f"{c} channels, {nloops} loop(s), {handoffs} handoff(s) per ring step ({unit})")
    alpha = base + steps * handoffs * latency_s
    how += f", {latency_s * 1e6:.3g} us per handoff"
    if model.local_Bps > 0:
        # one primitive more per loop than link steps (runRing: send, the steps, recv): it
        # copies the rank's n/p between its own buffers (read + write in the GPU's DRAM),
        # its rounds (Simple) or grains (LL128) waiting on DRAM loads; Simple's then hands
        # its chunk's flag over the link (LL128's flags travel in the lines)
        flags = nloops if protocol == "Simple" else 0
        local = (handoffs - flags) * model.local_latency_s + flags * latency_s
        alpha += local
        beta += 2 * n / p / model.local_Bps
        how += (f"; + 1 local copy per loop ({local * 1e6:.3g} us of rounds and flags, "
                f"2 x {n / p:.3g} B at {model.local_Bps / 1e9:.4g} GB/s)")
    return alpha, beta, how


def _protocol_bus(algo: str, proto: str, bus: float, allreduce: bool,
                  ll_max: float = _LL_MAX_BW["ampere"]) -> float:
    """NCCL's bus bandwidth of ``algo``/``proto`` from the link's (tuning.cc refinements;
    ``ll_max``: the generation's ``llMaxBws`` in one node)."""
    if algo == "ring" and proto == "LL":
        return min(ll_max, bus / (4.0 if allreduce else 3.0))
    if algo == "ring" and proto == "LL128":
        return bus * 0.92
    if algo == "tree":
        b = bus * 0.92
        return min(b / 3.8, ll_max) if proto == "LL" else b * 7.0 / 9.0 \
            if proto == "LL128" else b
    return bus


def _alg_bw(algo: str, i: int, b: float, p: int, steps: int, log_size: int) -> float:
    """Algorithm bandwidth from bus bandwidth ``b`` (ring p / steps, tree / 2, NVLS 5/6)."""
    if algo == "ring":
        return b * p / steps
    if algo == "tree":
        return b * 0.5 * (_TREE_CORRECTION[i][log_size] if log_size < 23 else 1.0)
    return b * 5.0 / 6.0


def _nccl_pairs(kind: str, n: float, p: int, link: Link, bw: float, model: NcclModel
                ) -> list[tuple[float, CollectiveTime]]:
    """(NCCL's tuner estimate, the time as run) of every (algorithm, protocol) pair."""
    hw = _hw(link)
    bus = bw * model.link_efficiency
    tuner_bus = model.tuner_bus_Bps or bus
    allreduce = kind == "allreduce"
    algos = ["ring"] + (["tree"] if allreduce else []) + \
        (["nvls"] if model.nvls and hw == "nvlink" and p > 2 else [])
    log_size = int(math.log2(n / 64)) if n >= 128 else 0
    word = _WORDS[kind]
    ll_max = _LL_MAX_BW[_gen(model)]
    out = []
    for algo in algos:
        steps = (2 * (p - 1) if allreduce else p - 1) if algo == "ring" else \
            2 * (p - 1) if algo == "tree" else 1
        for i, proto in enumerate(PROTOCOLS):
            if (algo == "nvls" and proto != "Simple") or (proto == "LL128" and not model.ll128):
                continue
            b = _protocol_bus(algo, proto, bus, allreduce, ll_max)
            alg_bw = _alg_bw(algo, i, b, p, steps, log_size)
            lat = (_BASE_LAT[algo][i] + (1 if algo == "nvls" else steps)
                   * _HW_LAT[hw][algo][i]) * 1e-6
            tuner = lat + (n / _alg_bw(algo, i, _protocol_bus(algo, proto, tuner_bus,
                                                                allreduce, ll_max), p, steps,
                                            log_size)
                           if n else 0.0)
            sent = (2 * (p - 1) / p * n if allreduce else (p - 1) / p * n) \
                if algo != "nvls" else (n if allreduce else (p - 1) / p * n)
            alpha, beta = lat, (n / alg_bw if n else 0.0)
            how = f"{hw} latencies, tuner estimate"
            if algo == "ring" and proto != "LL" and model.channels > 0 and n > 0:
                alpha, beta, how = ring_time(kind, n, p, proto, model, link.latency_s, b)
                how += f"; tuner estimate {tuner * 1e6:.4g} us"
            ph = Phase(f"NCCL {algo} {word} over {p} ranks, {proto} protocol (bus bandwidth "
                       f"{b / 1e9:.4g} GB/s; {how})", link.name,
                       1 if algo == "nvls" else steps, alpha, beta, sent,
                       sent * link.energy_per_byte_j)
            out.append((tuner, CollectiveTime(kind, algo, ph.time_s, sent, (ph,), False,
                                              proto)))
    return out


def nccl_candidates(kind: str, n: float, p: int, link: Link, bw: float, model: NcclModel
                    ) -> list[CollectiveTime]:
    """Every (algorithm, protocol) NCCL's tuner weighs for ``kind`` over ``p`` ranks of one
    node, each driving ``bw`` (line rate) on ``link``, timed as the kernels run them where the
    model knows NCCL's channels, else by the tuner's estimate."""
    return [c for _, c in _nccl_pairs(kind, n, p, link, bw, model)]


def nccl_choice(kind: str, n: float, p: int, link: Link, bw: float, model: NcclModel,
                algorithm: str | None = None) -> CollectiveTime | None:
    """The pair NCCL runs: the smallest tuner estimate (``getAlgoInfo``), among
    ``algorithm``'s protocols when one is forced; ties by the time as run. None when the
    forced algorithm does not apply."""
    pairs = [(t, c) for t, c in _nccl_pairs(kind, n, p, link, bw, model)
             if algorithm is None or c.algorithm == algorithm]
    if not pairs:
        return None
    return min(pairs, key=lambda tc: (tc[0], tc[1].time_s, tc[1].algorithm))[1]


# -- across nodes (NCCL 2.19-2.20 src/graph/tuning.cc, search.cc) -----------------------------
_HW_LAT_NET = {"ring": (2.7, 4.0, 14.0), "tree": (5.0, 8.5, 28.0)}  # hwLat[NCCL_HW_NET], us
_NET_OVERHEAD_US = 1.0  # getNetOverhead: x86 Intel host 1 us per step (AMD 2), x3 for Simple
_LL_MAX_NET = (39.0, 20.4)  # llMaxBws, x86 Intel host row: 2 nodes, more (GB/s)
_RING_PLATEAU = 1.4         # ncclTopoGetAlgoTime: Simple ring all-reduce latency, sm80+
_RING_PLATEAU_VOLTA = 1.9   # the same before sm80 (minCompCap < 80)
# per channel caps (GB/s): [generation] -> (2 nodes, more than 2)
_PER_CH_TREE = {"volta": (18.5, 10.0), "ampere": (23.6, 17.8), "hopper": (41.4, 36.0)}
_PER_CH_RING_LL128 = {"volta": (20.0, 20.0), "ampere": (20.0, 20.0), "hopper": (36.7, 36.7)}
_PER_CH_TREE_LL128 = {"volta": (20.0, 20.0), "ampere": (20.0, 20.0), "hopper": (36.7, 29.0)}
# search.cc: the per-channel speeds NCCL's search tries across nodes (GB/s), fastest first
_SPEED_INTER = {
    "ampere": (48.0, 30.0, 28.0, 24.0, 20.0, 18.0, 15.0, 12.0, 10.0, 9.0, 7.0, 6.0, 5.0, 4.0,
               3.0, 2.4, 1.2, 0.24, 0.12),
    "hopper": (48.0, 45.0, 42.0, 40.0, 30.0, 24.0, 22.0, 20.0, 17.5, 15.0, 12.0, 6.0, 3.0,
               2.4, 1.2, 0.24, 0.12),
}
_SPEED_INTER["volta"] = _SPEED_INTER["ampere"]  # search.cc: one array before sm90


def _gen(model: NcclModel) -> str:
    return model.generation if model.generation in ("volta", "hopper") else "ampere"


def net_channel_Bps(nic_Bps: float, nvlink_share_Bps: float, model: NcclModel) -> float:
    """The rate of one NCCL channel across nodes (B/s): the largest of NCCL's search speeds
    not above the NIC's rate nor the GPU's NVLink share (``nvlink_share_Bps``; 0: none), or
    that bound itself below NCCL's slowest entry."""
    cap = nic_Bps if nvlink_share_Bps <= 0 else min(nic_Bps, nvlink_share_Bps)
    for s in _SPEED_INTER[_gen(model)]:
        if s * 1e9 <= cap:
            return s * 1e9
    return cap


def _net_pairs(kind: str, n: float, k: int, m: int, nics: int, intra: Link | None,
               intra_bw: float, net: Link, nic_Bps: float, model: NcclModel
               ) -> list[CollectiveTime]:
    """NCCL's (algorithm, protocol) pairs of ``kind`` over ``k`` nodes of ``m`` ranks, each
    node driving ``nics`` NICs of ``nic_Bps`` on ``net`` (module docstring), timed by
    NCCL's own estimate."""
    p = k * m
    gen = _gen(model)
    c = max(1, nics)
    hw_in = _hw(intra) if intra is not None else "nvlink"
    share = 0.0
    if m > 1 and intra is not None:
        # the tuner's NVLink figure, but never above what the node's links really carry: a
        # slower NVLink slows every channel that crosses it
        real = intra_bw * model.link_efficiency
        nv_bus = min(model.tuner_bus_Bps, real) if model.tuner_bus_Bps else real
        share = nv_bus / (c * (m - 1) / m)
    ch = net_channel_Bps(nic_Bps, share, model)
    bus0 = c * ch
    two = 0 if k <= 2 else 1
    allreduce = kind == "allreduce"
    steps = 2 * (p - 1) if allreduce else p - 1
    inter_steps = 2 * k if allreduce else k - 1
    log_size = int(math.log2(n / 64)) if n >= 128 else 0
    word = _WORDS[kind]
    out: list[CollectiveTime] = []
    for algo in (["ring", "tree"] if allreduce else ["ring"]):
        for i, proto in enumerate(PROTOCOLS):
            if proto == "LL128" and not model.ll128:
                continue
            if algo == "ring":
                if proto == "LL":
                    b = min(_LL_MAX_NET[two] * 1e9, bus0 / 4.0)
                elif proto == "LL128":
                    b = min(bus0 * (0.7 if m < 2 else 0.92), c * _PER_CH_RING_LL128[gen][two] * 1e9)
                else:
                    b = bus0
                alg = b * p / steps
                intra_lat = _HW_LAT[hw_in]["ring"][i]
                overhead = _NET_OVERHEAD_US * (3 if proto == "Simple" else 1)
                lat_us = _BASE_LAT["ring"][i] + (steps - inter_steps) * max(intra_lat, overhead) \
                    + inter_steps * _HW_LAT_NET["ring"][i]
                if proto == "Simple" and allreduce and n / (c * p) >= 64:
                    lat_us *= _RING_PLATEAU_VOLTA if gen == "volta" else _RING_PLATEAU
                how = (f"{c} channel(s) of {ch / 1e9:.4g} GB/s, one per NIC; {steps} steps, "
                       f"{inter_steps} across nodes")
            else:
                b = min(bus0 * 0.92, c * _PER_CH_TREE[gen][two] * 1e9)
                if proto == "LL":
                    b = min(b / 3.8, _LL_MAX_NET[two] * 1e9)
                elif proto == "LL128":
                    b = min(b * 120.0 / 128.0, c * _PER_CH_TREE_LL128[gen][two] * 1e9)
                alg = b * 0.5 * (_TREE_CORRECTION[i][log_size] if log_size < 23 else 1.0)
                lat_us = _BASE_LAT["tree"][i] + 2 * ((m - 1) * _HW_LAT[hw_in]["tree"][i]
                                                     + int(math.log2(k)) * _HW_LAT_NET["tree"][i])
                how = (f"chain of {m} in each node, double binary tree over {k} nodes, {c} "
                       f"channel(s) of {ch / 1e9:.4g} GB/s")
            alpha, beta = lat_us * 1e-6, (n / alg if n else 0.0)
            sent = (2 * (p - 1) / p * n if allreduce else (p - 1) / p * n) if algo == "ring" \
                else 2 * n * (1 - 1 / p)
            net_sent = sent / m
            if m > 1 and intra is not None and intra_bw > 0:
                # the hops inside the node pipeline with the network's, but never run faster
                # than each GPU's own links move its in-node bytes
                beta = max(beta, (sent - net_sent) / (intra_bw * model.link_efficiency))
            phases = [Phase(f"NCCL {algo} {word} over {k} nodes x {m} ranks, {proto} protocol "
                            f"(bus bandwidth {b / 1e9:.4g} GB/s; {how}; NCCL's estimate)",
                            net.name, inter_steps if algo == "ring" else 2 * int(math.log2(k)),
                            alpha, beta, net_sent, net_sent * net.energy_per_byte_j)]
            if m > 1 and intra is not None:
                in_sent = sent - net_sent
                phases.append(Phase(f"the same {algo}'s hops inside each node ({m} ranks, "
                                    "pipelined with the network)", intra.name, 0, 0.0, 0.0,
                                    in_sent, in_sent * intra.energy_per_byte_j))
            out.append(CollectiveTime(kind, algo, alpha + beta, sent, tuple(phases), True,
                                      proto))
    return out


def nccl_net_candidates(kind: str, n: float, k: int, m: int, nics: int, intra: Link | None,
                        intra_bw: float, net: Link, nic_Bps: float, model: NcclModel
                        ) -> list[CollectiveTime]:
    """Every (algorithm, protocol) NCCL's tuner weighs for ``kind`` over ``k`` nodes of ``m``
    ranks, each node driving ``nics`` NICs of ``nic_Bps`` (line rate) on ``net``, with
    ``intra`` (per-rank line rate ``intra_bw``) inside the nodes."""
    if kind not in ("allreduce", "allgather", "reducescatter"):
        raise ValueError(f"no NCCL network model for {kind!r}")
    return _net_pairs(kind, n, k, m, nics, intra, intra_bw, net, nic_Bps, model)


def nccl_net_choice(kind: str, n: float, k: int, m: int, nics: int, intra: Link | None,
                    intra_bw: float, net: Link, nic_Bps: float, model: NcclModel,
                    algorithm: str | None = None) -> CollectiveTime | None:
    """The pair NCCL runs across nodes: its smallest estimate, among ``algorithm``'s
    protocols when one is forced; None when the forced algorithm is not NCCL's."""
    cands = [c for c in nccl_net_candidates(kind, n, k, m, nics, intra, intra_bw, net,
                                            nic_Bps, model)
             if algorithm is None or c.algorithm == algorithm]
    if not cands:
        return None
    return min(cands, key=lambda c: (c.time_s, c.algorithm, PROTOCOLS.index(c.protocol)))
