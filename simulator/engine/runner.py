"""Discrete-event run of a WorkloadGraph over every device of its groups (simpy).

The engine knows nothing about GPUs or layers. Each device owns three streams, each a resource
of capacity one on simpy's event calendar: ``compute``, ``copy`` (its host link: the copy
engine) and ``comm`` (its port onto the interconnect). Ops on one stream serialise; a
collective takes the ``comm`` port of every device of its group at once and so can overlap
compute on the same devices.

A node placed on a group of devices runs as one task per device (SPMD); each task waits for the
tasks of its predecessors on the same device, or for all of them when the predecessor ran on
other devices (a pipeline hand-off). A collective is one task over its whole group. Tasks are
driven by resource-request and timeout callbacks rather than one generator process per op,
and the timeline is stored column-wise, so a million-op graph fits in a few hundred bytes per
op.

The compute and copy streams run their ops strictly in program order (the graph's topological
order), as a framework issues kernels into an in-order CUDA stream: a pipeline stage finishes
one micro-batch before it starts the next, even while the first waits on a collective. The
communication port runs whichever ready transfer comes first in program order (NCCL keeps a
stream per peer, so a pipeline hand-off never waits behind an unrelated one). Streams of one
device still overlap. Deterministic: ties resolve in topological order, then by device.

With ``host_s`` (``--timing eager``, :mod:`simulator.timing`) each device also has a host
thread that issues its ops in program order, ``host_s(op, cost)`` each, never waiting for the
device: an op can start only once its host has issued it (a collective once every host of its
group has), so ``device start_i = max(host issue done_i, device end_{i-1}, dependencies)``.
When the host is slower than the kernels the device idles between them (host-bound); the
issue times are kept per row (``Timeline.host_end``).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Hashable

import numpy as np
import simpy

from simulator.engine.ports import Ports
from simulator.engine.timeline import STREAMS, Timeline, TimelineEntry
from simulator.mapping.base import OpCost
from workloads.graph import WorkloadGraph
from workloads.ops import Collective, Memcpy, Op

__all__ = ["TimelineEntry", "Timeline", "STREAMS", "stream_of", "run_graph"]



def stream_of(op: Op) -> str:
    """Collectives use the communication port, copies the copy engine, the rest compute (an
    op may name its stream: the macro ops of :mod:`simulator.engine.blocks`)."""
    named = getattr(op, "stream", None)
    if isinstance(named, str):
        return named
    if isinstance(op, Collective):
        return "comm"
    if isinstance(op, Memcpy) and op.src != op.dst:
        return "copy"
    return "compute"


def run_graph(graph: WorkloadGraph, cost_of: Callable[..., OpCost],
              progress: Callable[[int], None] | None = None,
              links_of: Callable[[tuple[int, ...], Op], tuple[Hashable, ...]] | None = None,
              host_s: Callable[[Op, OpCost], float] | None = None) -> Timeline:
    """Simulate ``graph`` on every device of its groups; ``cost_of(op)`` maps an op to its
    cost on one device (usually a memoised mapper), ``cost_of(op, group)`` a collective over
    that device group (which links it crosses depends on where the devices are).

    ``links_of(group, op)``: the resources collective ``op`` over ``group`` holds while it runs, each
    of capacity one -- an ``int`` device index for that device's communication port, any
    other hashable for a shared physical link (a NIC, a fabric port); collectives that need
    the same link then queue for it. Without it a collective holds the communication port of
    each device of its group.

    ``host_s(op, cost)``: the host time to issue ``op`` (eager dispatch); None: the host keeps
    ahead of every device (no host pipeline).

    Raises
    ------
    RuntimeError
        If some op never ran (a dependency cycle or a dangling name): an engine bug, never a
        silent partial result.
    """
    env = simpy.Environment()
    names: list[str] = []
    ops: list[Op] = []
    costs: list[OpCost] = []
    index: dict[str, int] = {}
    node_group: list[tuple[int, ...]] = []
    node_where: list[tuple[int, ...] | None] = []  # a collective's devices as placed
    node_tasks: list[tuple[int, ...]] = []  # task ids of each node
    # per task (compact arrays: a million-op graph must fit in little memory)
    t_node = array("i")
    t_dev = array("i")             # -1 for a collective (its devices are the node's group)
    t_rec = array("q")             # first record row
    t_wait = array("i")            # unfinished dependencies
    t_succ: list[list[int] | None] = []
    r_node, r_dev, r_stream = array("i"), array("i"), array("b")
    node_stream = array("b")
    n_rec = 0
    host_clock: dict[int, float] = {}  # per device: when its host has issued everything so far
    t_release = array("d")             # per task: when its op is issued (0 without a host)
    r_host = array("d")                # per record row: its device's host issue time

    per_op: dict[int, tuple[OpCost, int, bool]] = {}  # by op object: shared by repeats
    for i, fn in enumerate(graph.flat()):
        name, op, fpreds, grp, span = fn[0], fn[1], fn[2], fn[3], fn[5]
        index[name] = i
        names.append(name)
        ops.append(op)
        collective = isinstance(op, Collective)
        where = span or grp  # a folded collective crosses the links of what it stands for
        key = (id(op), where) if collective else id(op)
        known = per_op.get(key)
        if known is None:  # ids are stable: every op stays referenced from `ops`
            known = per_op[key] = (cost_of(op, where) if collective else cost_of(op),
                                   STREAMS.index(stream_of(op)), collective)
        cost, stream, collective = known
        costs.append(cost)
        node_group.append(grp)
        node_where.append(where if collective else None)
        preds = [index[p] for p in fpreds]
        node_stream.append(stream)
        mine = []
        hs = float(host_s(op, cost)) if host_s is not None else 0.0
        # an op of several kernels may start once its first is issued (simulator.timing)
        lead = float(cost.details.get("host_lead_s", 0.0)) if host_s is not None else 0.0
        for d in ((-1,) if collective else grp):
            t = len(t_node)
            t_node.append(i)
            t_dev.append(d)
            t_rec.append(n_rec)
            release = 0.0
            for dd in (grp if d == -1 else (d,)):
                r_node.append(i)
                r_dev.append(dd)
                r_stream.append(stream)
                if host_s is not None:
                    h = host_clock[dd] = host_clock.get(dd, 0.0) + hs
                    r_host.append(h)
                    release = max(release, h - lead)
                n_rec += 1
            t_release.append(release)
            deps: list[int] = []
            for p in preds:
                pt = node_tasks[p]
                if len(pt) == 1:
                    deps.append(pt[0])
                elif d != -1 and d in node_group[p]:
                    deps.append(pt[node_group[p].index(d)])
                else:
                    deps.extend(pt)
            t_wait.append(len(deps))
            t_succ.append(None)
            for q in deps:
                lst = t_succ[q]
                if lst is None:
                    t_succ[q] = [t]
                else:
                    lst.append(t)
            mine.append(t)
        node_tasks.append(tuple(mine))
        if progress is not None and i % 1000 == 0:
            progress(i)
    del index

    rec_node = np.frombuffer(r_node, dtype=np.int32).copy()
    rec_dev = np.frombuffer(r_dev, dtype=np.int32).copy()
    rec_stream = np.frombuffer(r_stream, dtype=np.int8).copy()
    del r_node, r_dev, r_stream
    rec_start = np.full(n_rec, np.nan)
    rec_end = np.full(n_rec, np.nan)
    n_streams = len(STREAMS)
    comm = STREAMS.index("comm")
    named: dict[Hashable, int] = {}  # shared links: negative port ids
    coll_ports: dict[tuple[tuple[int, ...], int], tuple[int, ...]] = {}

    def link_ports(n: int) -> tuple[int, ...]:
        where = node_where[n]
        key = (where, id(ops[n]))
        got = coll_ports.get(key)
        if got is None:
            ids = []
            for k in links_of(where, ops[n]):  # type: ignore[misc,arg-type]
                if isinstance(k, int):
                    ids.append(k * n_streams + comm)
                else:
                    ids.append(named.setdefault(k, -1 - len(named)))
            got = coll_ports[key] = tuple(sorted(set(ids)))
        return got

    def ports_of(t: int) -> tuple[int, ...]:
        n, d = t_node[t], t_dev[t]
        stream = node_stream[n]
        if d != -1:
            return (d * n_streams + stream,)
        if links_of is not None and node_where[n] is not None:
            return link_ports(n)
        return tuple(x * n_streams + stream for x in node_group[n])

    def ready(t: int) -> tuple[int, ...]:
        wait = t_release[t] - env.now
        if wait > 0.0:  # its host has not issued it yet: the device waits for the host
            ev = env.timeout(wait)
            ev.callbacks.append(lambda _e, t=t: (ports.ready(t), ports.dispatch(ports_of(t))))
            return ()
        ports.ready(t)
        return ports_of(t)

    def n_rows(t: int) -> int:
        return 1 if t_dev[t] != -1 else len(node_group[t_node[t]])

    def on_start(t: int, held: tuple[int, ...]) -> None:
        r0 = t_rec[t]
        rec_start[r0:r0 + n_rows(t)] = env.now

    def on_done(t: int, held: tuple[int, ...]) -> None:
        r0 = t_rec[t]
        rec_end[r0:r0 + n_rows(t)] = env.now
        ports.release(held)
        touched = list(held)
        succ = t_succ[t]
        t_succ[t] = None  # free as we go
        for s in succ or ():
            t_wait[s] -= 1
            if t_wait[s] == 0:
                touched.extend(ready(s))
        ports.dispatch(touched)

    ports = Ports(env, ports_of=ports_of, duration=lambda t: costs[t_node[t]].latency_s,
                  on_start=on_start, on_done=on_done,
                  in_order=lambda p: p >= 0 and p % n_streams != comm)
    for t in range(len(t_node)):  # tasks were made in program order
        ports.enqueue(t, ports_of(t))
    first: list[int] = []
    for t in range(len(t_node)):
        if t_wait[t] == 0:
            first.extend(ready(t))
    ports.dispatch(first)
    env.run()
    missing = int(np.isnan(rec_end).sum())
    if missing:  # a dependency never completed: a cycle or a bad name
        bad = sorted({names[int(rec_node[i])] for i in np.flatnonzero(np.isnan(rec_end))[:5]})
        raise RuntimeError(f"engine: {missing} op instances never ran, e.g. {bad}")
    host = np.frombuffer(r_host, dtype=np.float64).copy() if host_s is not None else None
    return Timeline(names, ops, costs, rec_node, rec_dev, rec_stream, rec_start, rec_end,
                    host_end=host)
