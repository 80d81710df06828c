"""Ports: the capacity-one resources of the discrete-event run (device streams, link ports).

Each port keeps a heap of the tasks waiting for it, ordered by program order (a task's
priority: its position in the graph's topological order), so when a port frees, the waiting
task that comes first in the program starts, as a framework issues kernels into an in-order
queue. A task that needs several ports at once (a collective holds the communication port of
every device in its group) starts only when it heads every one of them and all are free.
Since priorities are one global order, the first waiting task can always proceed once its ports
free up: no deadlock and no overtaking.

The ports live on a simpy ``Environment``: starting a task schedules a ``timeout`` for its
duration whose callback releases the ports and lets the next tasks in.

>>> import simpy
>>> env = simpy.Environment()
>>> log = []
>>> ports = Ports(env, duration=lambda t: 1.0, on_start=lambda t, p: log.append((t, env.now)),
...               on_done=lambda t, p: (ports.release(p), ports.dispatch(p)))
>>> for task in (0, 1):
...     ports.wait(task, (7,), priority=task)
>>> ports.dispatch((7,))
>>> env.run(); log
[(0, 0), (1, 1.0)]
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable

import simpy

__all__ = ["Ports"]


class Ports:
    """A set of capacity-one ports, identified by integers, on ``env``.

    ``duration(task)`` gives how long a task holds its ports; ``on_start(task, ports)`` and
    ``on_done(task, ports)`` are called when it starts and ends (``on_done`` must
    :meth:`release` the ports and :meth:`dispatch` whatever became ready).
    """

    def __init__(self, env: simpy.Environment, *, duration: Callable[[int], float],
                 on_start: Callable[[int, tuple[int, ...]], None],
                 on_done: Callable[[int, tuple[int, ...]], None]):
        self.env = env
        self._duration = duration
        self._on_start = on_start
        self._on_done = on_done
        self._waiting: dict[int, list[tuple[int, int, tuple[int, ...]]]] = {}
        self._busy: set[int] = set()

    def wait(self, task: int, ports: tuple[int, ...], priority: int) -> None:
        """Queue ``task`` on each of ``ports`` (call :meth:`dispatch` to start what can)."""
        for p in ports:
            heapq.heappush(self._waiting.setdefault(p, []), (priority, task, ports))

    def release(self, ports: Iterable[int]) -> None:
        self._busy.difference_update(ports)

    def dispatch(self, ports: Iterable[int]) -> None:
        """Start the head task of each of ``ports`` that can start now."""
        for p in sorted(set(ports)):
            self._try(p)

    def _try(self, p: int) -> None:
        busy, waiting = self._busy, self._waiting
        while p not in busy:
            heap = waiting.get(p)
            if not heap:
                return
            _, task, ports = heap[0]
            if len(ports) > 1 and not all(q not in busy and waiting[q][0][1] == task
                                          for q in ports):
                return
            for q in ports:
                heapq.heappop(waiting[q])
                busy.add(q)
            self._on_start(task, ports)
            ev = self.env.timeout(self._duration(task))
            ev.callbacks.append(lambda _e, task=task, ports=ports: self._on_done(task, ports))
