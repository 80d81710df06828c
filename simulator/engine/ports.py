"""Ports: the capacity-one resources of the discrete-event run (device streams, link ports).

An in-order port runs its tasks strictly in program order, as a CUDA stream runs the kernels
issued into it: the runner registers every task on its ports in the graph's topological order
(:meth:`Ports.enqueue`), and a task starts only when it heads the queue of every port it needs,
its dependencies are done (:meth:`Ports.ready`), and those ports are free. A port that is not
in order (``in_order(port)`` False: the communication ports, where NCCL keeps a stream per
peer) runs the ready task that comes first in program order. A collective holds the
communication port of every device in its group at once. Because the program order is a
topological order, the first task not yet started can always start once its dependencies
finish: no deadlock. Work on different streams of a device (compute, copy, communication)
still overlaps.

The ports live on a simpy ``Environment``: starting a task schedules a ``timeout`` for its
duration whose callback (``on_done``) releases the ports and lets the next tasks in.

>>> import simpy
>>> env = simpy.Environment()
>>> log = []
>>> ports = Ports(env, ports_of=lambda t: (7,), duration=lambda t: 1.0,
...               on_start=lambda t, p: log.append((t, env.now)),
...               on_done=lambda t, p: (ports.release(p), ports.dispatch(p)))
>>> for task in (0, 1):
...     ports.enqueue(task, (7,))
>>> ports.ready(1); ports.dispatch((7,)); log      # task 1 waits for task 0 (program order)
[]
>>> ports.ready(0); ports.dispatch((7,)); env.run(); log
[(0, 0), (1, 1.0)]
"""

from __future__ import annotations

import heapq
from array import array
from collections.abc import Callable, Iterable

import simpy

__all__ = ["Ports"]


class Ports:
    """Capacity-one ports, identified by integers, on ``env``; each runs its tasks in the order
    they were enqueued.

    ``ports_of(task)`` gives the ports a task holds, ``duration(task)`` for how long;
    ``on_start(task, ports)`` and ``on_done(task, ports)`` are called when it starts and ends
    (``on_done`` must :meth:`release` the ports and :meth:`dispatch` what became ready).
    """

    def __init__(self, env: simpy.Environment, *, ports_of: Callable[[int], tuple[int, ...]],
                 duration: Callable[[int], float],
                 on_start: Callable[[int, tuple[int, ...]], None],
                 on_done: Callable[[int, tuple[int, ...]], None],
                 in_order: Callable[[int], bool] = lambda p: True):
        self.env = env
        self._in_order = in_order
        self._waiting: dict[int, list[int]] = {}  # ports that run ready tasks, as heaps
        self._ports_of = ports_of
        self._duration = duration
        self._on_start = on_start
        self._on_done = on_done
        self._order: dict[int, array] = {}
        self._head: dict[int, int] = {}
        self._ready = bytearray()
        self._busy: set[int] = set()

    def enqueue(self, task: int, ports: tuple[int, ...]) -> None:
        """Register ``task`` on its ports; call in program order."""
        for p in ports:
            if not self._in_order(p):
                continue
            q = self._order.get(p)
            if q is None:
                q = self._order[p] = array("i")
                self._head[p] = 0
            q.append(task)
        if task >= len(self._ready):
            self._ready.extend(bytes(task + 1 - len(self._ready)))

    def ready(self, task: int) -> None:
        """``task``'s dependencies are done (call :meth:`dispatch` on its ports)."""
        self._ready[task] = 1
        for p in self._ports_of(task):
            if not self._in_order(p):
                heapq.heappush(self._waiting.setdefault(p, []), task)

    def release(self, ports: Iterable[int]) -> None:
        self._busy.difference_update(ports)

    def dispatch(self, ports: Iterable[int]) -> None:
        """Start the head task of each of ``ports`` that can start now."""
        tried: set[int] = set()  # a task over many ports is checked once per dispatch
        for p in sorted(set(ports)):
            self._try(p, tried)

    def _heads(self, p: int) -> int | None:
        if not self._in_order(p):  # the first ready task in program order
            w = self._waiting.get(p)
            return w[0] if w else None
        q, h = self._order.get(p), self._head.get(p, 0)
        return q[h] if q is not None and h < len(q) else None

    def _try(self, p: int, tried: set[int]) -> None:
        busy = self._busy
        if p in busy:
            return
        task = self._heads(p)
        if task is None or not self._ready[task]:
            return
        ports = self._ports_of(task)
        if len(ports) > 1:
            if task in tried:
                return
            tried.add(task)
            if not all(q not in busy and self._heads(q) == task for q in ports):
                return
        for q in ports:
            if self._in_order(q):
                self._head[q] += 1
            else:
                heapq.heappop(self._waiting[q])
            busy.add(q)
        self._on_start(task, ports)
        ev = self.env.timeout(self._duration(task))
        ev.callbacks.append(lambda _e, task=task, ports=ports: self._on_done(task, ports))
