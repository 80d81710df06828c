"""Where a device group sits in a system, and which physical links a collective over it uses.

Device ``d`` of a system sits in node ``d // devices_per_node`` at local rank
``d % devices_per_node`` (a "node" is what one spec file describes: a DGX, or a TPU slice whose
ICI joins all its chips). Local rank ``j`` owns NIC ``j x R // D`` of its node when there are
fewer NICs ``R`` than devices ``D`` (shared), else NICs ``j x R/D`` to ``(j+1) x R/D - 1``.

:func:`route_for` turns ``(system, group)`` into a :class:`Route`: ranks, nodes, ranks per
node, the in-node link and its per-rank bandwidth (times the torus dimensions it spans), the
network as the group sees it (per-NIC bandwidth divided by the fat tree's oversubscription and
two more switch hops when the group crosses leaves, or rails of a rail-optimized fabric) and
the NIC bandwidth the group drives per node. The collective formulas
(:mod:`simulator.network.collectives`) only read the Route.

:func:`links_used` names the physical link resources a collective over ``group`` occupies, so
the engine can make each one a shared resource:

- ``node{i}.dev{j}.link``: device ``j`` of node ``i``'s port on the in-node link (its NVLink
  ports into the NVSwitch, its ICI links on a torus), named whenever the group has another
  rank in the same node. An NVSwitch is non-blocking, so the ports, not the switch, are
  what concurrent collectives on the same device share.
- ``node{i}.nic{k}``: NIC ``k`` of node ``i``, named for every NIC a rank of the group drives
  when the group spans nodes.
- Nothing (``()``) for a group of at most one device. Spine and leaf uplinks are not named:
  oversubscription is already in the bandwidth the Route gives cross-leaf traffic.

Both are memoised per (network description, group): they are called once per collective task.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from simulator.arch.spec import TORUS_DIMS, Fabric, Link, System
from simulator.errors import MappingError

__all__ = ["TorusDim", "Route", "route_for", "links_used", "fabric_of", "node_of", "nics_of"]

_LEGACY_SCALE = {"torus2d": 2, "torus3d": 3}


@dataclass(frozen=True)
class TorusDim:
    """One dimension a group spans on a ring/torus: its ranks, and whether it wraps around
    (a ring: two links per rank) or is a line (one)."""

    size: int
    wraps: bool


@dataclass(frozen=True)
class Route:
    """What the collective formulas need to know about a group's placement.

    ``intra_bandwidth`` is the per-rank bandwidth of ring-style algorithms inside a node
    (the link's, times the dimensions of a torus without a shape); ``torus`` the dimensions of
    the node's box when the topology has a shape; ``hops`` the hop distance of a two-rank
    group on a torus. ``net`` is the network as this group sees it; ``nic_bandwidth`` the NIC
    bandwidth per node the group drives (its ``nics`` NICs; one rank's NICs when it is alone in
    its node); ``uniform`` whether every node holds ``per_node`` ranks.
    """

    ranks: int
    nodes: int = 1
    per_node: int = 1
    uniform: bool = True
    intra: Link | None = None
    intra_bandwidth: float = 0.0
    torus: tuple[TorusDim, ...] = ()
    hops: int = 1
    net: Link | None = None
    nics: int = 0
    nic_bandwidth: float = 0.0
    cross_leaf: bool = False

    @classmethod
    def in_node(cls, ranks: int, link: Link | None, topology: str = "switch") -> Route:
        """``ranks`` devices of one node on ``link`` (no shape: a torus multiplies the link's
        bandwidth by its dimensions, every group spanning them all)."""
        bw = link.bandwidth_Bps * _LEGACY_SCALE.get(topology, 1) if link else 0.0
        return cls(ranks, 1, ranks, True, link, bw)

    def describe(self) -> str:
        if self.nodes > 1:
            return (f"{self.ranks} ranks on {self.nodes} nodes ({self.per_node} per node"
                    f"{'' if self.uniform else ' at most'})")
        shape = "x".join(str(d.size) for d in self.torus)
        return f"{self.ranks} ranks in one node" + (f" ({shape} box of a torus)" if shape else "")


def fabric_of(system: System) -> Fabric | None:
    """The system's network as a :class:`Fabric` (a plain Link gets the defaults: one NIC per
    device, a non-blocking fabric with every node one hop from every other)."""
    net = system.network
    if net is None or isinstance(net, Fabric):
        return net
    return Fabric(net.name, net.bandwidth_Bps, net.latency_s, net.energy_per_byte_j)


@dataclass(frozen=True)
class _Net:
    """The network-relevant part of a System (hashable and cheap to hash)."""

    name: str
    count: int
    per_node: int
    topology: str
    shape: tuple[int, ...] | None
    link: Link | None
    fabric: Fabric | None


def _net(system: System) -> _Net:
    return _Net(system.name, system.count, system.devices_per_node or system.count,
                system.topology, system.shape, system.link or system.device.link,
                fabric_of(system))


def node_of(system: System, device: int) -> tuple[int, int]:
    """``(node, local rank)`` of a device."""
    per = system.devices_per_node or system.count
    return divmod(device, per)


def _nics(net: _Net, local: int) -> tuple[int, ...]:
    f = net.fabric
    per = net.per_node
    r = (f.nics_per_node if f is not None and f.nics_per_node else per)
    if r >= per:
        k = r // per
        return tuple(range(local * k, (local + 1) * k))
    return (local * r // per,)


def nics_of(system: System, device: int) -> tuple[int, ...]:
    """The NICs (indices within its node) a device sends through."""
    return _nics(_net(system), node_of(system, device)[1])


def _coords(index: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    out = []
    for s in reversed(shape):
        index, c = divmod(index, s)
        out.append(c)
    return tuple(reversed(out))


def _box(locals_: list[int], shape: tuple[int, ...]) -> tuple[tuple[TorusDim, ...], int] | None:
    """The spanned dimensions of a set of local ranks if it is a box of the torus (every
    combination of its coordinates present), and the hop distance of a pair; else None."""
    pts = {_coords(j, shape) for j in locals_}
    values = [sorted({c[i] for c in pts}) for i in range(len(shape))]
    size = 1
    for v in values:
        size *= len(v)
    if size != len(pts):
        return None
    dims = tuple(TorusDim(len(v), len(v) == s) for v, s in zip(values, shape) if len(v) > 1)
    hops = 1
    if len(pts) == 2:
        a, b = sorted(pts)
        hops = sum(min(abs(x - y), s - abs(x - y)) for x, y, s in zip(a, b, shape))
    return dims, hops


@functools.lru_cache(maxsize=1 << 16)
def _route(net: _Net, group: tuple[int, ...]) -> Route:
    by_node: dict[int, list[int]] = {}
    for d in group:
        n, j = divmod(d, net.per_node)
        by_node.setdefault(n, []).append(j)
    p = len(group)
    k = len(by_node)
    counts = [len(v) for v in by_node.values()]
    m = max(counts)
    link = net.link
    intra_bw = link.bandwidth_Bps if link else 0.0
    torus: tuple[TorusDim, ...] = ()
    hops = 1
    dims = TORUS_DIMS.get(net.topology)
    if dims and link is not None:
        shape = net.shape
        first = next(iter(by_node.values()))
        box = _box(first, shape) if shape and len(shape) == dims \
            and _prod(shape) == net.per_node else None
        if box is not None and box[0]:
            torus, hops = box
            intra_bw = sum(2 * intra_bw if d.wraps else intra_bw for d in torus)
        elif not shape:
            intra_bw *= _LEGACY_SCALE.get(net.topology, 1)
        # a shaped torus and a group that is not a box: one ring through it at one link's rate
    if k == 1:
        return Route(p, 1, m, True, link, intra_bw, torus, hops)
    f = net.fabric
    if f is None:
        return Route(p, k, m, len(set(counts)) == 1, link, intra_bw, torus, hops)
    nic_sets = {n: frozenset(i for j in js for i in _nics(net, j)) for n, js in by_node.items()}
    nics = min(len(s) for s in nic_sets.values())
    npl = f.nodes_per_leaf
    leaves = {n // npl for n in by_node} if npl else {0}
    cross = len(leaves) > 1
    if f.topology == "rail-optimized" and len(set(nic_sets.values())) > 1:
        cross = True  # ranks on different rails: through the spine
    bw = f.bandwidth_Bps / (f.oversubscription if cross else 1.0)
    lat = f.latency_s + (2 * f.switch_latency_s if cross else 0.0)
    seen = Link(f.name, bw, lat, f.energy_per_byte_j)
    return Route(p, k, m, len(set(counts)) == 1, link, intra_bw, torus, hops, seen, nics,
                 nics * bw, cross)


def _prod(xs: tuple[int, ...]) -> int:
    out = 1
    for x in xs:
        out *= x
    return out


def route_for(system: System, group: tuple[int, ...]) -> Route:
    """The :class:`Route` of a collective over the devices of ``group`` (memoised).

    Raises
    ------
    MappingError
        If the group spans nodes and the spec has no ``network``.
    """
    net = _net(system)
    r = _route(net, tuple(group))
    if r.nodes > 1 and r.net is None:
        per = net.per_node
        raise MappingError(f"{system.name}: a collective over devices {group[0]}..{group[-1]} "
                           f"spans {r.nodes} nodes of {per} devices, but the spec has no "
                           "network (the scale-out fabric between nodes); add network: to the "
                           "system spec")
    return r


@functools.lru_cache(maxsize=1 << 16)
def _links(net: _Net, group: tuple[int, ...]) -> tuple[str, ...]:
    if len(set(group)) <= 1:
        return ()
    by_node: dict[int, list[int]] = {}
    for d in sorted(set(group)):
        n, j = divmod(d, net.per_node)
        by_node.setdefault(n, []).append(j)
    spans = len(by_node) > 1
    out: list[str] = []
    for n, js in sorted(by_node.items()):
        if len(js) > 1:
            out += [f"node{n}.dev{j}.link" for j in js]
        if spans:
            out += [f"node{n}.nic{i}" for i in sorted({i for j in js for i in _nics(net, j)})]
    return tuple(out)


def links_used(system: System, group: tuple[int, ...]) -> tuple[str, ...]:
    """Names of the physical link resources a collective over ``group`` occupies (see the
    module docstring): in-node ports ``node{i}.dev{j}.link`` of ranks that share a node with
    another rank, NICs ``node{i}.nic{k}`` when the group spans nodes, ``()`` for one device.
    Memoised per (network description, group).

    >>> from simulator.arch.loader import load_arch
    >>> links_used(load_arch("dgx-a100", ["count=16"]), (3, 11))
    ('node0.nic3', 'node1.nic3')
    """
    return _links(_net(system), tuple(group))
