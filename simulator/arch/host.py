"""Facts about the host CPU, read from the operating system (Linux first) and never raising.

The one place hwsim reads the machine it runs on: :mod:`simulator.arch.cpu_detect` rebuilds the
``cpu-host`` spec from these facts, and :mod:`simulator.validate` records them next to its
measurements. Each reader returns an empty value or None where the OS does not say (another
OS, a container without ``/sys``, a garbled file):

- ``/proc/cpuinfo``: :func:`cpuinfo` (every ``key : value``), :func:`cpu_flags` (x86 ``flags``
  or Arm ``Features``), :func:`cpu_model`, :func:`cpuinfo_max_hz` (the highest ``cpu MHz``);
- ``/sys/devices/system/cpu``: :func:`cpu_caches` / :func:`cpu_cache_bytes` (``cpu0/cache``),
  :func:`cpu_topology` (core and package of one CPU), :func:`cpufreq_max_hz`;
- this process: :func:`affinity`, :func:`affinity_count`, :func:`logical_cpus`,
  :func:`load_average`;
- memory: :func:`meminfo`, :func:`meminfo_bytes`, :func:`available_memory_bytes`;
- cgroups: :func:`cgroup_cpu_quota`, :func:`cgroup_memory_limit`;
- :func:`sve_vector_bytes` (``/proc/sys/abi/sve_default_vector_length``).

Every file is read through :func:`_read` and listed through :func:`_glob`, which take the usual
absolute paths and resolve them under :data:`ROOT`: tests point ``ROOT`` at a fake tree (or
replace the two functions). Facts that cannot change while a process runs (flags, model,
caches) are cached; :func:`clear_caches` forgets them.
"""

from __future__ import annotations

import glob as _globmod
import os
import platform
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

__all__ = [
    "ROOT", "CacheInfo", "affinity", "affinity_count", "logical_cpus", "load_average",
    "parse_cpuinfo", "cpuinfo", "flags_of", "model_of", "cpu_flags", "cpu_model",
    "cpuinfo_max_hz", "cpufreq_max_hz", "cpu_caches", "cpu_cache_bytes", "cpu_topology",
    "parse_cpu_list", "parse_cache_size", "meminfo", "meminfo_bytes", "available_memory_bytes",
    "cgroup_cpu_quota", "cgroup_memory_limit", "sve_vector_bytes", "clear_caches",
]

#: The file-system root the readers resolve ``/proc/...`` and ``/sys/...`` under.
ROOT = "/"

_CPU = "/sys/devices/system/cpu"
_FLAG_KEYS = ("flags", "Features")  # x86, Arm
_MODEL_KEYS = ("model name", "Model", "Hardware", "cpu model")  # x86, Arm boards, Arm, MIPS
_CGROUP_MEMORY = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


# -- file access (the seams tests replace) -----------------------------------------------------
def _host_path(path: str) -> str:
    return os.path.join(ROOT, path.lstrip("/"))


def _read(path: str) -> str | None:
    """The text of the file at absolute ``path`` (under :data:`ROOT`), or None if unreadable."""
    try:
        with open(_host_path(path), encoding="utf-8", errors="replace") as f:
            return f.read()
    except (OSError, ValueError):
        return None


def _glob(pattern: str) -> list[str]:
    """The absolute paths (as seen from :data:`ROOT`) matching ``pattern``, sorted."""
    base = _host_path("")
    return sorted("/" + os.path.relpath(p, base) for p in _globmod.glob(_host_path(pattern)))


# -- this process ------------------------------------------------------------------------------
def affinity() -> set[int] | None:
    """Logical CPUs this process may run on (``os.sched_getaffinity``, else all of
    ``os.cpu_count()``), or None where the OS cannot say."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count()
        return set(range(n)) if n else None


def affinity_count() -> int:
    """How many logical CPUs this process may run on; at least 1."""
    return len(affinity() or ()) or 1


def logical_cpus() -> int | None:
    """Logical CPUs of the machine (``os.cpu_count()``), or None if unknown."""
    return os.cpu_count()


def load_average() -> float | None:
    """The 1-minute load average, rounded to 0.01 (other work on the CPUs inflates CPU
    timings), or None where the OS has none."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


# -- /proc/cpuinfo -------------------------------------------------------------------------------
def parse_cpuinfo(text: str) -> dict[str, list[str]]:
    """Every ``key : value`` line of ``/proc/cpuinfo`` text, values collected per key (keys
    stripped, case kept, in order of first appearance).

    >>> parse_cpuinfo("processor : 0\\nflags : fpu sse2\\nprocessor : 1\\n")
    {'processor': ['0', '1'], 'flags': ['fpu sse2']}
    """
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            out.setdefault(k.strip(), []).append(v.strip())
    return out


def cpuinfo() -> dict[str, list[str]]:
    """``/proc/cpuinfo`` parsed by :func:`parse_cpuinfo`; empty if unreadable (read afresh)."""
    return parse_cpuinfo(_read("/proc/cpuinfo") or "")


def flags_of(info: Mapping[str, list[str]]) -> frozenset[str]:
    """The feature flags in parsed cpuinfo: the first x86 ``flags`` or Arm ``Features`` line;
    empty if there is none."""
    for key, values in info.items():
        if key in _FLAG_KEYS and values:
            return frozenset(values[0].split())
    return frozenset()


def model_of(info: Mapping[str, list[str]]) -> str | None:
    """The CPU model in parsed cpuinfo: the first ``model name`` (x86), ``Model`` or
    ``Hardware`` (Arm boards) or ``cpu model`` (MIPS) line; None if there is none."""
    for key, values in info.items():
        if key in _MODEL_KEYS and values:
            return values[0]
    return None


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags from ``/proc/cpuinfo`` (x86 ``flags``, Arm ``Features``);
    empty if unknown. Cached."""
    return flags_of(cpuinfo())


@lru_cache(maxsize=1)
def cpu_model() -> str:
    """This CPU's model name from ``/proc/cpuinfo``, else ``platform.processor()`` or
    ``platform.machine()``, else ``"unknown CPU"``. Cached."""
    return model_of(cpuinfo()) or platform.processor() or platform.machine() or "unknown CPU"


def cpuinfo_max_hz(info: Mapping[str, list[str]] | None = None) -> float | None:
    """The highest ``cpu MHz`` in cpuinfo (``info``, else ``/proc/cpuinfo``) in Hz, or None if
    there is no positive one (a current clock, not the maximum: a fallback for cpufreq)."""
    info = cpuinfo() if info is None else info
    mhz = []
    for v in info.get("cpu MHz", []):
        try:
            mhz.append(float(v))
        except ValueError:
            continue
    return max(mhz) * 1e6 if mhz and max(mhz) > 0 else None


# -- /sys/devices/system/cpu -------------------------------------------------------------------
def cpufreq_max_hz(cpu: int = 0) -> float | None:
    """The maximum clock of ``cpu`` from ``cpufreq/cpuinfo_max_freq`` (kHz) in Hz, or None."""
    text = _read(f"{_CPU}/cpu{cpu}/cpufreq/cpuinfo_max_freq")
    try:
        return float(text) * 1e3 if text else None
    except ValueError:
        return None


def cpu_topology(cpu: int) -> tuple[str, str] | None:
    """``(physical_package_id, core_id)`` of logical ``cpu`` from sysfs, or None if either file
    is unreadable."""
    core = _read(f"{_CPU}/cpu{cpu}/topology/core_id")
    pkg = _read(f"{_CPU}/cpu{cpu}/topology/physical_package_id")
    if core is None or pkg is None:
        return None
    return pkg.strip(), core.strip()


def parse_cpu_list(text: str) -> set[int]:
    """``"0-3,8,10-11"`` -> ``{0, 1, 2, 3, 8, 10, 11}``.

    Raises
    ------
    ValueError
        Text that is not a CPU list.

    >>> sorted(parse_cpu_list("0-2,8"))
    [0, 1, 2, 8]
    """
    out: set[int] = set()
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            lo, hi = part.split("-", 1)
            out.update(range(int(lo), int(hi) + 1))
        else:
            out.add(int(part))
    return out


def parse_cache_size(text: str) -> int | None:
    """A sysfs cache size in bytes: ``"32K"``, ``"1024K"``, ``"16M"``, ``"48 KiB"``; None if
    unparseable.

    >>> parse_cache_size("48K"), parse_cache_size("32 MiB"), parse_cache_size("big")
    (49152, 33554432, None)
    """
    m = re.fullmatch(r"\s*(\d+)\s*([KMG]?)(i?B)?\s*", text or "", re.IGNORECASE)
    if not m:
        return None
    return int(m.group(1)) * {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}[m.group(2).upper()]


@dataclass(frozen=True)
class CacheInfo:
    """One cache of CPU 0 (a ``cpu0/cache/index*`` folder): ``level`` as sysfs writes it
    (``"1"``), ``type`` (``Data``, ``Instruction``, ``Unified``), ``size_bytes`` of one
    instance and ``shared_cpus``, the logical CPUs sharing it (1 where sysfs does not say)."""

    level: str
    type: str
    size_bytes: int
    shared_cpus: int = 1


def cpu_caches() -> tuple[CacheInfo, ...]:
    """The caches of CPU 0 from ``/sys/devices/system/cpu/cpu0/cache/index*``, in index order;
    an index whose level, type or size cannot be read is left out (read afresh)."""
    out = []
    for d in _glob(f"{_CPU}/cpu0/cache/index*"):
        level, ctype = _read(f"{d}/level"), _read(f"{d}/type")
        size = parse_cache_size(_read(f"{d}/size") or "")
        if level is None or ctype is None or size is None:
            continue
        try:
            shared = len(parse_cpu_list(_read(f"{d}/shared_cpu_list") or "0")) or 1
        except ValueError:
            shared = 1
        out.append(CacheInfo(level.strip(), ctype.strip(), size, shared))
    return tuple(out)


@lru_cache(maxsize=1)
def _cache_bytes() -> tuple[tuple[str, int], ...]:
    suffix = {"Data": "d", "Instruction": "i"}
    return tuple((f"L{c.level}{suffix.get(c.type, '')}", c.size_bytes) for c in cpu_caches())


def cpu_cache_bytes() -> dict[str, int]:
    """Cache sizes of CPU 0 as ``{"L1d": bytes, "L1i": ..., "L2": ..., "L3": ...}`` (one
    instance each); empty if ``/sys`` does not say. Cached."""
    return dict(_cache_bytes())


# -- memory and cgroups ------------------------------------------------------------------------
def meminfo() -> dict[str, int] | None:
    """``/proc/meminfo`` as ``{key: bytes}`` (``kB`` values times 1024, unitless counts as
    they are; unparseable lines left out), or None if the file cannot be read."""
    text = _read("/proc/meminfo")
    if text is None:
        return None
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if not parts or not parts[0].isdigit():
            continue
        scale = 1024 if parts[1:2] == ["kB"] else 1
        out.setdefault(key.strip(), int(parts[0]) * scale)
    return out


def meminfo_bytes(key: str) -> int | None:
    """One ``/proc/meminfo`` field (``MemTotal``, ``MemAvailable``, ...) in bytes, or None."""
    return (meminfo() or {}).get(key)


def available_memory_bytes() -> int | None:
    """Memory available to new allocations: ``MemAvailable``, else free pages times the page
    size (``os.sysconf``), else None."""
    avail = meminfo_bytes("MemAvailable")
    if avail:
        return avail
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


def cgroup_cpu_quota() -> float | None:
    """CPUs' worth of time the cgroup may use (``cpu.max`` in v2, ``cpu.cfs_quota_us`` over
    ``cpu.cfs_period_us`` in v1), or None when there is no quota or it cannot be read."""
    text = _read("/sys/fs/cgroup/cpu.max")  # cgroup v2: "<quota|max> <period>"
    if text:
        parts = text.split()
        if len(parts) == 2 and parts[0] != "max":
            try:
                return int(parts[0]) / int(parts[1])
            except (ValueError, ZeroDivisionError):
                return None
        return None
    q = _read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")  # cgroup v1
    p = _read("/sys/fs/cgroup/cpu/cpu.cfs_period_us")
    try:
        if q and p and int(q) > 0:
            return int(q) / int(p)
    except (ValueError, ZeroDivisionError):
        pass
    return None


def cgroup_memory_limit() -> tuple[int, str] | None:
    """``(bytes, path)`` of the cgroup memory limit (v2 ``memory.max``, else v1
    ``memory.limit_in_bytes``), or None when unlimited (``max``) or unreadable."""
    for path in _CGROUP_MEMORY:
        text = _read(path)
        if text and text.strip().isdigit():
            return int(text.strip()), path
    return None


def sve_vector_bytes() -> int | None:
    """The default Arm SVE vector length in bytes
    (``/proc/sys/abi/sve_default_vector_length``), or None if unreadable."""
    text = _read("/proc/sys/abi/sve_default_vector_length")
    try:
        return int(text) if text else None
    except ValueError:
        return None


def clear_caches() -> None:
    """Forget the cached facts (:func:`cpu_flags`, :func:`cpu_model`,
    :func:`cpu_cache_bytes`), e.g. after pointing :data:`ROOT` elsewhere."""
    cpu_flags.cache_clear()
    cpu_model.cache_clear()
    _cache_bytes.cache_clear()
