"""Measurement done right: timing statistics, energy, device facts, and dataset records.

- :func:`time_callable` times a callable on CPU (``time.perf_counter_ns`` around each call)
  or CUDA (a pair of ``torch.cuda.Event`` around each call, one synchronisation at the end,
  so back-to-back calls measure device time, not launch gaps) after a warm-up, repeating
  until both ``min_reps`` and ``min_time_s`` are reached (at most ``max_reps``); Python's
  garbage collector is paused while timing. :func:`summarize` turns samples into a
  :class:`Timing` (median, p10, p90, mean, sample standard deviation).
- On CPU the torch thread count is pinned for the run (``threads``, default: the CPUs this
  process may use) and restored afterwards; on CUDA clocks and power limits are only read.
- :func:`measure_energy` reads NVML's total-energy counter over a loop of at least a second,
  samples power in a background thread and measures idle power first; on a CPU it reads the
  RAPL package counters (:mod:`simulator.validate.energy`, wrap-around counted). Where neither
  can be read (no ``pynvml``, no ``/sys/class/powercap``, permission denied) it returns an
  :class:`Energy` whose numbers are ``None`` and whose ``reason`` says why: numbers are
  never invented.
- :func:`measure_ops` and :func:`measure_workload` produce :class:`~simulator.validate.dataset.
  Measurement` records; ops that cannot run (collectives, unsupported dtypes) are kept out of
  the records and returned in ``skipped`` with the reason (a dataset's records must have a
  positive time).
"""

from __future__ import annotations

import contextlib
import math
import platform
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from simulator.arch import host
from simulator.errors import HwsimError
from simulator.gc_pause import gc_paused
from simulator.validate.dataset import Measurement, shape_key
from simulator.validate.executor import (
    NotExecutableError,
    device_kind,
    graph_runner,
    import_torch,
    make_runner,
    op_label,
)
from workloads.dtypes import DType
from workloads.graph import WorkloadGraph
from workloads.ops import Op

__all__ = [
    "Timing", "Energy", "Skipped", "MeasureSettings", "MeasuredOps", "MeasuredWorkload",
    "summarize", "combine_passes", "time_callable", "measure_energy", "device_info", "software_info",
    "pinned_threads", "op_record_dict", "measure_ops", "measure_workload",
]

Progress = Callable[[str], None]


# -- statistics ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Timing:
    """Statistics of per-call times in seconds: ``median`` is the headline number."""

    median: float
    p10: float
    p90: float
    mean: float
    std: float
    reps: int
    total_s: float


def summarize(samples: Sequence[float]) -> Timing:
    """Summarise per-call times (seconds). Percentiles interpolate linearly between order
    statistics (numpy's default); ``std`` is the sample standard deviation (0 for one sample).

    Examples
    --------
    >>> t = summarize([float(x) for x in range(1, 12)])
    >>> t.median, t.p10, t.p90, t.mean, t.reps
    (6.0, 2.0, 10.0, 6.0, 11)
    >>> round(t.std ** 2, 9)
    11.0
    """
    a = np.asarray(list(samples), dtype=float)
    if a.size == 0:
        raise ValueError("summarize: no samples")
    if not np.all(np.isfinite(a)) or np.any(a < 0):
        raise ValueError(f"summarize: samples must be finite and >= 0, got {a.tolist()[:5]}...")
    return Timing(median=float(np.median(a)), p10=float(np.percentile(a, 10)),
                  p90=float(np.percentile(a, 90)), mean=float(a.mean()),
                  std=float(a.std(ddof=1)) if a.size > 1 else 0.0, reps=int(a.size),
                  total_s=float(a.sum()))


def combine_passes(timings: Sequence[Timing]) -> Timing:
    """Combine the timings of one op measured in several passes over a suite.

    On a shared machine a slow period (a busy neighbour, a frequency change) lasts seconds, so
    it spoils every repetition of the op being measured then; interleaving ops over passes and
    taking the median of the pass medians discards such a pass. ``p10``/``p90`` are the
    medians of the passes' percentiles, ``mean``/``std`` pooled over every call.

    Examples
    --------
    >>> t = combine_passes([summarize([1.0, 1.0]), summarize([5.0, 5.0]), summarize([1.2, 1.2])])
    >>> t.median, t.reps
    (1.2, 6)
    """
    if not timings:
        raise ValueError("combine_passes: no timings")
    if len(timings) == 1:
        return timings[0]
    reps = sum(t.reps for t in timings)
    mean = sum(t.mean * t.reps for t in timings) / reps
    var = sum(t.reps * (t.std ** 2 + (t.mean - mean) ** 2) for t in timings) / reps
    return Timing(median=float(np.median([t.median for t in timings])),
                  p10=float(np.median([t.p10 for t in timings])),
                  p90=float(np.median([t.p90 for t in timings])), mean=float(mean),
                  std=float(math.sqrt(var)), reps=reps, total_s=sum(t.total_s for t in timings))


def time_callable(fn: Callable[[int], Any], *, device: str, warmup: int = 3, min_reps: int = 5,
                  max_reps: int = 1000, min_time_s: float = 0.2, sets: int = 1) -> Timing:
    """Time ``fn(i)`` (``i`` = call number modulo ``sets``) on ``device``.

    Runs ``warmup`` untimed calls, then timed calls until at least ``min_reps`` calls and
    ``min_time_s`` seconds of wall time have passed, stopping at ``max_reps``. On CUDA each
    call is bracketed by timing events and the device is synchronised once at the end.

    Examples
    --------
    >>> t = time_callable(lambda i: time.sleep(0.001), device="cpu", warmup=1, min_reps=3,
    ...                   min_time_s=0.0)
    >>> t.reps, t.median >= 0.001
    (3, True)
    """
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be an integer >= 0, got {warmup!r}")
    if not isinstance(min_reps, int) or min_reps < 1:
        raise ValueError(f"min_reps must be an integer >= 1, got {min_reps!r}")
    if not isinstance(max_reps, int) or max_reps < min_reps:
        raise ValueError(f"max_reps must be an integer >= min_reps={min_reps}, got {max_reps!r}")
    if not min_time_s >= 0:
        raise ValueError(f"min_time_s must be >= 0, got {min_time_s!r}")
    if not isinstance(sets, int) or sets < 1:
        raise ValueError(f"sets must be an integer >= 1, got {sets!r}")
    cuda = device_kind(device) == "cuda"
    with gc_paused():  # no collection while timing: a full one costs ~0.1 s with torch
        return _time_cuda(fn, device, warmup, min_reps, max_reps, min_time_s, sets) if cuda \
            else _time_cpu(fn, warmup, min_reps, max_reps, min_time_s, sets)


def _time_cpu(fn: Callable[[int], Any], warmup: int, min_reps: int, max_reps: int,
              min_time_s: float, sets: int) -> Timing:
    for i in range(warmup):
        fn(i % sets)
    clock = time.perf_counter_ns
    samples: list[float] = []
    start = clock()
    i = warmup
    while len(samples) < max_reps and (len(samples) < min_reps
                                       or (clock() - start) * 1e-9 < min_time_s):
        t0 = clock()
        fn(i % sets)
        samples.append((clock() - t0) * 1e-9)
        i += 1
    return summarize(samples)


def _time_cuda(fn: Callable[[int], Any], device: str, warmup: int, min_reps: int,
               max_reps: int, min_time_s: float, sets: int) -> Timing:
    torch = import_torch()
    dev = torch.device(device)
    with torch.cuda.device(dev):
        for i in range(warmup):
            fn(i % sets)
        torch.cuda.synchronize(dev)
        pairs: list[tuple[Any, Any]] = []
        start = time.perf_counter()
        i = warmup
        while len(pairs) < max_reps and (len(pairs) < min_reps
                                         or time.perf_counter() - start < min_time_s):
            a = torch.cuda.Event(enable_timing=True)
            b = torch.cuda.Event(enable_timing=True)
            a.record()
            fn(i % sets)
            b.record()
            pairs.append((a, b))
            i += 1
            if len(pairs) % 64 == 0:  # keep the host's wall clock close to the device's
                b.synchronize()
        torch.cuda.synchronize(dev)
        return summarize([a.elapsed_time(b) * 1e-3 for a, b in pairs])


# -- threads ---------------------------------------------------------------------------------
@contextlib.contextmanager
def pinned_threads(device: str, threads: int | None = None) -> Iterator[int | None]:
    """On CPU set ``torch.set_num_threads(threads)`` (default: the CPUs in this process's
    affinity) for the block and restore the previous count after; yields the count used.
    On CUDA yields None and changes nothing."""
    if device_kind(device) != "cpu":
        yield None
        return
    torch = import_torch()
    n = threads if threads is not None else host.affinity_count()
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(old)


# -- energy ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Energy:
    """Energy per call (J) and power (W) from NVML or RAPL; every number is None where
    unavailable,
    with ``reason`` saying why. ``avg_power_w`` comes from the energy counter over the loop,
    ``sampled_power_w`` from the background power samples."""

    energy_j: float | None = None
    avg_power_w: float | None = None
    idle_power_w: float | None = None
    sampled_power_w: float | None = None
    calls: int = 0
    duration_s: float | None = None
    method: str | None = None
    reason: str | None = None


def _nvml(torch: Any, device: str) -> tuple[Any, Any]:
    """(pynvml module, handle of the GPU torch calls ``device``); HwsimError if unavailable."""
    try:
        import pynvml
    except ImportError:
        raise HwsimError("pynvml is not installed: pip install nvidia-ml-py") from None
    try:
        pynvml.nvmlInit()
    except Exception as e:  # pynvml raises NVMLError subclasses
        raise HwsimError(f"NVML could not start: {e}") from None
    props = torch.cuda.get_device_properties(torch.device(device))
    uuid = getattr(props, "uuid", None)
    if uuid is not None:
        with contextlib.suppress(Exception):
            s = str(uuid)
            return pynvml, pynvml.nvmlDeviceGetHandleByUUID(s if s.startswith("GPU-")
                                                            else f"GPU-{s}")
    bus = getattr(props, "pci_bus_id", None)
    if bus is not None:
        with contextlib.suppress(Exception):
            pci = (f"{getattr(props, 'pci_domain_id', 0):08x}:{bus:02x}:"
                   f"{getattr(props, 'pci_device_id', 0):02x}.0")
            return pynvml, pynvml.nvmlDeviceGetHandleByPciBusId(pci)
    index = torch.device(device).index or 0
    return pynvml, pynvml.nvmlDeviceGetHandleByIndex(index)


class _PowerSampler:
    """Samples board power (W) every ``interval`` seconds in a background thread."""

    def __init__(self, nvml: Any, handle: Any, interval: float):
        self.nvml, self.handle, self.interval = nvml, handle, interval
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hwsim-power", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                self.samples.append(self.nvml.nvmlDeviceGetPowerUsage(self.handle) / 1000.0)
            self._stop.wait(self.interval)

    def __enter__(self) -> _PowerSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.samples)) if self.samples else None


def measure_energy(fn: Callable[[int], Any], device: str, *, min_time_s: float = 1.0,
                   sets: int = 1, warmup: int = 3, idle_s: float = 0.5,
                   sample_interval_s: float = 0.01,
                   rapl_root: str | Path | None = None) -> Energy:
    """Energy per call of ``fn(i)``: NVML on an NVIDIA GPU, RAPL on a CPU.

    GPU: measures idle power for ``idle_s`` first, then loops ``fn`` for at least
    ``min_time_s`` reading ``nvmlDeviceGetTotalEnergyConsumption`` (mJ) before and after
    (falling back to integrating the power samples where the counter is unsupported). Energy
    per call is the board's total energy over the loop divided by the calls (idle power
    included; subtract ``idle_power_w * time`` for the dynamic part).

    CPU: the package counters of RAPL (``rapl_root``, default ``/sys/class/powercap``; see
    :func:`simulator.validate.energy.rapl_energy`), read after every batch of 8 calls so a
    counter wrap is counted, idle package power first.

    Where neither can be read every number is None and ``reason`` says why (never a zero).
    """
    if device_kind(device) != "cuda":
        from simulator.validate.energy import rapl_energy

        got = rapl_energy(fn, min_time_s=min_time_s, sets=sets, warmup=warmup, idle_s=idle_s,
                          root=rapl_root)
        return Energy(**got)
    torch = import_torch()
    try:
        nvml, handle = _nvml(torch, device)
    except HwsimError as e:
        return Energy(reason=str(e))
    dev = torch.device(device)
    with _PowerSampler(nvml, handle, sample_interval_s) as idle:
        torch.cuda.synchronize(dev)
        time.sleep(idle_s)
    for i in range(warmup):
        fn(i % sets)
    torch.cuda.synchronize(dev)

    def energy_mj() -> float | None:
        try:
            return float(nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
        except Exception:  # NVMLError_NotSupported on older GPUs
            return None

    calls = 0
    with _PowerSampler(nvml, handle, sample_interval_s) as busy:
        e0, t0 = energy_mj(), time.perf_counter()
        while True:
            for _ in range(8):
                fn(calls % sets)
                calls += 1
            torch.cuda.synchronize(dev)
            if time.perf_counter() - t0 >= min_time_s:
                break
        t1 = time.perf_counter()
        e1 = energy_mj()
    duration = t1 - t0
    if e0 is not None and e1 is not None and e1 > e0:
        joules, method = (e1 - e0) / 1000.0, "nvml-total-energy"
    elif busy.mean is not None:
        joules, method = busy.mean * duration, "nvml-power-samples"
    else:
        return Energy(idle_power_w=idle.mean, calls=calls, duration_s=duration,
                      reason="NVML gave neither an energy counter nor power samples")
    return Energy(energy_j=joules / calls, avg_power_w=joules / duration,
                  idle_power_w=idle.mean, sampled_power_w=busy.mean, calls=calls,
                  duration_s=duration, method=method)


# -- device and software facts ---------------------------------------------------------------
_FLAGS_OF_INTEREST = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
    "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8", "amx_fp16",
    "asimd", "asimdhp", "asimddp", "sve", "sve2", "bf16", "i8mm", "fphp",
)


def device_info(device: str) -> dict[str, Any]:
    """``{"kind", "name", "properties"}`` of ``device`` for a dataset's ``meta.json``.

    CPU: model name, logical CPUs and this process's affinity, torch threads (when torch is
    importable), a summary of SIMD/matrix flags, cache sizes from ``/sys``, memory, max clock.
    CUDA: name, compute capability, SMs, memory, L2, driver and CUDA versions, clocks and power
    limit from NVML where available (read only: nothing is changed).
    """
    if device_kind(device) == "cpu":
        flags = host.cpu_flags()
        props: dict[str, Any] = {
            "model": host.cpu_model(), "machine": platform.machine(),
            "logical_cpus": host.logical_cpus(), "affinity_cpus": host.affinity_count(),
            "flags": [f for f in _FLAGS_OF_INTEREST if f in flags],
            "cache_bytes": host.cpu_cache_bytes(), "memory_bytes": host.meminfo_bytes("MemTotal"),
            "max_clock_hz": host.cpufreq_max_hz(), "load_average_1m": host.load_average(),
        }
        with contextlib.suppress(HwsimError):
            torch = import_torch()
            props["torch_threads"] = torch.get_num_threads()
            props["torch_cpu_capability"] = _torch_cpu_capability(torch)
        return {"kind": "cpu", "name": props["model"], "properties": props}
    torch = import_torch()
    dev = torch.device(device)
    p = torch.cuda.get_device_properties(dev)
    props = {"index": dev.index if dev.index is not None else torch.cuda.current_device(),
             "compute_capability": f"{p.major}.{p.minor}",
             "sm_count": p.multi_processor_count, "memory_bytes": p.total_memory,
             "l2_cache_bytes": getattr(p, "L2_cache_size", None),
             "cuda": torch.version.cuda}
    for attr in ("uuid", "warp_size", "max_threads_per_multi_processor",
                 "regs_per_multiprocessor", "shared_memory_per_multiprocessor",
                 "clock_rate", "memory_clock_rate", "memory_bus_width"):
        if hasattr(p, attr):
            v = getattr(p, attr)
            props[attr] = v if isinstance(v, (int, float, str)) else str(v)
    props.update(_nvml_props(torch, device))
    return {"kind": "cuda", "name": p.name, "properties": props}


def _torch_cpu_capability(torch: Any) -> str | None:
    with contextlib.suppress(Exception):
        return str(torch.backends.cpu.get_cpu_capability())
    return None


def _nvml_props(torch: Any, device: str) -> dict[str, Any]:
    try:
        nvml, h = _nvml(torch, device)
    except HwsimError as e:
        return {"nvml": str(e)}
    out: dict[str, Any] = {}
    reads: dict[str, Callable[[], Any]] = {
        "driver": lambda: nvml.nvmlSystemGetDriverVersion(),
        "sm_clock_max_hz": lambda: nvml.nvmlDeviceGetMaxClockInfo(h, nvml.NVML_CLOCK_SM) * 1e6,
        "mem_clock_max_hz": lambda: nvml.nvmlDeviceGetMaxClockInfo(h, nvml.NVML_CLOCK_MEM) * 1e6,
        "sm_clock_now_hz": lambda: nvml.nvmlDeviceGetClockInfo(h, nvml.NVML_CLOCK_SM) * 1e6,
        "power_limit_w": lambda: nvml.nvmlDeviceGetPowerManagementLimit(h) / 1000.0,
        "memory_bus_width_bits": lambda: nvml.nvmlDeviceGetMemoryBusWidth(h),
        "temperature_c": lambda: nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU),
        "persistence_mode": lambda: nvml.nvmlDeviceGetPersistenceMode(h),
    }
    for key, read in reads.items():
        with contextlib.suppress(Exception):
            v = read()
            out[key] = v.decode() if isinstance(v, bytes) else v
    return out


def software_info() -> dict[str, Any]:
    """Versions: python, torch, CUDA and cuDNN (as torch was built), numpy, hwsim, platform;
    None for what is absent."""
    info: dict[str, Any] = {"python": platform.python_version(), "numpy": np.__version__,
                            "platform": platform.platform(), "torch": None, "cuda": None,
                            "cudnn": None, "hwsim": None}
    with contextlib.suppress(Exception):
        from importlib.metadata import version
        info["hwsim"] = version("hwsim")
    if "torch" in sys.modules or _torch_importable():
        with contextlib.suppress(HwsimError):
            torch = import_torch()
            info["torch"] = torch.__version__
            info["cuda"] = torch.version.cuda
            with contextlib.suppress(Exception):
                info["cudnn"] = torch.backends.cudnn.version() if info["cuda"] else None
    return info


def _torch_importable() -> bool:
    import importlib.util
    return importlib.util.find_spec("torch") is not None


# -- settings and records --------------------------------------------------------------------
@dataclass(frozen=True)
class MeasureSettings:
    """How to measure. ``rotate_sets=None`` sizes the input rotation per op to exceed the
    last-level cache (:func:`~simulator.validate.executor.auto_sets`); ``threads=None`` uses
    every CPU in this process's affinity; ``energy`` adds an energy loop per op (NVML on CUDA,
    RAPL on CPU): True, False, or None for "where readable" (probed once per run by
    :func:`simulator.validate.energy.probe_energy`)."""

    warmup: int = 3
    min_reps: int = 5
    max_reps: int = 1000
    min_time_s: float = 0.2
    rotate_sets: int | None = None
    threads: int | None = None
    energy: bool | None = None
    energy_min_time_s: float = 1.0
    seed: int = 0
    memory_budget_bytes: int | None = None
    passes: int = 1

    def __post_init__(self) -> None:
        for name, low in (("warmup", 0), ("min_reps", 1), ("max_reps", 1), ("seed", 0),
                          ("passes", 1)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"MeasureSettings: {name} must be an integer >= {low}, "
                                 f"got {v!r}")
        if self.max_reps < self.min_reps:
            raise ValueError(f"MeasureSettings: max_reps={self.max_reps} < "
                             f"min_reps={self.min_reps}")
        for name in ("min_time_s", "energy_min_time_s"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not v >= 0:
                raise ValueError(f"MeasureSettings: {name} must be a number >= 0, got {v!r}")
        for name in ("rotate_sets", "threads", "memory_budget_bytes"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"MeasureSettings: {name} must be a positive integer or "
                                 f"None, got {v!r}")

    def to_dict(self, device: str | None = None) -> dict[str, Any]:
        """The settings for ``meta.json``; with ``device``, ``threads`` as it will be used."""
        d = asdict(self)
        if device is not None:
            d["threads"] = (self.threads or host.affinity_count()) if device_kind(device) == "cpu" \
                else None
        d["rotate_sets"] = self.rotate_sets if self.rotate_sets is not None else "auto"
        d["energy"] = self.energy if self.energy is not None else "auto"
        return d


@dataclass(frozen=True)
class Skipped:
    """An op that could not be measured, and why."""

    id: str
    group: str
    kind: str
    op: Mapping[str, Any]
    reason: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MeasuredOps:
    """Records of the ops that ran (dataset order) and the ops that were skipped."""

    records: list[Measurement]
    skipped: list[Skipped] = field(default_factory=list)


@dataclass(frozen=True)
class MeasuredWorkload:
    """Per-distinct-op records (``extra["count"]`` = instances), the end-to-end record and
    the skipped ops."""

    ops: list[Measurement]
    e2e: Measurement
    skipped: list[Skipped] = field(default_factory=list)


def _resolve_energy(s: MeasureSettings, device: str) -> MeasureSettings:
    """``energy=None`` ("where readable") resolved for ``device`` by one probe."""
    if s.energy is not None:
        return s
    return replace(s, energy=probe_device_energy(device).ok)


def probe_device_energy(device: str) -> Any:
    """:func:`simulator.validate.energy.probe_energy` for ``device``, with its NVML handle
    on a GPU."""
    from simulator.validate.energy import probe_energy

    return probe_energy(device, nvml_open=lambda: _nvml(import_torch(), device))


def _json_clean(v: Any) -> Any:
    if isinstance(v, (tuple, list)):
        return [_json_clean(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _json_clean(x) for k, x in v.items() if x is not None}
    if isinstance(v, DType):
        return v.name
    return v


def op_record_dict(op: Op) -> dict[str, Any]:
    """``op.to_dict()`` made JSON-clean: dtype names, lists for tuples, None fields dropped
    (:func:`~workloads.ops.op_from_dict` rebuilds the same op from it).

    >>> from workloads.ops import MatMul
    >>> op_record_dict(MatMul(m=2, n=3, k=4, epilogue=("relu",)))["epilogue"]
    ['relu']
    """
    return _json_clean(op.to_dict())


def _fields(t: Timing) -> dict[str, Any]:
    return {"time_s": t.median, "time_p10": t.p10, "time_p90": t.p90, "time_mean": t.mean,
            "time_std": t.std, "reps": t.reps}


def _ms(s: float) -> str:
    return f"{s * 1e3:.3g} ms" if s >= 1e-4 else f"{s * 1e6:.3g} us"


def _measure_one(op: Op, device: str, s: MeasureSettings, seed: int
                 ) -> tuple[Timing, Any, Energy | None]:
    torch = import_torch()
    runner = make_runner(op, device, sets=s.rotate_sets, seed=seed,
                         memory_budget=s.memory_budget_bytes)
    try:
        with torch.inference_mode():
            t = time_callable(runner, device=device, warmup=s.warmup, min_reps=s.min_reps,
                              max_reps=s.max_reps, min_time_s=s.min_time_s, sets=runner.sets)
            e = measure_energy(runner, device, min_time_s=s.energy_min_time_s,
                               sets=runner.sets) if s.energy else None
    except torch.OutOfMemoryError as err:
        raise NotExecutableError(f"{op_label(op)}: out of memory while timing "
                                 f"({str(err).splitlines()[0]})") from None
    info = {"sets": runner.sets, "working_set_bytes": runner.working_set_bytes,
            "notes": list(runner.notes)}
    del runner
    if device_kind(device) == "cuda":  # hand the inputs back so a later large op fits
        torch.cuda.empty_cache()
    return t, info, e


def _record(id: str, group: str, op: Op, t: Timing, info: Mapping[str, Any],
            e: Energy | None, extra: Mapping[str, Any] | None = None) -> Measurement:
    d = op_record_dict(op)
    ex: dict[str, Any] = {**info, **(extra or {})}
    if not ex.get("notes"):
        ex.pop("notes", None)
    if e is not None:
        ex["energy"] = {k: v for k, v in asdict(e).items() if v is not None}
    return Measurement(id=id, mode="op", kind=op.kind, group=group, op=d, shape_key=shape_key(d),
                       **_fields(t), energy_j=e.energy_j if e else None,
                       avg_power_w=e.avg_power_w if e else None, extra=ex)


def measure_ops(ops: Iterable[tuple[str, str, Op]], device: str,
                settings: MeasureSettings | None = None, *,
                progress: Progress | None = None) -> MeasuredOps:
    """Measure each ``(id, group, op)`` on ``device`` (``cpu``, ``cuda``, ``cuda:N``).

    Each op gets fresh inputs (seed ``settings.seed`` plus its position), rotated over
    ``settings.rotate_sets`` sets, and one :class:`Measurement` (mode ``"op"``; extra holds
    the rotation and the executor's approximation notes; energy when ``settings.energy``).
    Ops that cannot run are not timed: they are returned in ``MeasuredOps.skipped`` with the
    reason. With ``settings.passes > 1`` the whole list is measured that many times in turn
    and each op's passes are combined by :func:`combine_passes` (``extra["pass_medians"]``). ``progress`` receives one line per op, e.g.
    ``[12/64] matmul 512x4096x4096 fp32: 1.23 ms``.
    """
    s = _resolve_energy(settings or MeasureSettings(), device)
    items = list(ops)
    ids = [i for i, _, _ in items]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise HwsimError(f"measure_ops: duplicate op id {dup!r}")
    records: list[Measurement] = []
    skipped: list[Skipped] = []
    width = len(str(len(items)))
    if progress and device_kind(device) == "cpu":
        load = host.load_average()
        if load is not None and load >= 0.5:
            progress(f"warning: load average {load} before measuring: other processes "
                     f"on these CPUs inflate and scatter the timings")
    timings: dict[str, list[Timing]] = {}
    found: dict[str, tuple[dict[str, Any], Energy | None]] = {}
    skip_ids: set[str] = set()
    with pinned_threads(device, s.threads):
        for pass_ in range(1, s.passes + 1):
            tag = f" (pass {pass_}/{s.passes})" if s.passes > 1 else ""
            for n, (id_, group, op) in enumerate(items, 1):
                if id_ in skip_ids:
                    continue
                head = f"[{n:>{width}}/{len(items)}]{tag} {op_label(op)}"
                try:
                    t, info, e = _measure_one(op, device, replace(s, energy=s.energy and
                                                                  pass_ == 1), s.seed + n)
                except NotExecutableError as err:
                    skip_ids.add(id_)
                    skipped.append(Skipped(id_, group, op.kind, op_record_dict(op), str(err)))
                    if progress:
                        progress(f"{head}: skipped ({err})")
                    continue
                timings.setdefault(id_, []).append(t)
                if pass_ == 1:
                    found[id_] = (info, e)
                if progress:
                    extra = f", {e.energy_j:.3g} J" if e and e.energy_j is not None else ""
                    progress(f"{head}: {_ms(t.median)} (p10 {_ms(t.p10)}, p90 {_ms(t.p90)}, "
                             f"{t.reps} reps{extra})")
    for id_, group, op in items:
        if id_ in timings:
            info, e = found[id_]
            ts = timings[id_]
            more = {"pass_medians": [t.median for t in ts]} if len(ts) > 1 else None
            records.append(_record(id_, group, op, combine_passes(ts), info, e, more))
    return MeasuredOps(records, skipped)


def measure_workload(name: str, phase: str = "auto", batch: int = 1, seq: int | None = None,
                     context: int | None = None, dtype: str = "bf16", device: str = "cpu",
                     settings: MeasureSettings | None = None, *, fuse: bool = True,
                     image_size: int | None = None, progress: Progress | None = None
                     ) -> MeasuredWorkload:
    """Measure a zoo workload the way the simulator predicts it: build it with
    :func:`workloads.zoo.build`, fuse epilogues as ``simulate`` does by default (``fuse``),
    time each distinct op once (``extra["count"]`` = its instances, ``extra["node"]`` = its
    first node) and the whole graph end to end (one record, mode ``"e2e"``).

    The end-to-end pass runs every op instance in graph order (identical layers share
    inputs, rotated; see :class:`~simulator.validate.executor.GraphRunner`); ops that cannot
    run are skipped in both and listed in ``skipped`` and in the e2e record's extra.

    Raises
    ------
    WorkloadError
        Unknown model or bad sizes (from the zoo).
    NotExecutableError
        When no op of the graph can run on ``device``.
    """
    from workloads.transforms.fuse import fuse_epilogues
    from workloads.zoo import build

    s = _resolve_energy(settings or MeasureSettings(), device)
    graph = build(name, phase=phase, batch=batch, seq=seq, context=context, dtype=dtype,
                  image_size=image_size)
    if fuse:
        graph = fuse_epilogues(graph)
    meta = graph.meta
    # The arguments that rebuild this graph with build()/simulate(): seq only where a family
    # has sequences, context only for a decoder's KV cache (build rejects context=0).
    family = meta.get("family")
    ctx = meta.get("context") or 0
    wl: dict[str, Any] = {
        "name": name, "model": meta.get("model", name), "family": family,
        "phase": graph.phase, "batch": meta.get("batch", batch),
        "seq": meta.get("seq") if family in ("decoder", "encoder") else None,
        "context": ctx if family == "decoder" and ctx > 0 else None,
        "dtype": meta.get("dtype", dtype), "fused": fuse,
        "image_size": meta.get("image_size") if family == "cnn" else None}
    wl = {k: v for k, v in wl.items() if v is not None}
    counts: dict[Op, int] = {}
    first: dict[Op, str] = {}
    for node in graph.flat():
        counts[node.op] = counts.get(node.op, 0) + 1
        first.setdefault(node.op, node.name)
    tag = f"{wl['model']}-{graph.phase}"
    items = [(f"{tag}-{i:03d}", tag, op) for i, op in enumerate(first)]
    measured = measure_ops(items, device, s, progress=progress)
    by_id = {id_: op for id_, _, op in items}
    records = [replace(r, extra={**r.extra, "count": counts[by_id[r.id]],
                                 "node": first[by_id[r.id]]})
               for r in measured.records]
    runs = []
    with pinned_threads(device, s.threads):
        for _ in range(s.passes):
            runs.append(run_graph_e2e(graph, device, warmup=s.warmup, min_reps=s.min_reps,
                                      max_reps=s.max_reps, min_time_s=s.min_time_s,
                                      sets=s.rotate_sets, seed=s.seed, skip_unsupported=True,
                                      memory_budget=s.memory_budget_bytes,
                                      energy=bool(s.energy) and not runs,
                                      energy_min_time_s=s.energy_min_time_s))
    run = replace(runs[0], timing=combine_passes([r.timing for r in runs]))
    e = run.energy
    sum_ops = sum(r.time_s * r.extra["count"] for r in records)
    extra: dict[str, Any] = {"ops": run.ops, "distinct_ops": run.distinct_ops,
                             "working_set_bytes": run.working_set_bytes,
                             "sum_op_median_s": sum_ops}
    if e is not None:
        extra["energy"] = {k: v for k, v in asdict(e).items() if v is not None}
    if run.skipped:
        extra["skipped_ops"] = len(run.skipped)
        extra["skipped"] = sorted({reason for _, reason in run.skipped})
    shape = "-".join(f"{k[0]}{wl[k]}" for k in ("batch", "seq", "context", "image_size")
                     if k in wl)
    e2e = Measurement(id=f"e2e-{tag}-{shape}-{wl['dtype']}",
                      mode="e2e", kind="workload", group=f"e2e-{tag}", workload=wl,
                      **_fields(run.timing), energy_j=e.energy_j if e else None,
                      avg_power_w=e.avg_power_w if e else None, extra=extra)
    if progress:
        progress(f"[e2e] {tag} ({run.ops} ops): {_ms(run.timing.median)} "
                 f"(sum of op medians {_ms(sum_ops)})")
    return MeasuredWorkload(records, e2e, measured.skipped)


@dataclass(frozen=True)
class E2ERun:
    """An end-to-end timing of a graph: the :class:`~simulator.validate.measure.Timing` of
    one pass over all its ops, how many ran, how many distinct, and those skipped."""

    timing: Any
    ops: int
    distinct_ops: int
    working_set_bytes: int
    skipped: tuple[tuple[str, str], ...]
    energy: Energy | None = None


def run_graph_e2e(graph: WorkloadGraph, device: str, *, warmup: int = 3, min_reps: int = 5,
                  max_reps: int = 1000, min_time_s: float = 0.2, sets: int | None = 1,
                  seed: int = 0, skip_unsupported: bool = False,
                  memory_budget: int | None = None, energy: bool = False,
                  energy_min_time_s: float = 1.0) -> E2ERun:
    """Materialise every op of ``graph`` (:func:`graph_runner`), run them all in order and
    time the whole pass with :func:`~simulator.validate.measure.time_callable`; with
    ``energy``, then measure the energy of one pass (:func:`measure_energy`)."""
    gr = graph_runner(graph, device, sets=sets, seed=seed, skip_unsupported=skip_unsupported,
                      memory_budget=memory_budget)
    if not gr.order:
        raise NotExecutableError(f"{graph.name}: no op of the graph can run on {device} "
                                 f"({gr.skipped[0][1] if gr.skipped else 'empty graph'})")
    torch = import_torch()
    with torch.inference_mode():
        timing = time_callable(gr, device=device, warmup=warmup, min_reps=min_reps,
                               max_reps=max_reps, min_time_s=min_time_s)
        e = measure_energy(gr, device, min_time_s=energy_min_time_s) if energy else None
    return E2ERun(timing, gr.ops, len(gr.runners), gr.working_set_bytes, tuple(gr.skipped), e)
