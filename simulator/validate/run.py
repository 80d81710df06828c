"""One call from "measure this" to a dataset folder on disk.

>>> from simulator.validate.run import validate   # doctest: +SKIP
>>> validate(suite="smoke", device="cpu")          # doctest: +SKIP
PosixPath('/home/me/hwsim-measurements/amd-epyc-smoke-20261123-120000')

Without ``out`` the dataset goes to
``./hwsim-measurements/<device-name-slug>-<suite or workload>-<YYYYMMDD-HHMMSS>`` (UTC time)
under the current directory, never into the hwsim checkout or installed package (the shipped
datasets stay in ``experiments/validation/data``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from simulator.errors import HwsimError
from simulator.validate.dataset import save_dataset
from simulator.validate.energy import energy_note
from simulator.validate.executor import device_kind, resolve_device
from simulator.validate.measure import (
    MeasureSettings,
    device_info,
    measure_ops,
    measure_workload,
    probe_device_energy,
    software_info,
)
from simulator.validate.suites import get_suite

__all__ = ["DEFAULT_ROOT", "validate", "slug", "default_out", "energy_note"]

#: Where datasets go when no ``out`` is given (relative to the current directory).
DEFAULT_ROOT = Path("hwsim-measurements")


def slug(text: str) -> str:
    """Lowercase, runs of other characters as one ``-``.

    >>> slug("NVIDIA H100 80GB HBM3")
    'nvidia-h100-80gb-hbm3'
    """
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-") or "unknown"


def default_out(device_name: str, what: str, when: float | None = None,
                base: str | Path | None = None) -> Path:
    """Where a dataset goes when no ``out`` is given: ``<base, default the working
    directory>/hwsim-measurements/<device slug>-<what slug>-<YYYYMMDD-HHMMSS UTC>``.

    >>> default_out("AMD EPYC", "smoke", when=0, base="/tmp").as_posix()
    '/tmp/hwsim-measurements/amd-epyc-smoke-19700101-000000'
    """
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(when))
    root = (Path(base) if base is not None else Path.cwd()) / DEFAULT_ROOT
    return root / f"{slug(device_name)}-{slug(what)}-{stamp}"


def validate(suite: str | None = None, workload: str | None = None, device: str = "auto",
             out: str | Path | None = None, settings: MeasureSettings | None = None, *,
             phase: str = "auto", batch: int = 1, seq: int | None = None,
             context: int | None = None, dtype: str | None = None,
             image_size: int | None = None, fuse: bool = True,
             progress: Callable[[str], None] | None = None) -> Path:
    """Measure an op suite or a zoo workload on ``device`` and write a dataset; return its path.

    Parameters
    ----------
    suite, workload:
        Exactly one: a suite name (``smoke``, ``cpu``, ``gpu``, ``ops``; see
        :mod:`~simulator.validate.suites`) or a zoo model name / config path measured per op
        and end to end (with ``phase``, ``batch``, ``seq``, ``context``, ``dtype`` as in
        :func:`workloads.zoo.build`; ``dtype`` defaults to bf16 on CUDA and fp32 on CPU,
        where bf16 is often emulated).
    device:
        ``auto`` (CUDA when torch sees a GPU, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.
    out:
        Dataset folder; default ``./hwsim-measurements/<device>-<what>-<UTC time>`` under the
        current directory. An existing dataset is never overwritten.

    Raises
    ------
    HwsimError
        Neither or both of ``suite`` and ``workload``; an unknown suite; torch missing; an
        ``out`` that already holds a dataset; nothing measurable.

    Energy (``settings.energy``: None = where readable, the default) is measured per op and
    end to end with NVML on a GPU, RAPL on a CPU; ``meta["energy"]`` says whether it was
    and, where not, why (:func:`energy_note` prints it), and no record then carries an
    energy number.
    """
    if (suite is None) == (workload is None):
        raise HwsimError("validate: give exactly one of suite= or workload=")
    s = settings or MeasureSettings()
    dev = resolve_device(device)
    info = device_info(dev)
    probe = probe_device_energy(dev)
    if s.energy is False:
        energy_meta: dict[str, Any] = {"measured": False, "method": None,
                                       "reason": "not requested (--no-energy)"}
    else:
        energy_meta = probe.to_json()
        if s.energy and not probe.ok:
            energy_meta["reason"] = f"requested but {probe.reason}"
        s = replace(s, energy=probe.ok)
    if progress:
        progress(energy_note(energy_meta))
    what = suite if suite is not None else f"{Path(str(workload)).stem}-{phase}"
    path = Path(out) if out is not None else default_out(info["name"], what)
    if out is None:
        n = 1
        while path.exists():  # two runs in the same second
            path = path.with_name(f"{path.name.rsplit('~', 1)[0]}~{n}")
            n += 1
    if (path / "measurements.jsonl").exists() or (path / "meta.json").exists():
        raise HwsimError(f"{path}: already holds a dataset; choose another out folder")
    start = time.time()
    meta: dict[str, Any] = {"suite": None, "workload": None}
    if suite is not None:
        ops = get_suite(suite, dev)
        measured = measure_ops(ops, dev, s, progress=progress)
        records, skipped = measured.records, measured.skipped
        meta["suite"] = suite
        meta["suite_ops"] = len(ops)
    else:
        dt = dtype or ("bf16" if device_kind(dev) == "cuda" else "fp32")
        wl = measure_workload(str(workload), phase=phase, batch=batch, seq=seq,
                              context=context, dtype=dt, device=dev, settings=s, fuse=fuse,
                              image_size=image_size, progress=progress)
        records, skipped = [*wl.ops, wl.e2e], wl.skipped
        meta["workload"] = dict(wl.e2e.workload or {})
    if not records:
        reason = skipped[0].reason if skipped else "no ops"
        raise HwsimError(f"validate: nothing could be measured on {dev} ({reason})")
    meta.update({
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start)),
        "device": info, "software": software_info(), "settings": s.to_dict(dev),
        "skipped": [k.to_json() for k in skipped], "duration_s": round(time.time() - start, 3),
        "energy": energy_meta,
    })
    return save_dataset(path, meta, records)
