"""Request-level discrete-event simulation of a serving fleet (simpy).

Requests arrive (open loop from a list, or closed loop from N users), a router sends each to a
replica (round robin, or the one with the fewest outstanding requests), and each replica runs
iterations back to back while it has work: the scheduler picks the batch
(:mod:`~simulator.serve.scheduler`), the iteration model prices it
(:mod:`~simulator.serve.iteration`), and the replica holds for that long. Deterministic: the
same requests and configuration give the same events in the same order.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import simpy

from simulator.errors import HwsimError
from simulator.serve.iteration import IterationModel
from simulator.serve.requests import Request
from simulator.serve.scheduler import ReqState, Scheduler, SchedulerConfig

__all__ = ["FleetConfig", "ReplicaLog", "SimOutput", "run_fleet"]

ROUTERS = ("round_robin", "least_outstanding")


@dataclass(frozen=True)
class FleetConfig:
    replicas: int = 1
    router: str = "least_outstanding"
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)

    def check(self) -> None:
        if isinstance(self.replicas, bool) or not isinstance(self.replicas, int) \
                or self.replicas < 1:
            raise HwsimError(f"--replicas must be a positive integer, got {self.replicas!r}")
        if self.router not in ROUTERS:
            raise HwsimError(f"--router must be one of {', '.join(ROUTERS)}, got "
                             f"{self.router!r}")
        self.scheduler.check()


@dataclass
class ReplicaLog:
    """What one replica did: its iterations (start, end, tokens, prefills, decodes) and
    totals."""

    busy_s: float = 0.0
    dynamic_j: float = 0.0
    iterations: int = 0
    # per iteration, compact
    start: array = field(default_factory=lambda: array("d"))
    end: array = field(default_factory=lambda: array("d"))
    tokens: array = field(default_factory=lambda: array("i"))
    n_prefill: array = field(default_factory=lambda: array("i"))
    n_decode: array = field(default_factory=lambda: array("i"))
    kv_used: array = field(default_factory=lambda: array("i"))
    kv_total: int = 0
    kv_peak: int = 0
    preemptions: int = 0
    swaps: int = 0


@dataclass
class SimOutput:
    finished: list[ReqState]
    gaps: array
    replicas: list[ReplicaLog]
    end_s: float
    start_s: float
    in_system: list[tuple[float, int]]  # (time, +1 arrival / -1 departure)


def run_fleet(requests: Sequence[Request] | None, model: IterationModel, kv_blocks: int,
              config: FleetConfig, *, swap_bandwidth: float = 0.0,
              closed_users: int | None = None, closed_pool: Sequence[Request] = (),
              think_s: float = 0.0,
              progress: Callable[[int, int], None] | None = None) -> SimOutput:
    """Simulate ``requests`` (open loop) or ``closed_users`` users drawing from
    ``closed_pool`` in order (closed loop) on ``config.replicas`` replicas.

    Raises
    ------
    HwsimError
        A request that can never fit a replica (see :meth:`Scheduler.add`), bad settings.
    """
    config.check()
    env = simpy.Environment()
    kv_per_token = model.kv_bytes_per_token()
    scheds = [Scheduler(config.scheduler, kv_blocks, kv_per_token)
              for _ in range(config.replicas)]
    logs = [ReplicaLog(kv_total=kv_blocks) for _ in scheds]
    wake = [env.event() for _ in scheds]
    finished: list[ReqState] = []
    gaps = array("d")
    in_system: list[tuple[float, int]] = []
    rr = [0]
    total = len(requests) if requests is not None else len(closed_pool)
    if total == 0:
        raise HwsimError("no requests to serve")

    def route(req: Request) -> None:
        if config.router == "round_robin":
            i = rr[0] % len(scheds)
            rr[0] += 1
        else:
            i = min(range(len(scheds)), key=lambda j: (scheds[j].outstanding, j))
        scheds[i].add(req)
        in_system.append((env.now, 1))
        if not wake[i].triggered:
            wake[i].succeed()

    on_finish: list[Callable[[ReqState], None]] = []

    def replica(i: int):
        sch, log = scheds[i], logs[i]
        while True:
            step = sch.schedule()
            if step is None:
                if len(finished) >= total:
                    return
                wake[i] = env.event()
                yield wake[i]
                continue
            cost = model.cost(step.batch)
            dt = cost.latency_s
            if step.swap_bytes:
                if swap_bandwidth <= 0:
                    raise HwsimError("swap preemption needs the system's host_link bandwidth")
                dt += step.swap_bytes / swap_bandwidth
            t0 = env.now
            yield env.timeout(dt)
            log.start.append(t0)
            log.end.append(env.now)
            log.tokens.append(step.batch.tokens)
            log.n_prefill.append(len(step.prefill))
            log.n_decode.append(len(step.decode))
            log.kv_used.append(sch.kv.used)
            log.busy_s += dt
            log.dynamic_j += cost.energy_j
            log.iterations += 1
            done, g = sch.complete(step, env.now)
            gaps.extend(g)
            for s in done:
                finished.append(s)
                in_system.append((env.now, -1))
                for cb in on_finish:
                    cb(s)
            log.kv_peak = sch.kv.peak
            log.preemptions = sch.preemptions
            log.swaps = sch.swaps
            if progress is not None and done:
                progress(len(finished), total)
            if len(finished) >= total:  # wake the idle replicas so they can stop
                for j, w in enumerate(wake):
                    if j != i and not w.triggered:
                        w.succeed()

    procs = [env.process(replica(i)) for i in range(len(scheds))]
    if closed_users is not None:
        if isinstance(closed_users, bool) or not isinstance(closed_users, int) \
                or closed_users < 1:
            raise HwsimError(f"--users must be a positive integer, got {closed_users!r}")
        pool = iter(closed_pool)

        def submit_next() -> None:
            nxt = next(pool, None)
            if nxt is not None:
                route(replace(nxt, arrival_s=env.now))

        def user_done(_s: ReqState) -> None:
            if think_s > 0:
                ev = env.timeout(think_s)
                ev.callbacks.append(lambda _e: submit_next())
            else:
                submit_next()

        on_finish.append(user_done)
        for _ in range(min(closed_users, total)):
            submit_next()
    else:
        def arrivals():
            for r in requests:
                if r.arrival_s > env.now:
                    yield env.timeout(r.arrival_s - env.now)
                route(r)

        env.process(arrivals())

    env.run(until=simpy.AllOf(env, procs))
    if len(finished) != total:
        raise HwsimError(f"serving simulation ended with {total - len(finished)} requests "
                         "unserved")
    start = min(s.req.arrival_s for s in finished)
    return SimOutput(finished, gaps, logs, env.now, start, in_system)
