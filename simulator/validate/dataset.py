"""Measured datasets: a versioned, self-describing folder of real-execution timings.

Layout of a dataset folder::

    <dataset>/meta.json            schema, device properties, software versions, settings
    <dataset>/measurements.jsonl   one measurement per line (ops and end-to-end runs)

``meta.json`` (schema ``hwsim.validation/1``)::

    {"schema": "hwsim.validation/1", "created": "2026-11-23T12:00:00Z", "suite": "ops",
     "device": {"kind": "cpu" | "cuda", "name": "...", "properties": {...}},
     "software": {"python": "...", "torch": "...", "cuda": null, "driver": null},
     "settings": {"threads": 2, "warmup": 3, "min_reps": 5, "min_time_s": 0.2,
                  "rotate_sets": 4}}

Each measurement line::

    {"id": "gemm-0007", "mode": "op", "kind": "matmul", "group": "gemm-prefill",
     "op": {"kind": "matmul", "m": 512, "n": 4096, "k": 4096, "dtype": "fp32"},
     "shape_key": "matmul:m=512,n=4096,k=4096", "time_s": 1.2e-3, "time_p10": ...,
     "time_p90": ..., "time_mean": ..., "time_std": ..., "reps": 25,
     "energy_j": null, "avg_power_w": null}

End-to-end runs use ``"mode": "e2e"`` with ``"workload"`` (name, phase, batch, seq, context,
dtype) in place of ``"op"``. ``time_s`` is always the median. Measurement (``measure.py``)
writes these files; comparison and calibration only read them.

Energy: ``energy_j`` (J per call) and ``avg_power_w`` (W over the energy loop) are the device's
whole draw, idle included (NVML board energy on a GPU, RAPL package energy on a CPU), with the
method, idle power and loop in ``extra.energy``; they are absent, never zero, where energy was
not readable. ``meta.energy`` says which: ``{"measured": true, "method": "rapl", "domains":
[...]}`` or ``{"measured": false, "reason": "..."}``. ``meta.timing`` (optional, default
``"wall"``) is ``"kernel"`` for profiler data (:mod:`simulator.validate.traces`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from simulator.errors import HwsimError

__all__ = ["SCHEMA", "Measurement", "Dataset", "save_dataset", "load_dataset", "shape_key"]

SCHEMA = "hwsim.validation/1"
_REQUIRED_META = ("schema", "created", "device", "software", "settings")
_REQUIRED_RECORD = ("id", "mode", "time_s", "reps")


@dataclass(frozen=True)
class Measurement:
    """One measured op (or end-to-end run): median time and its spread, optional energy."""

    id: str
    mode: str  # "op" | "e2e"
    time_s: float
    reps: int
    kind: str = ""
    group: str = ""
    op: Mapping[str, Any] | None = None
    workload: Mapping[str, Any] | None = None
    shape_key: str = ""
    time_p10: float | None = None
    time_p90: float | None = None
    time_mean: float | None = None
    time_std: float | None = None
    energy_j: float | None = None
    avg_power_w: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: v for k, v in d.items() if v is not None and v != {}}


@dataclass(frozen=True)
class Dataset:
    """A loaded dataset: its folder, its metadata and its measurements in file order."""

    path: Path
    meta: Mapping[str, Any]
    records: tuple[Measurement, ...]

    def ops(self) -> list[Measurement]:
        return [r for r in self.records if r.mode == "op"]

    def e2e(self) -> list[Measurement]:
        return [r for r in self.records if r.mode == "e2e"]


def shape_key(op: Mapping[str, Any]) -> str:
    """A key identifying an op's shape (dtype excluded), used to split train/held-out data so
    held-out ops are different shapes, not repetitions of training ones."""
    items = sorted((k, v) for k, v in op.items() if k not in ("kind", "dtype"))
    return f"{op.get('kind')}:" + ",".join(f"{k}={v}" for k, v in items)


def save_dataset(path: str | Path, meta: Mapping[str, Any], records: Iterable[Measurement]
                 ) -> Path:
    """Write ``meta.json`` and ``measurements.jsonl`` under ``path`` (created if needed)."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"schema": SCHEMA, **dict(meta)}
    missing = [k for k in _REQUIRED_META if k not in meta]
    if missing:
        raise HwsimError(f"{out}: dataset metadata is missing {', '.join(missing)}")
    (out / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")
    with open(out / "measurements.jsonl", "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r.to_json(), sort_keys=True, default=str) + "\n")
    return out


def load_dataset(path: str | Path) -> Dataset:
    """Read and validate a dataset folder.

    Raises
    ------
    HwsimError
        Naming the file, line and field when the folder, the schema or a record is wrong.
    """
    p = Path(path)
    meta_file, data_file = p / "meta.json", p / "measurements.jsonl"
    if not meta_file.is_file() or not data_file.is_file():
        raise HwsimError(f"{p}: not a dataset folder (expected meta.json and measurements.jsonl)")
    try:
        meta = json.loads(meta_file.read_text())
    except json.JSONDecodeError as e:
        raise HwsimError(f"{meta_file}: not valid JSON ({e.msg}, line {e.lineno})") from None
    if not isinstance(meta, dict) or meta.get("schema") != SCHEMA:
        raise HwsimError(f"{meta_file}: schema: expected {SCHEMA!r}, got "
                         f"{meta.get('schema') if isinstance(meta, dict) else meta!r}")
    missing = [k for k in _REQUIRED_META if k not in meta]
    if missing:
        raise HwsimError(f"{meta_file}: missing field {missing[0]!r}")
    records = []
    names = {f for f in Measurement.__dataclass_fields__}
    for i, line in enumerate(data_file.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except json.JSONDecodeError as e:
            raise HwsimError(f"{data_file}:{i}: not valid JSON ({e.msg})") from None
        miss = [k for k in _REQUIRED_RECORD if k not in d]
        if miss:
            raise HwsimError(f"{data_file}:{i}: missing field {miss[0]!r}")
        if d["mode"] not in ("op", "e2e"):
            raise HwsimError(f"{data_file}:{i}: mode: expected 'op' or 'e2e', got {d['mode']!r}")
        if d["mode"] == "op" and not isinstance(d.get("op"), dict):
            raise HwsimError(f"{data_file}:{i}: op: expected the op's fields, got {d.get('op')!r}")
        t = d["time_s"]
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not t > 0:
            raise HwsimError(f"{data_file}:{i}: time_s: expected a positive number, got {t!r}")
        extra = {k: v for k, v in d.items() if k not in names}
        known = {k: v for k, v in d.items() if k in names and k != "extra"}
        records.append(Measurement(**known, extra={**d.get("extra", {}), **extra}))
    return Dataset(p, meta, tuple(records))
