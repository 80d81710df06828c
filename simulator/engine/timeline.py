"""Timeline: the column-wise record of a discrete-event run (one row per op on a device)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from simulator.mapping.base import OpCost
from workloads.ops import Op

__all__ = ["STREAMS", "TimelineEntry", "Timeline"]

STREAMS = ("compute", "copy", "comm")


@dataclass(frozen=True)
class TimelineEntry:
    """One op on one device as executed: where, when, and what it cost."""

    name: str
    op: Op
    device: int
    stream: str
    start_s: float
    end_s: float
    cost: OpCost


class Timeline(Sequence[TimelineEntry]):
    """Column-wise record of a run: one row per (op instance, device), sorted by start time.

    ``node`` indexes ``names``/``ops``/``costs`` (one entry per op instance of the graph);
    ``device``, ``stream`` (index into :data:`STREAMS`), ``start`` and ``end`` are numpy
    arrays of one row each. Indexing or iterating builds :class:`TimelineEntry` objects on the
    fly. ``host_end`` (a run with a host pipeline, ``--timing eager``): when the row's host
    finished issuing it; None otherwise.
    """

    def __init__(self, names: list[str], ops: list[Op], costs: list[OpCost], node: np.ndarray,
                 device: np.ndarray, stream: np.ndarray, start: np.ndarray, end: np.ndarray,
                 host_end: np.ndarray | None = None):
        order = np.lexsort((device, end, start))
        self.names, self.ops, self.costs = names, ops, costs
        self.node = node[order]
        self.device = device[order]
        self.stream = stream[order]
        self.start = start[order]
        self.end = end[order]
        self.host_end = host_end[order] if host_end is not None else None
        self.rep_of: dict[int, int] = {}   # folded runs: device -> the device that ran for it
        self.weight: dict[int, int] = {}   # folded runs: devices each representative stands for

    def fold(self, rep_of: dict[int, int], weight: dict[int, int]) -> Timeline:
        """Mark this run as folded (see :mod:`workloads.transforms.fold`): ``rep_of`` maps every
        device to its representative, ``weight`` gives how many devices each stands for."""
        self.rep_of, self.weight = dict(rep_of), dict(weight)
        return self

    def row_weights(self) -> np.ndarray:
        """Devices each row stands for (all ones for an unfolded run)."""
        if not self.weight:
            return np.ones(len(self))
        w = np.ones(int(self.device.max()) + 1 if len(self) else 1)
        for d, k in self.weight.items():
            if d < w.size:
                w[d] = k
        return w[self.device]

    def __len__(self) -> int:
        return int(self.node.shape[0])

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        n = int(self.node[i])
        return TimelineEntry(self.names[n], self.ops[n], int(self.device[i]),
                             STREAMS[int(self.stream[i])], float(self.start[i]),
                             float(self.end[i]), self.costs[n])

    def __iter__(self) -> Iterator[TimelineEntry]:
        for i in range(len(self)):
            yield self[i]

    @property
    def makespan_s(self) -> float:
        return float(self.end.max()) if len(self) else 0.0

    def devices(self) -> list[int]:
        return sorted(int(d) for d in np.unique(self.device))

    def busy_s(self, device: int, stream: str | None = None) -> float:
        """Time ``device`` had at least one op on ``stream`` (any stream if None); in a folded
        run, the time of the device that ran for it."""
        device = self.rep_of.get(device, device)
        sel = self.device == device
        if stream is not None:
            sel &= self.stream == STREAMS.index(stream)
        return _union_length(self.start[sel], self.end[sel])

    def power_series(self, device: int, idle_w: float, floor_above_w: float
                     ) -> tuple[np.ndarray, np.ndarray]:
        """``device``'s power over time from its own busy/idle timeline, as a step function:
        ``watts[i]`` holds from ``times[i]`` to ``times[i + 1]`` (the last point, at the end of
        the run or 0 for an idle device, is back at idle).

        Power = ``idle_w`` always, plus ``floor_above_w`` while any op runs (scaled by the
        op's ``details["floor_scale"]`` when the power cap lowered its clock), plus each
        running op's dynamic energy spread evenly over its duration. In a folded run, a
        device draws what its representative drew.
        """
        device = self.rep_of.get(device, device)
        sel = self.device == device
        end = self.makespan_s
        if not sel.any():
            return np.array([0.0, end]), np.array([idle_w, idle_w])
        st, en, nd = self.start[sel], self.end[sel], self.node[sel]
        energy = np.array([c.energy_j for c in self.costs])
        fscale = np.array([float(c.details.get("floor_scale", 1.0)) for c in self.costs])
        dur = np.maximum(en - st, 1e-15)
        # a capped op lowers the floor while it runs: its share below the full floor is
        # carried as a negative addition, so an op alone draws exactly its capped power
        watts = energy[nd] / dur - floor_above_w * (1.0 - fscale[nd])
        t = np.concatenate([st, en])
        dp = np.concatenate([watts, -watts])
        dn = np.concatenate([np.ones(st.size), -np.ones(st.size)])
        o = np.argsort(t, kind="stable")
        t, p_cum, n_cum = t[o], np.cumsum(dp[o]), np.cumsum(dn[o])
        last = np.append(t[1:] != t[:-1], True)  # the state after every event at a time
        t, p_cum, n_cum = t[last], p_cum[last], n_cum[last]
        power = idle_w + np.where(n_cum > 0.5, floor_above_w + p_cum, 0.0)
        if t[0] > 0:
            t, power = np.append(0.0, t), np.append(idle_w, power)
        if t[-1] < end:
            t, power = np.append(t, end), np.append(power, idle_w)
        return t, np.maximum(power, idle_w)

    def nbytes(self) -> int:
        """Bytes held by the numpy columns (the lists of shared names/ops/costs excluded)."""
        cols = (self.node, self.device, self.stream, self.start, self.end, self.host_end)
        return sum(a.nbytes for a in cols if a is not None)

    def host_wait_s(self, device: int) -> float:
        """Time ``device`` sat idle because its host had not yet issued the next op (0 without
        a host pipeline): every gap before a row that started the moment its host issued it,
        back to the end of the device's previous work."""
        if self.host_end is None:
            return 0.0
        device = self.rep_of.get(device, device)
        sel = np.flatnonzero(self.device == device)
        if sel.size == 0:
            return 0.0
        st, en, he = self.start[sel], self.end[sel], self.host_end[sel]
        # an op of several kernels is released when its first is issued (simulator.timing)
        he = he - np.array([float(self.costs[n].details.get("host_lead_s", 0.0))
                            for n in self.node[sel]])
        reach = np.maximum.accumulate(en)  # rows are sorted by start
        prev = np.concatenate([[0.0], reach[:-1]])
        tol = 1e-12 + 1e-9 * np.abs(st)
        waited = (np.abs(st - he) <= tol) & (st > prev + tol)
        return float(np.sum((st - prev)[waited]))


def _union_length(start: np.ndarray, end: np.ndarray) -> float:
    """Total length of the union of intervals [start, end)."""
    if start.size == 0:
        return 0.0
    o = np.argsort(start, kind="stable")
    s, e = start[o], end[o]
    reach = np.maximum.accumulate(e)
    # an interval starts a new cluster when it begins after everything before it ended
    new = np.empty(s.size, dtype=bool)
    new[0] = True
    new[1:] = s[1:] > reach[:-1]
    idx = np.flatnonzero(new)
    ends = np.append(idx[1:] - 1, s.size - 1)
    return float(np.sum(reach[ends] - s[idx]))
