"""Collective algorithms in the alpha-beta model: ring, tree, hierarchical, torus, pairwise.

Every algorithm is a sequence of :class:`Phase` s; a phase of ``steps`` steps costs
``steps x alpha`` (the per-step latency of the link it crosses) plus ``bytes / beta`` (its
bytes per rank over the per-rank bandwidth). Phases run one after the other, except in a
*pipelined* algorithm (the multi-node ring and tree, as NCCL runs them: chunks stream through
NVLink and the NICs at once), whose time is the sum of its alphas plus the slowest phase's
beta. Payload convention (NCCL's): ``nbytes`` is each rank's buffer for all-reduce, the
gathered (output) buffer for all-gather, the input buffer for reduce-scatter and all-to-all,
and the message for send/recv.

Formulas, with p ranks, n bytes, per-step latency a and per-rank bandwidth b:

- ring all-reduce: 2(p-1) steps, 2(p-1)/p n bytes sent per rank -> bus bandwidth
  (NCCL's ``busbw = algbw x 2(p-1)/p``) equals b;
- double binary tree all-reduce: 2 ceil(log2 p) steps, 2n / b (reduce then broadcast, not
  overlapped: the textbook bound; NCCL's pipelined tree can do better on two nodes);
- ring all-gather / reduce-scatter, pairwise all-to-all: p-1 steps, (p-1)/p n / b;
- send/recv: one step, n / b (the sender sends n; the pair averages n/2 per rank);
- torus (a box of a ring/torus of known shape): rings along every spanned dimension at once,
  each dimension giving 2b if it wraps (a bidirectional ring) or b if it is a line; all-reduce
  2 sum(d_i - 1) steps and 2(p-1)/p n / sum(b_i) (the "bandwidth x axes" rule of Google's
  scaling book); all-to-all is limited by the mean hop distance per dimension;
- several ranks on each of several nodes (``Route.per_node > 1``):
  *ring*: one channel per NIC the group drives, 2(p-1) steps of the network latency, beta the
  slower of the in-node link and the node's NICs (pipelined); *tree*: a chain in the node and
  a double binary tree across nodes, 2n over the slower of the two; *hierarchical* (NCCL-style
  two levels, equal ranks per node): reduce-scatter inside the node, all-reduce of n/m across
  nodes on each rank's own rail (the m rails in parallel; ring or tree, the faster), all-gather
  inside the node, one after the other.

:func:`collective` evaluates the algorithms that apply to a route and returns the fastest, as
NCCL's tuner does, unless one is forced; :func:`candidates` returns them all.

NCCL's model (``nccl=NcclModel(...)``, what the GPU mapper passes for parts whose spec sets
``params.collectives: nccl``): inside one node, all-reduce, all-gather and reduce-scatter are
priced as NCCL runs them (:mod:`simulator.network.nccl`): every (algorithm, protocol) pair
NCCL's tuner weighs, timed by the tuner's own estimate or, where the part's spec gives NCCL's
channel count, as its ring kernels move the data (channels, chunks, slices, copy rounds, one
link latency per handoff, one local copy per loop), and the pair NCCL's tuner estimates
fastest is run, as NCCL does (its choice among the forced algorithm's protocols when one is
given). Across nodes (every node holding the same number of ranks, a fabric of NICs), the
all-reduce, all-gather and reduce-scatter are NCCL's ring and tree over the NICs, one channel
per NIC, timed by NCCL's own multi-node estimate (:func:`simulator.network.nccl.nccl_net_candidates`),
and NCCL's smallest estimate is run; a forced algorithm NCCL does not have (hierarchical)
and the other collectives keep the alpha-beta model.
"""

from __future__ import annotations

import math

from simulator.arch.spec import Link
from simulator.errors import MappingError
from simulator.network.nccl import (
    NcclModel,
    nccl_candidates,
    nccl_choice,
    nccl_net_candidates,
    nccl_net_choice,
)
from simulator.network.phases import PROTOCOLS, CollectiveTime, Phase
from simulator.network.topology import Route, TorusDim

__all__ = ["Phase", "CollectiveTime", "collective", "candidates", "ALGORITHMS", "NcclModel",
           "PROTOCOLS"]

ALGORITHMS = ("ring", "tree", "hierarchical", "torus", "pairwise", "p2p", "nvls")
_KINDS = ("allreduce", "allgather", "reducescatter", "alltoall", "sendrecv")


def _make(kind: str, algorithm: str, phases: list[Phase], pipelined: bool = False
          ) -> CollectiveTime:
    if pipelined:
        t = sum(ph.alpha_s for ph in phases) + max(ph.beta_s for ph in phases)
    else:
        t = sum(ph.time_s for ph in phases)
    return CollectiveTime(kind, algorithm, t, sum(ph.bytes_sent for ph in phases),
                          tuple(phases), pipelined)


def _phase(name: str, link: Link, steps: int, latency: float, sent: float, bw: float,
           beta_bytes: float | None = None) -> Phase:
    """``steps`` x ``latency`` + ``beta_bytes`` (default ``sent``) / ``bw``."""
    moved = sent if beta_bytes is None else beta_bytes
    return Phase(name, link.name, steps, steps * latency, moved / bw if moved else 0.0, sent,
                 sent * link.energy_per_byte_j)


def _log2(p: int) -> int:
    return math.ceil(math.log2(p)) if p > 1 else 0


# -- one level: p ranks on one link (a switch, a NIC per rank, or one ring) ------------------
def _flat(kind: str, n: float, p: int, link: Link, bw: float, latency: float, where: str
          ) -> list[CollectiveTime]:
    """Algorithms over ``p`` ranks that each drive ``bw`` on ``link``."""
    if kind == "allreduce":
        ring = _phase(f"ring all-reduce {where}", link, 2 * (p - 1), latency,
                      2 * (p - 1) / p * n, bw)
        tree = _phase(f"double binary tree all-reduce {where}", link, 2 * _log2(p), latency,
                      2 * n, bw)
        return [_make(kind, "ring", [ring]), _make(kind, "tree", [tree])]
    if kind in ("allgather", "reducescatter"):
        word = "all-gather" if kind == "allgather" else "reduce-scatter"
        ph = _phase(f"ring {word} {where}", link, p - 1, latency, (p - 1) / p * n, bw)
        return [_make(kind, "ring", [ph])]
    if kind == "alltoall":
        ph = _phase(f"pairwise all-to-all {where}", link, p - 1, latency, (p - 1) / p * n, bw)
        return [_make(kind, "pairwise", [ph])]
    # send/recv: the sender puts n on the link, the receiver none: n / 2 per rank on average
    ph = _phase(f"send/recv {where}", link, 1, latency, n / 2, bw, beta_bytes=n)
    return [_make(kind, "p2p", [ph])]


# -- a box of a torus: rings along every spanned dimension at once ---------------------------
def _dim_bw(d: TorusDim, bw: float) -> float:
    return 2 * bw if d.wraps else bw


def _mean_hops(d: TorusDim) -> float:
    """Mean hop distance between two ranks along one dimension (self included)."""
    s = d.size
    return (s * s // 4) / s if d.wraps else (s * s - 1) / (3 * s)


def _torus(kind: str, n: float, p: int, link: Link, dims: tuple[TorusDim, ...], hops: int
           ) -> list[CollectiveTime]:
    a, b = link.latency_s, link.bandwidth_Bps
    total = sum(_dim_bw(d, b) for d in dims)
    shape = "x".join(str(d.size) for d in dims)
    where = f"over a {shape} {'torus' if all(d.wraps for d in dims) else 'box'}"
    steps = sum(d.size - 1 for d in dims)
    if kind == "allreduce":
        ph = _phase(f"all-reduce by rings along each dimension {where}", link, 2 * steps, a,
                    2 * (p - 1) / p * n, total)
    elif kind in ("allgather", "reducescatter"):
        word = "all-gather" if kind == "allgather" else "reduce-scatter"
        ph = _phase(f"{word} by rings along each dimension {where}", link, steps, a,
                    (p - 1) / p * n, total)
    elif kind == "alltoall":
        beta = max((p - 1) / p * n * _mean_hops(d) / _dim_bw(d, b) for d in dims)
        ph = Phase(f"all-to-all {where} (mean hop distance per dimension)", link.name, steps,
                   steps * a, beta, (p - 1) / p * n, (p - 1) / p * n * link.energy_per_byte_j)
    else:
        ph = _phase(f"send/recv over {hops} hop(s) {where}", link, max(1, hops), a, n / 2, b,
                    beta_bytes=n)
        return [_make(kind, "p2p", [ph])]
    out = [_make(kind, "torus", [ph])]
    if kind != "alltoall":  # one unidirectional ring through the box, for comparison
        out += [c for c in _flat(kind, n, p, link, b, a, f"as one ring {where}")
                if c.algorithm == "ring"]
    return out


def _intra(kind: str, n: float, p: int, route: Route) -> list[CollectiveTime]:
    """The algorithms for ``p`` ranks of one node (or ICI domain) of ``route``."""
    link = route.intra
    assert link is not None
    if route.torus:
        return _torus(kind, n, p, link, route.torus, route.hops)
    return _flat(kind, n, p, link, route.intra_bandwidth, link.latency_s,
                 f"over {p} ranks in a node" if route.nodes > 1 else f"over {p} ranks")


# -- several nodes ----------------------------------------------------------------------------
def _multi(kind: str, n: float, route: Route) -> list[CollectiveTime]:
    p, k, m = route.ranks, route.nodes, route.per_node
    net = route.net
    assert net is not None
    a_net, b_nic = net.latency_s, route.nic_bandwidth
    if m == 1:  # one rank per node: each rank on its own NIC (its rail)
        return _flat(kind, n, p, net, b_nic, a_net, f"over {k} nodes, one rank each")
    intra = route.intra
    assert intra is not None
    a_in, b_in = intra.latency_s, route.intra_bandwidth
    out: list[CollectiveTime] = []
    if kind == "allreduce":
        s = 2 * (p - 1) / p * n
        out.append(_make(kind, "ring", [
            _phase(f"ring all-reduce over {k} nodes ({route.nics} NIC channels per node)",
                   net, 2 * (p - 1), a_net, s / m, b_nic, beta_bytes=s),
            _phase(f"the same ring's hops inside each node ({m} ranks)", intra, 0, 0.0,
                   s * (m - 1) / m, b_in, beta_bytes=s)], pipelined=True))
        out.append(_make(kind, "tree", [
            _phase(f"double binary tree all-reduce over {k} nodes", net, 2 * _log2(k), a_net,
                   2 * n / m, b_nic, beta_bytes=2 * n),
            _phase(f"chain reduce and broadcast inside each node ({m} ranks)", intra,
                   2 * (m - 1), a_in, 2 * n * (m - 1) / m, b_in, beta_bytes=2 * n)],
            pipelined=True))
    elif kind in ("allgather", "reducescatter"):
        word = "all-gather" if kind == "allgather" else "reduce-scatter"
        s = (p - 1) / p * n
        out.append(_make(kind, "ring", [
            _phase(f"ring {word} over {k} nodes ({route.nics} NIC channels per node)", net,
                   p - 1, a_net, s / m, b_nic, beta_bytes=s),
            _phase(f"the same ring's hops inside each node ({m} ranks)", intra, 0, 0.0,
                   s * (m - 1) / m, b_in, beta_bytes=s)], pipelined=True))
    elif kind == "alltoall":
        out.append(_make(kind, "pairwise", [
            _phase(f"pairwise all-to-all across {k} nodes", net, p - 1, a_net,
                   (p - m) / p * n, b_nic, beta_bytes=m * (p - m) / p * n),
            _phase(f"pairwise all-to-all inside each node ({m} ranks)", intra, 0, 0.0,
                   (m - 1) / p * n, b_in)], pipelined=True))
    else:
        out.append(_make(kind, "p2p", [_phase("send/recv across nodes", net, 1, a_net, n / 2,
                                              b_nic / m, beta_bytes=n)]))
    if route.uniform and kind in ("allreduce", "allgather", "reducescatter"):
        out.append(_hierarchical(kind, n, route))
    return out


def _best(cands: list[CollectiveTime]) -> CollectiveTime:
    return min(cands, key=lambda c: (c.time_s, c.bytes_sent, c.algorithm))


def _hierarchical(kind: str, n: float, route: Route) -> CollectiveTime:
    """Two levels: in-node reduce-scatter, across-node collective on 1/m of the data over each
    rank's rail (all m rails at once), in-node all-gather."""
    k, m = route.nodes, route.per_node
    net = route.net
    assert net is not None
    rail = route.nic_bandwidth / m
    if kind == "allreduce":
        rs = _best([c for c in _intra("reducescatter", n, m, route)])
        ag = _best([c for c in _intra("allgather", n, m, route)])
        inter = _best(_flat("allreduce", n / m, k, net, rail, net.latency_s,
                            f"of 1/{m} of the data over {k} nodes on each rail"))
        parts = [*rs.phases, *inter.phases, *ag.phases]
    else:
        inside = _best(_intra(kind, n, m, route))
        across = _best(_flat(kind, n / m, k, net, rail, net.latency_s,
                             f"of 1/{m} of the data over {k} nodes on each rail"))
        parts = [*inside.phases, *across.phases] if kind == "reducescatter" \
            else [*across.phases, *inside.phases]
    return _make(kind, "hierarchical", parts)


def _nccl_applies(kind: str, route: Route, nccl: NcclModel | None) -> bool:
    """NCCL's model prices an all-reduce, all-gather or reduce-scatter inside one node."""
    return (nccl is not None and route.ranks > 1 and route.nodes == 1 and not route.torus
            and kind in ("allreduce", "allgather", "reducescatter"))


def _nccl_net_applies(kind: str, route: Route, nccl: NcclModel | None) -> bool:
    """NCCL's model prices an all-reduce, all-gather or reduce-scatter over nodes that each
    hold the same number of ranks and reach each other through NICs."""
    return (nccl is not None and route.nodes > 1 and route.uniform and not route.torus
            and route.net is not None and route.nics > 0
            and (route.per_node == 1 or route.intra is not None)
            and kind in ("allreduce", "allgather", "reducescatter"))


def _net_args(route: Route) -> tuple:
    assert route.net is not None
    return (route.nodes, route.per_node, route.nics, route.intra, route.intra_bandwidth,
            route.net, route.net.bandwidth_Bps)


def candidates(kind: str, nbytes: float, route: Route, nccl: NcclModel | None = None
               ) -> tuple[CollectiveTime, ...]:
    """Every algorithm that applies to a ``kind`` collective of ``nbytes`` over ``route``
    (with ``nccl``: NCCL's (algorithm, protocol) pairs for an all-reduce, all-gather or
    reduce-scatter inside one node, see the module docstring).

    Raises
    ------
    MappingError
        An unknown collective, a negative or non-finite size, or a route without the link
        the collective needs.
    """
    if kind not in _KINDS:
        raise MappingError(f"unknown collective {kind!r}; known: {', '.join(_KINDS)}")
    if not (isinstance(nbytes, (int, float)) and math.isfinite(nbytes) and nbytes >= 0):
        raise MappingError(f"a {kind} needs a finite, non-negative size in bytes, got "
                           f"{nbytes!r}")
    n = float(nbytes)
    if route.ranks <= 1:
        return (CollectiveTime(kind, "none", 0.0, 0.0),)
    if route.nodes > 1:
        if route.net is None:
            raise MappingError(f"a {kind} over {route.ranks} ranks on {route.nodes} nodes needs "
                               "a network between the nodes; the spec has none")
        if route.per_node > 1 and route.intra is None:
            raise MappingError(f"a {kind} with {route.per_node} ranks per node needs an "
                               "in-node link; the spec has none")
        if _nccl_net_applies(kind, route, nccl):
            assert nccl is not None
            return tuple(nccl_net_candidates(kind, n, *_net_args(route), nccl))
        return tuple(_multi(kind, n, route))
    if route.intra is None:
        raise MappingError(f"a {kind} over {route.ranks} ranks needs a link; the spec has none")
    if _nccl_applies(kind, route, nccl):
        assert nccl is not None
        return tuple(nccl_candidates(kind, n, route.ranks, route.intra, route.intra_bandwidth,
                                     nccl))
    return tuple(_intra(kind, n, route.ranks, route))


def collective(kind: str, nbytes: float, route: Route, algorithm: str | None = None,
               nccl: NcclModel | None = None) -> CollectiveTime:
    """The time of a ``kind`` collective of ``nbytes`` over ``route``: the fastest applicable
    algorithm (ties: fewer bytes sent), or ``algorithm`` when given; ``nccl`` prices it with
    NCCL's model where that applies, which runs the pair NCCL's tuner picks (module
    docstring).

    Raises
    ------
    MappingError
        As :func:`candidates`, or a forced algorithm that does not apply to the route.

    Examples
    --------
    >>> from simulator.arch.spec import Link
    >>> from simulator.network.topology import Route
    >>> nv = Link("nvlink", 300e9, 2e-6)
    >>> r = collective("allreduce", 1e9, Route.in_node(8, nv))
    >>> r.algorithm, round(r.time_s * 1e3, 3)
    ('ring', 5.861)
    """
    cands = candidates(kind, nbytes, route, nccl)
    if _nccl_applies(kind, route, nccl) and route.intra is not None and nccl is not None:
        # NCCL runs the pair its tuner estimates fastest (see simulator.network.nccl)
        chosen_nccl = nccl_choice(kind, float(nbytes), route.ranks, route.intra,
                                  route.intra_bandwidth, nccl, algorithm)
        if chosen_nccl is not None:
            return chosen_nccl
    if _nccl_net_applies(kind, route, nccl) and nccl is not None:
        # NCCL's smallest estimate across nodes; a forced algorithm NCCL lacks: alpha-beta
        chosen_net = nccl_net_choice(kind, float(nbytes), *_net_args(route), nccl, algorithm)
        if chosen_net is not None:
            return chosen_net
        cands = tuple(_multi(kind, float(nbytes), route))
    if algorithm is None:
        return _best(list(cands))
    chosen = [c for c in cands if c.algorithm == algorithm]
    if not chosen:
        names = ", ".join(sorted({c.algorithm for c in cands}))
        raise MappingError(f"algorithm {algorithm!r} does not apply to a {kind} over "
                           f"{route.describe()}; applicable: {names}")
    return _best(chosen)

