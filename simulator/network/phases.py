"""What a collective's time is made of: its phases (steps over one link) and the total, shared
by the alpha-beta algorithms (:mod:`simulator.network.collectives`) and NCCL's model
(:mod:`simulator.network.nccl`)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Phase", "CollectiveTime", "PROTOCOLS"]

PROTOCOLS = ("LL", "LL128", "Simple")


@dataclass(frozen=True)
class Phase:
    """One term of an algorithm: ``steps`` latencies and ``bytes_sent`` per rank over
    ``link`` at ``bandwidth_Bps`` per rank."""

    name: str
    link: str
    steps: int
    alpha_s: float
    beta_s: float
    bytes_sent: float
    energy_j: float

    @property
    def time_s(self) -> float:
        return self.alpha_s + self.beta_s


@dataclass(frozen=True)
class CollectiveTime:
    """A collective's time, bytes sent per rank, algorithm and breakdown into phases."""

    collective: str
    algorithm: str
    time_s: float
    bytes_sent: float
    phases: tuple[Phase, ...] = ()
    pipelined: bool = False
    protocol: str = ""  # NCCL's protocol (LL, LL128, Simple) under the NCCL model, else ""

    @property
    def alpha_s(self) -> float:
        """The latency (alpha) part of the time."""
        return sum(ph.alpha_s for ph in self.phases)

    @property
    def beta_s(self) -> float:
        """The bandwidth (beta) part of the time."""
        return self.time_s - self.alpha_s

    @property
    def energy_j(self) -> float:
        return sum(ph.energy_j for ph in self.phases)

    def bytes_by_link(self) -> dict[str, float]:
        """Bytes each rank sends on each link (by link name), first the busiest."""
        out: dict[str, float] = {}
        for ph in self.phases:
            out[ph.link] = out.get(ph.link, 0.0) + ph.bytes_sent
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def energy_by_link(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for ph in self.phases:
            out[ph.link] = out.get(ph.link, 0.0) + ph.energy_j
        return out

    def describe(self) -> tuple[str, ...]:
        """One line per phase, for OpCost notes and details."""
        return tuple(f"{ph.name} on {ph.link}: {ph.steps} steps, alpha {ph.alpha_s * 1e6:.3g} us, "
                     f"beta {ph.beta_s * 1e6:.4g} us, {ph.bytes_sent:.4g} B sent per rank"
                     for ph in self.phases)
