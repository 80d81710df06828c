"""NCCL all-reduce across nodes against published nccl-tests bus bandwidths (``all_reduce_perf``
``busbw`` = algbw x 2(p-1)/p), uncalibrated: NCCL's multi-node ring and tree over the NICs
(:mod:`simulator.network.nccl`, ``ncclTopoTuneModel`` for nNodes > 1).

Published figures (public GitHub threads of NVIDIA's nccl-tests, answers by NVIDIA's NCCL
maintainers):

- NDR InfiniBand (ConnectX-7, 400 Gb/s): "For NDR @ 400Gbps you should see 46-48GB/s per NIC"
  for a two-node H100 all-reduce with ``NCCL_ALGO=RING`` (nccl-tests issue #290, 2025-03);
  "CX-7 NICs at NDR rate (400Gbps) should achieve up to 48-49GB/s per NIC" (issue #267,
  2024-11). A DGX H100 has one NDR NIC per GPU: 8 x 46-48 = 368-384 GB/s of bus bandwidth.
- HDR InfiniBand (200 Gb/s): three servers of 8 A100 SXM4 40 GB and 4 HDR NICs each (2 x
  Xeon 8358), ``all_reduce_perf -b 8 -e 128M`` in 1 MiB steps: "the average performance is
  about 84.8GB/s and peak performance reaches about 96GB/s" against 4 x 25 = 100 GB/s
  (nccl-tests issue #119, 2022-11).
"""

from __future__ import annotations

import statistics

import pytest

from simulator.arch.loader import load_arch
from simulator.mapping.common import nccl_model
from simulator.network import collective, route_for

GIB = 2**30
MIB = 2**20


def _busbw(system: str, sets: list[str], nbytes: float, algorithm: str | None = None
           ) -> float:
    """Bus bandwidth (B/s) of an all-reduce of ``nbytes`` over every GPU of the system."""
    s = load_arch(system, sets)
    r = collective("allreduce", nbytes, route_for(s, tuple(range(s.count))), algorithm,
                   nccl_model(s.device))
    p = s.count
    return nbytes / r.time_s * 2 * (p - 1) / p


@pytest.mark.parametrize("system,sets", [("dgx-h100", ["count=16"]),
                                         ("h100-cluster-ndr", ["nodes=2"])])
def test_two_dgx_h100_ring_moves_46_to_48_gb_s_per_ndr_nic(system, sets):
    """8 GiB, NCCL_ALGO=RING, 2 x 8 H100 with 8 NDR NICs each: NCCL's 8 channels of 48 GB/s
    (sm90SpeedArrayInter's largest entry below the NIC's 50 GB/s) less the ring's latency
    (30 steps, 4 across the network) give 382 GB/s, 47.8 per NIC. Tolerance: the quoted
    46-48 GB/s per NIC, widened by 3% for the 8 GiB size the quote does not state."""
    per_nic = _busbw(system, sets, 8 * GIB, "ring") / 8 / 1e9
    assert 46 * 0.97 <= per_nic <= 48 * 1.03, per_nic


def test_two_dgx_h100_default_choice_is_no_slower_than_the_ring():
    """NCCL runs its smallest estimate: the default pick is the ring at 8 GiB (its bus
    bandwidth beats the tree's 0.92 x 1/2 per byte), so the default equals the forced ring."""
    ring = _busbw("dgx-h100", ["count=16"], 8 * GIB, "ring")
    assert _busbw("dgx-h100", ["count=16"], 8 * GIB) == pytest.approx(ring, rel=1e-12)


def _hdr_4nic() -> tuple[str, list[str]]:
    return "a100-cluster-hdr", ["nodes=3", "network.nics_per_node=4"]


def test_three_a100_nodes_with_four_hdr_nics_peak_at_the_nics():
    """Large buffers: 4 channels of 24 GB/s (speedArrayInter's entry below HDR's 25 GB/s) =
    96 GB/s of bus bandwidth, the published peak (~96 GB/s, issue #119). At 8 GiB the
    model's latency is < 0.5% of the time; tolerance 3% (the thread says "about")."""
    assert _busbw(*_hdr_4nic(), 8 * GIB) / 1e9 == pytest.approx(96, rel=0.03)


def test_three_a100_nodes_with_four_hdr_nics_sweep_to_128_mib():
    """The thread's sweep (8 B to 128 MiB in 1 MiB steps, 128 sizes): average 84.8 GB/s,
    peak ~96 GB/s measured. The model gives 73.4 / 85.7 GB/s: 13% and 11% low, because
    NCCL's tuner latency across nodes (hwLat[NET] 14 us per network step for Simple, the
    1.4 "plateau" factor, max(3.4 us NVLink, 3 x 1 us proxy overhead) per in-node step: 320
    us for 24 ranks on 3 nodes) is a conservative estimate made for choosing an algorithm,
    and the LL128 ring is capped at 20 GB/s per channel (perChMaxRingLL128Bw) at mid sizes.
    Asserted: the model below the measurement (its known direction) by at most 16% for the
    average and 13% for the peak, so a change that widens the gap fails."""
    sizes = [8 + i * MIB for i in range(128)]
    bws = [_busbw(*_hdr_4nic(), n) / 1e9 for n in sizes]
    mean, peak = statistics.mean(bws), max(bws)
    assert -0.16 <= mean / 84.8 - 1 < 0, mean
    assert -0.13 <= peak / 96 - 1 < 0, peak
