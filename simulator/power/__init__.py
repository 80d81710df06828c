"""Power model per device family: idle, busy floor, dynamic energy per FLOP and per byte (with
the on-chip path of every DRAM byte), interconnect energy, and DVFS under a power limit.

:func:`power_model` derives a device's coefficients (sources in
:mod:`simulator.power.coefficients`); :func:`apply_power_cap` is the step the predictor applies
to every op cost; :func:`simulator.engine.timeline.Timeline.power_series` turns a run into
power over time; :func:`sustained_power` is the limiter on a long mix of kernels (a serving
run), which regulates the average power rather than each op's, and :func:`solve_run_clock`
the clock it holds a predicted run at (with the time that clock costs).
"""

from simulator.power.coefficients import FAMILY_POWER, PowerDefault
from simulator.power.dvfs import NOC, ONCHIP, apply_power_cap, op_power_w
from simulator.power.governor import NO_LIMIT_W, SustainedPower, sustained_power
from simulator.power.model import (
                                   PowerModel,
                                   noc_j_per_byte,
                                   onchip_j_per_dram_byte,
                                   power_family,
                                   power_model,
)
from simulator.power.run_clock import RunClock, solve_run_clock

__all__ = ["FAMILY_POWER", "PowerDefault", "PowerModel", "power_model", "power_family",
           "onchip_j_per_dram_byte", "noc_j_per_byte", "apply_power_cap", "op_power_w",
           "ONCHIP", "NOC", "NO_LIMIT_W", "SustainedPower", "sustained_power", "RunClock",
           "solve_run_clock"]
