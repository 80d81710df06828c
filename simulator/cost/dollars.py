"""Dollar cost of a run: cloud $/hour, or purchase price amortised plus electricity (TCO).

Cloud: ``cost = $/hour x hours`` (electricity is in the price). TCO: the price is spread over
the lifetime in seconds (at full utilisation, the optimistic case; say so when comparing) and
electricity is ``energy x PUE x $/kWh``. Defaults: $0.10/kWh (US industrial) and PUE 1.3
(hardware-figures.md quotes 1.1-1.5); both are overridable.
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.arch.spec import System
from simulator.errors import HwsimError

__all__ = ["CostBreakdown", "CostOptions", "run_cost", "system_hourly_rate", "purchase_price",
           "tco_usd"]

J_PER_KWH = 3.6e6


@dataclass(frozen=True)
class CostOptions:
    mode: str = "auto"  # auto (cloud if a $/hour is known, else tco) | cloud | tco
    usd_per_kwh: float = 0.10
    pue: float = 1.3
    utilization: float = 1.0  # fraction of the lifetime the hardware does useful work


@dataclass(frozen=True)
class CostBreakdown:
    """Dollars for one run and the rate behind them."""

    mode: str
    usd: float
    hardware_usd: float
    electricity_usd: float
    usd_per_hour: float


def system_hourly_rate(system: System) -> float | None:
    """Cloud $/hour for the whole system: the system's own price per node x nodes, else
    parts x count."""
    if system.pricing and system.pricing.usd_per_hour:
        return system.pricing.usd_per_hour * 3600 * system.nodes
    if system.device.pricing.usd_per_hour:
        return system.device.pricing.usd_per_hour * 3600 * system.count
    return None


def purchase_price(system: System) -> float | None:
    """What the system costs to buy (its own price per node x nodes, else parts x count);
    None where the spec gives no price."""
    return _purchase(system)[0]


def tco_usd(system: System, avg_power_w: float, options: CostOptions | None = None
            ) -> float | None:
    """Total cost of ownership over the spec's lifetime: the purchase price plus the
    electricity of running at ``avg_power_w`` for ``utilization`` of the lifetime, at the
    options' PUE and $/kWh (module docstring); None without a purchase price."""
    o = options or CostOptions()
    price, lifetime = _purchase(system)
    if not price:
        return None
    return price + avg_power_w * lifetime * o.utilization / J_PER_KWH * o.pue * o.usd_per_kwh


def _purchase(system: System) -> tuple[float | None, float]:
    if system.pricing and system.pricing.price_usd:
        return system.pricing.price_usd * system.nodes, system.pricing.lifetime_s
    p = system.device.pricing
    return (p.price_usd * system.count if p.price_usd else None), p.lifetime_s


def run_cost(system: System, seconds: float, energy_j: float,
             options: CostOptions | None = None) -> CostBreakdown:
    """Cost of occupying ``system`` for ``seconds`` while it uses ``energy_j``."""
    o = options or CostOptions()
    hourly = system_hourly_rate(system)
    price, lifetime = _purchase(system)
    mode = o.mode
    if mode == "auto":
        mode = "cloud" if hourly else "tco" if price else "unpriced"
    if mode == "unpriced":  # reported as unknown (NaN / null), never as a silent zero
        nan = float("nan")
        return CostBreakdown("unpriced", nan, nan, nan, nan)
    electricity = energy_j / J_PER_KWH * o.pue * o.usd_per_kwh
    if mode == "cloud":
        if not hourly:
            raise HwsimError(f"{system.name}: no cloud price (cost.hourly) in the spec; "
                             "use --cost-mode tco or --set cost.hourly=...")
        usd = hourly / 3600 * seconds
        return CostBreakdown("cloud", usd, usd, 0.0, hourly)
    if mode == "tco":
        if not price:
            raise HwsimError(f"{system.name}: no purchase price (cost.price) in the spec; "
                             "use --set cost.price=...")
        hw_rate = price / (lifetime * o.utilization)  # $/s
        hw = hw_rate * seconds
        return CostBreakdown("tco", hw + electricity, hw, electricity, hw_rate * 3600)
    raise HwsimError(f"--cost-mode: expected auto, cloud or tco, got {mode!r}")
