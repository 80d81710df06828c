"""Measured energy where the machine exposes it: RAPL on CPUs, NVML on NVIDIA GPUs.

RAPL (Intel since Sandy Bridge, AMD since Zen through the same ``powercap`` interface) is read
from ``/sys/class/powercap/intel-rapl:<N>/energy_uj``: a per-package counter in microjoules
that wraps to zero after ``max_energy_range_uj`` (about 262 kJ: every ~20 min at 200 W). The
counter covers the whole package (every core and the uncore, other processes included), so a
measured op's energy is the package's energy over the loop divided by the calls, idle included,
as NVML's board energy is. Linux >= 5.10 makes ``energy_uj`` readable by root only
(CVE-2020-8694); a VM or container usually has no ``powercap`` tree at all. Where the counter
cannot be read the probe says why and no number is written (never a zero).

NVML (:func:`probe_nvml`): ``nvmlDeviceGetTotalEnergyConsumption`` (mJ since the driver loaded,
Volta and later) or, where unsupported, power samples (``nvmlDeviceGetPowerUsage``, mW); the
loop itself is :func:`simulator.validate.measure.measure_energy`.

Examples
--------
>>> wrap_delta(10, 30, 100)
20
>>> wrap_delta(90, 5, 100)   # the counter wrapped: 90 -> 100 -> 0 -> 5
16
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["RAPL_ROOT", "RaplDomain", "EnergyProbe", "RaplCounter", "wrap_delta",
           "rapl_domains", "probe_rapl", "probe_nvml", "probe_energy", "rapl_energy",
           "energy_note"]

#: Where Linux exposes RAPL counters.
RAPL_ROOT = Path("/sys/class/powercap")


@dataclass(frozen=True)
class RaplDomain:
    """One RAPL package domain: its name (``package-0``), counter file and wrap range (uJ)."""

    name: str
    energy_file: Path
    max_range_uj: int


@dataclass(frozen=True)
class EnergyProbe:
    """Whether energy can be measured on a device: ``method`` (``rapl``, ``nvml-total-energy``,
    ``nvml-power-samples``) or None with ``reason``; ``domains`` names what is summed."""

    method: str | None
    reason: str | None = None
    domains: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.method is not None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"measured": self.ok, "method": self.method}
        if self.reason:
            d["reason"] = self.reason
        if self.domains:
            d["domains"] = list(self.domains)
        return d

    def note(self) -> str:
        """One line for a terminal."""
        if self.ok:
            where = f" ({', '.join(self.domains)})" if self.domains else ""
            return f"energy: measured with {self.method}{where}"
        return f"energy: not measured: {self.reason}"


def _now() -> float:
    """The loop's clock (s): ``time.perf_counter``."""
    return time.perf_counter()


def wrap_delta(prev: int, now: int, max_range: int) -> int:
    """Counter increase from ``prev`` to ``now`` for a counter that wraps to 0 after
    ``max_range`` (RAPL: ``max_energy_range_uj``); assumes at most one wrap between reads."""
    return now - prev if now >= prev else now + (max_range - prev) + 1


def _read_int(path: Path) -> int:
    text = path.read_text().strip()
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{path}: expected an integer, got {text[:40]!r}") from None


def rapl_domains(root: str | Path | None = None) -> list[RaplDomain]:
    """The package domains under ``root`` (``intel-rapl:N`` whose ``name`` is ``package-*``;
    sub-domains ``intel-rapl:N:M`` (core, uncore, dram) are inside a package's count and are
    not added again). Raises OSError/ValueError when a file cannot be read."""
    base = Path(root if root is not None else RAPL_ROOT)
    out = []
    for d in sorted(base.glob("intel-rapl:*")):
        if d.name.count(":") != 1 or not d.is_dir():
            continue
        name = (d / "name").read_text().strip() if (d / "name").exists() else d.name
        if not name.startswith("package"):
            continue  # psys (whole platform, Skylake laptops) would double count
        out.append(RaplDomain(name, d / "energy_uj", _read_int(d / "max_energy_range_uj")))
    return out


def probe_rapl(root: str | Path | None = None) -> EnergyProbe:
    """Can the RAPL package counters under ``root`` (default :data:`RAPL_ROOT`) be read?
    (one read of each)"""
    base = Path(root if root is not None else RAPL_ROOT)
    if not base.is_dir():
        return EnergyProbe(None, f"RAPL not readable: {base} does not exist (no powercap "
                           "driver: a VM, a container or a non-x86 CPU); NVML covers NVIDIA "
                           "GPUs only")
    try:
        doms = rapl_domains(base)
        if not doms:
            return EnergyProbe(None, f"RAPL not readable: no intel-rapl package domain under "
                               f"{base}")
        for dom in doms:
            _read_int(dom.energy_file)
    except PermissionError as e:
        return EnergyProbe(None, f"RAPL not readable: {e.filename}: permission denied "
                           "(root only since Linux 5.10, CVE-2020-8694; run as root or "
                           "chmod a+r the energy_uj files)")
    except (OSError, ValueError) as e:
        return EnergyProbe(None, f"RAPL not readable: {e}")
    return EnergyProbe("rapl", None, tuple(d.name for d in doms))


class RaplCounter:
    """Accumulates the package counters' increases (J) across reads, one wrap at most per
    domain between two reads (read at least every few minutes)."""

    def __init__(self, domains: Sequence[RaplDomain]):
        self.domains = list(domains)
        self.last = [_read_int(d.energy_file) for d in self.domains]
        self.total_j = 0.0

    def read(self) -> float:
        """Read every counter and return the joules since construction."""
        for i, d in enumerate(self.domains):
            now = _read_int(d.energy_file)
            self.total_j += wrap_delta(self.last[i], now, d.max_range_uj) * 1e-6
            self.last[i] = now
        return self.total_j


def probe_nvml(device: str, nvml_handle: Callable[[], tuple[Any, Any]]) -> EnergyProbe:
    """Can NVML measure ``device``? ``nvml_handle()`` returns ``(pynvml, handle)`` or raises
    (see :func:`simulator.validate.measure._nvml`)."""
    try:
        nvml, handle = nvml_handle()
    except Exception as e:  # HwsimError (no pynvml, NVML down) or an NVMLError
        return EnergyProbe(None, f"NVML not usable on {device}: {e}")
    try:
        nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        return EnergyProbe("nvml-total-energy")
    except Exception:  # NVMLError_NotSupported before Volta
        pass
    try:
        nvml.nvmlDeviceGetPowerUsage(handle)
        return EnergyProbe("nvml-power-samples")
    except Exception as e:
        return EnergyProbe(None, f"NVML on {device} gives neither an energy counter nor "
                           f"power readings ({e})")


def probe_energy(device: str, rapl_root: str | Path | None = None,
                 nvml_open: Callable[[], tuple[Any, Any]] | None = None) -> EnergyProbe:
    """What energy measurement ``device`` (``cpu``, ``cuda[:N]``) allows here; on a GPU
    ``nvml_open`` gives (pynvml, handle) of that device
    (:func:`simulator.validate.measure.probe_device_energy` passes it)."""
    from simulator.validate.executor import device_kind

    if device_kind(device) == "cuda":
        if nvml_open is None:
            return EnergyProbe(None, f"no NVML handle was given for {device}")
        return probe_nvml(device, nvml_open)
    return probe_rapl(rapl_root)


def rapl_energy(fn: Callable[[int], Any], *, min_time_s: float = 1.0, sets: int = 1,
                warmup: int = 3, idle_s: float = 0.5, root: str | Path | None = None,
                clock: Callable[[], float] | None = None,
                sleep: Callable[[float], None] = time.sleep) -> dict[str, Any]:
    """Energy per call of ``fn(i)`` on the CPU from the RAPL package counters.

    Idle package power over ``idle_s`` first, then ``fn`` in batches of 8 calls until
    ``min_time_s`` has passed, reading the counters after each batch (so wraps are caught).
    Returns the fields of :class:`~simulator.validate.measure.Energy` (``method`` ``rapl``),
    or ``{"reason": ...}`` when the counters cannot be read or did not move.
    """
    root = root if root is not None else RAPL_ROOT
    clock = clock if clock is not None else _now
    probe = probe_rapl(root)
    if not probe.ok:
        return {"reason": probe.reason}
    doms = rapl_domains(root)
    idle_power = None
    try:
        if idle_s > 0:
            c = RaplCounter(doms)
            t0 = clock()
            sleep(idle_s)
            e, dt = c.read(), clock() - t0
            idle_power = e / dt if dt > 0 and e > 0 else None
        for i in range(warmup):
            fn(i % sets)
        counter = RaplCounter(doms)
        calls, t0 = 0, clock()
        while True:
            for _ in range(8):
                fn(calls % sets)
                calls += 1
            joules = counter.read()
            duration = clock() - t0  # read right after the counters, as at the start
            if duration >= min_time_s:
                break
    except (OSError, ValueError) as e:
        return {"reason": f"RAPL read failed while measuring: {e}"}
    if not joules > 0 or not duration > 0:
        return {"reason": f"RAPL counters did not move over {duration:.3g} s (a frozen or "
                          "virtualised counter): no energy recorded", "calls": calls,
                "duration_s": duration}
    return {"energy_j": joules / calls, "avg_power_w": joules / duration,
            "idle_power_w": idle_power, "calls": calls, "duration_s": duration,
            "method": "rapl"}


def energy_note(energy: Mapping[str, Any] | None) -> str:
    """One line saying whether (and how) a dataset's energy was measured, from its
    ``meta["energy"]``.

    >>> energy_note({"measured": False, "reason": "RAPL not readable: permission denied"})
    'energy: not measured: RAPL not readable: permission denied'
    >>> energy_note({"measured": True, "method": "rapl", "domains": ["package-0"]})
    'energy: measured with rapl (package-0)'
    """
    if not energy:
        return "energy: not recorded (dataset written before energy was probed)"
    if energy.get("measured"):
        doms = energy.get("domains") or ()
        return f"energy: measured with {energy.get('method')}" + \
            (f" ({', '.join(doms)})" if doms else "")
    return f"energy: not measured: {energy.get('reason') or 'unknown reason'}"
