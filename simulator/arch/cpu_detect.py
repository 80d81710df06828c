"""Detect the host CPU and rebuild a ``cpu``-family spec from what the machine reports.

:func:`detect_cpu_host` is called by the loader for a spec with ``params.detect: true``
(``arch_specs/cpu/cpu-host.yaml``). It reads, Linux first and never failing:

- cores: ``os.sched_getaffinity`` (else ``os.cpu_count``), reduced to physical cores through
  ``/sys/devices/system/cpu/cpuN/topology`` and capped by a cgroup CPU quota;
- SIMD width and extensions: the ``flags`` (x86) or ``Features`` (Arm) line of
  ``/proc/cpuinfo``;
- clock: ``cpufreq/cpuinfo_max_freq``, else the highest ``cpu MHz`` in ``/proc/cpuinfo``;
- caches: ``/sys/devices/system/cpu/cpu0/cache/index*/{level,type,size,shared_cpu_list}``;
- DRAM capacity: ``MemTotal`` in ``/proc/meminfo``, capped by a cgroup memory limit.

Each field that cannot be read keeps the spec's value (the YAML defaults), and
``params["detected"]`` records what was read, from where, and which fields fell back.
Every fact is read through :mod:`simulator.arch.host` (the one module that reads the machine),
so tests substitute a fake machine there.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from simulator.arch import host
from simulator.arch.spec import ComputeUnit, MemoryLevel, System
from simulator.frozen import FrozenMap

__all__ = ["detect_cpu_host", "CACHE_BYTES_PER_CYCLE"]

# Load bandwidth per core per cycle used to estimate cache bandwidths (estimates; see the
# cpu-host.yaml header). L3 is shared, but its slices scale with the core count.
CACHE_BYTES_PER_CYCLE = {"l1": 64.0, "l2": 32.0, "l3": 16.0}


# -- detectors: each returns (value, source) or (None, reason) --------------------------------
def _detect_cores() -> tuple[int | None, int | None, str]:
    """(physical cores, logical CPUs, source) for the CPUs this process may use."""
    cpus = host.affinity()
    if not cpus:
        return None, None, "affinity unavailable"
    logical = len(cpus)
    source = "sched_getaffinity"
    cores_seen = set()
    for c in cpus:
        where = host.cpu_topology(c)
        if where is None:
            cores_seen = set()
            break
        cores_seen.add(where)
    physical = len(cores_seen) or logical
    if cores_seen:
        source += " + sysfs topology"
    quota = host.cgroup_cpu_quota()
    if quota is not None and quota < physical:
        physical = max(1, math.ceil(quota))
        logical = min(logical, max(1, math.ceil(quota)))
        source += " + cgroup cpu quota"
    return physical, logical, source


def _detect_flags(info: dict[str, list[str]]) -> set[str] | None:
    return set(host.flags_of(info)) or None


def _simd_bits(flags: set[str]) -> int | None:
    if "avx512f" in flags:
        return 512
    if "avx2" in flags or "avx" in flags:
        return 256
    if "sve" in flags:
        vl = host.sve_vector_bytes()
        return vl * 8 if vl is not None else 128
    if flags & {"asimd", "neon", "sse2"}:
        return 128
    return None


def _detect_clock(info: dict[str, list[str]]) -> tuple[float | None, str]:
    hz = host.cpufreq_max_hz()
    if hz is not None:
        return hz, "cpufreq cpuinfo_max_freq"
    hz = host.cpuinfo_max_hz(info)
    if hz is not None:
        return hz, "/proc/cpuinfo cpu MHz"
    return None, "no cpufreq or cpu MHz"


def _detect_caches(logical: int) -> dict[str, float]:
    """Total bytes per level (``l1``, ``l2``, ``l3``) for ``logical`` CPUs; instruction caches
    are skipped. A cache shared by ``s`` CPUs counts ``ceil(logical / s)`` times."""
    out: dict[str, float] = {}
    for c in host.cpu_caches():
        if c.type == "Instruction":
            continue
        key = f"l{c.level}"
        out[key] = out.get(key, 0.0) + c.size_bytes * max(1, math.ceil(logical / c.shared_cpus))
    return out


def _detect_memory() -> tuple[float | None, str]:
    info = host.meminfo()
    mem = (info or {}).get("MemTotal")
    total = float(mem) if mem else None
    source = ("/proc/meminfo MemTotal" if total else
              "no MemTotal in /proc/meminfo" if info is not None else "no /proc/meminfo")
    limit = host.cgroup_memory_limit()
    if limit is not None:
        v, path = float(limit[0]), limit[1]
        if total is None or v < total:
            total, source = v, f"cgroup limit {path}"
    return total, source


# -- the rebuild ------------------------------------------------------------------------------
def _rates(flags: set[str], simd_bits: int, fma_units: int) -> dict[str, float]:
    fp32 = 2.0 * fma_units * simd_bits / 32
    has = flags.__contains__
    return {
        "fp32": fp32,
        "bf16": 2 * fp32 if has("avx512_bf16") or has("bf16") else fp32,
        "fp16": 2 * fp32 if has("avx512_fp16") or has("asimdhp") else fp32,
        "int8": 4 * fp32 if has("avx512_vnni") or has("avx_vnni") or has("asimddp") else 2 * fp32,
    }


def detect_cpu_host(system: System) -> System:
    """Return ``system`` with its device's cores, SIMD rates, clock, caches and DRAM capacity
    replaced by what this machine reports; unreadable fields keep the spec's values.

    Never raises for an unreadable or unusual machine: each detector falls back on its own and
    the fallback is listed in ``device.params["detected"]["fallbacks"]``.
    """
    dev = system.device
    params = dict(dev.params)
    vec = next((u for u in dev.compute if u.unit == "vector"), None)
    sources: dict[str, str] = {}
    fallbacks: list[str] = []

    cores, logical, src = _detect_cores()
    if cores is None:
        cores = vec.count if vec else 1
        logical = int(params.get("threads", cores))
        fallbacks.append("cores")
    sources["cores"] = src
    logical = logical or cores

    info = host.cpuinfo()
    model = host.model_of(info) or ""
    flags = _detect_flags(info)
    if flags is None:
        fallbacks.append("flags")
        flags = set()
    bits = _simd_bits(flags) if flags else None
    if bits is None:
        bits = int(params.get("simd_bits", 256))
        fallbacks.append("simd_bits")
        sources["simd_bits"] = "spec default"
    else:
        sources["simd_bits"] = "/proc/cpuinfo flags"
    fma_units = int(params.get("fma_units", 2))
    if flags and "fma" not in flags and "avx512f" not in flags and bits >= 256:
        fma_units = 1  # AVX without FMA: one multiply and one add pipe ~ one FMA unit

    clock, src = _detect_clock(info)
    if clock is None:
        clock = vec.clock_hz if vec else 2.5e9
        fallbacks.append("clock")
    sources["clock"] = src

    compute = []
    for u in dev.compute:
        if u is vec:
            fpc = dict(u.flops_per_cycle)
            if flags:  # else the spec's per-cycle rates stand (bits fell back to the spec too)
                fpc.update(_rates(flags, bits, fma_units))
            compute.append(replace(u, count=cores, clock_hz=clock,
                                   flops_per_cycle=FrozenMap(fpc)))
        elif u.name != "amx":
            compute.append(u)
    if flags & {"amx_bf16", "amx_int8"}:
        amx = {}
        if "amx_bf16" in flags:
            amx["bf16"] = 1024.0
        if "amx_int8" in flags:
            amx["int8"] = 2048.0
        compute.append(ComputeUnit("amx", "matrix", cores, clock, FrozenMap(amx)))

    caches = _detect_caches(logical)
    if not caches:
        fallbacks.append("caches")
    sources["caches"] = "sysfs cpu0/cache" if caches else "spec default"
    mem_bytes, src = _detect_memory()
    if mem_bytes is None:
        fallbacks.append("memory")
    sources["memory"] = src

    memory: list[MemoryLevel] = []
    for i, lvl in enumerate(dev.memory):
        if i == 0:  # DRAM: capacity detected, bandwidth keeps the spec's value
            memory.append(replace(lvl, capacity_bytes=mem_bytes) if mem_bytes else lvl)
            continue
        per_cycle = CACHE_BYTES_PER_CYCLE.get(lvl.name)
        if per_cycle is None:
            memory.append(lvl)
            continue
        if caches and lvl.name not in caches:
            continue  # the machine has no such level (e.g. no L3)
        memory.append(replace(lvl, capacity_bytes=caches.get(lvl.name, lvl.capacity_bytes),
                              bandwidth_Bps=per_cycle * cores * clock))

    relevant = sorted(f for f in flags if f in {
        "avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni",
        "avx_vnni", "amx_bf16", "amx_int8", "amx_tile", "asimd", "neon", "sve", "bf16",
        "asimdhp", "asimddp", "sse2"})
    detected: dict[str, Any] = {
        "model": model,
        "cores": cores,
        "threads": logical,
        "clock_hz": clock,
        "simd_bits": bits,
        "fma_units": fma_units,
        "isa": tuple(relevant),
        "memory_bytes": mem_bytes,
        "caches": FrozenMap(dict(caches)),
        "sources": FrozenMap(sources),
        "fallbacks": tuple(fallbacks),
    }
    params.update(simd_bits=bits, fma_units=fma_units, threads=logical,
                  detected=FrozenMap(detected))
    device = replace(dev, compute=tuple(compute), memory=tuple(memory),
                     params=FrozenMap(params))
    return replace(system, device=device)
