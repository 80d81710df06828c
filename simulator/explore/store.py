"""Where a study's points go as they complete: ``points.csv`` (one row per point, appended and
synced to disk) and ``manifest.json`` (the study, its fingerprint, the code version and the
hashes of the spec files it reads).

A study killed at any moment (Ctrl-C, ``kill -9``, a dead worker) loses at most the row being
written: on resume a torn last line is cut off, and every point whose row is complete, failed
or not, is not evaluated again.
"""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import io
import json
import os
import platform
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from simulator.errors import HwsimError
from simulator.explore.study import METRICS, Study

__all__ = ["StudyStore", "load", "stored_rows", "POINTS", "MANIFEST"]

POINTS = "points.csv"
MANIFEST = "manifest.json"
_FIXED = ("point_id", "status", "error", "wall_s")


def columns(study: Study) -> list[str]:
    """The CSV header: id, the axes, status, error, wall time, every metric."""
    return ["point_id", *(a.name for a in study.axes), "status", "error", "wall_s",
            *METRICS]


def _code_version() -> str:
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty"],
                             capture_output=True, text=True, timeout=5, check=False)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    from importlib.metadata import PackageNotFoundError, version

    try:
        return "hwsim " + version("hwsim")
    except PackageNotFoundError:
        return "unknown"


def _spec_hashes(study: Study) -> dict[str, str]:
    """sha256 of every spec file the study reads (the base and each ``arch`` axis value)."""
    from simulator.arch.loader import find_arch
    from simulator.explore.study import ARCH

    names = [study.base, *(v for a in study.axes if a.name == ARCH for v in a.values)]
    out = {}
    for n in dict.fromkeys(names):
        try:
            path = Path(find_arch(n))
        except HwsimError:
            continue
        out[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


class StudyStore:
    """A study's directory: open it new, or again to resume."""

    def __init__(self, directory: str | os.PathLike, study: Study, *, resume: bool = False):
        self.dir = Path(directory)
        self.study = study
        self.points = self.dir / POINTS
        self.manifest = self.dir / MANIFEST
        self.columns = columns(study)
        if self.manifest.exists():
            if not resume:
                raise HwsimError(f"{self.dir}: holds a study already; --resume continues it, "
                                 "or give another --out")
            self._check_same_study()
        elif resume and self.points.exists():
            raise HwsimError(f"{self.dir}: has {POINTS} but no {MANIFEST}: not a study "
                             "directory hwsim wrote")
        else:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._write_manifest()
        self._repair()
        if not self.points.exists():
            with self.points.open("w", encoding="utf-8", newline="") as f:
                csv.writer(f).writerow(self.columns)
                f.flush()
                os.fsync(f.fileno())

    # -- the manifest ---------------------------------------------------------------------
    def _write_manifest(self) -> None:
        data = {"name": self.study.name, "study_file": str(self.study.path),
                "fingerprint": self.study.fingerprint(), "study": self.study.raw,
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "code_version": _code_version(), "python": platform.python_version(),
                "spec_hashes": _spec_hashes(self.study), "columns": self.columns}
        tmp = self.manifest.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, self.manifest)

    def _check_same_study(self) -> None:
        try:
            data = json.loads(self.manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise HwsimError(f"{self.manifest}: unreadable ({e.__class__.__name__})") from None
        if data.get("fingerprint") != self.study.fingerprint():
            raise HwsimError(f"{self.dir}: was written for another version of the study "
                             f"(fingerprint {data.get('fingerprint')} vs "
                             f"{self.study.fingerprint()}): resume it with the same study "
                             "file, or give another --out")
        if data.get("columns") != self.columns:
            raise HwsimError(f"{self.points}: its columns differ from this study's")

    # -- the points -------------------------------------------------------------------------
    def _repair(self) -> None:
        """Cut a torn last row (a process killed mid-write) so that appends stay valid."""
        if not self.points.exists():
            return
        data = self.points.read_bytes()
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            with self.points.open("r+b") as f:
                f.truncate(cut)

    def done(self) -> set[str]:
        """Ids of the points with a complete row (ok, infeasible or failed)."""
        if not self.points.exists():
            return set()
        with self.points.open(encoding="utf-8", newline="") as f:
            return {row["point_id"] for row in csv.DictReader(f) if row.get("point_id")}

    def append(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Add rows and sync them to disk before returning."""
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self.columns, extrasaction="ignore")
        for r in rows:
            w.writerow({k: _cell(r.get(k)) for k in self.columns})
        with self.points.open("a", encoding="utf-8", newline="") as f:
            f.write(buf.getvalue())
            f.flush()
            os.fsync(f.fileno())


def _cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v)  # round-trips exactly
    return v


def load(study_dir: str | os.PathLike) -> Any:
    """Every evaluated point of a study directory as a pandas DataFrame (metrics NaN where a
    point failed); ``df.attrs`` holds the manifest."""
    import pandas as pd

    d = Path(study_dir)
    if not (d / MANIFEST).exists():
        raise HwsimError(f"{d}: no {MANIFEST}: not a study directory hwsim wrote")
    manifest = json.loads((d / MANIFEST).read_text(encoding="utf-8"))
    df = pd.read_csv(d / POINTS, keep_default_na=False, na_values=[""],
                     dtype={"point_id": str, "status": str, "error": str})
    df["error"] = df["error"].fillna("")
    df.attrs["manifest"] = manifest
    return df


def _as_axis_value(axis: Any, text: str) -> Any:
    """A stored cell back to the value the study gave (its type matters for point ids);
    an empty cell is a conditional axis not set on the point."""
    if text == "":
        return None
    for v in axis.values:
        if str(v) == text or _cell(v) == text:
            return v
    if axis.continuous is not None:
        x = float(text)
        return int(round(x)) if axis.continuous[3] else x
    return text


def stored_rows(store: StudyStore, study: Study) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Every stored row as (point, row), in the order written: an adaptive search's history."""
    out = []
    with store.points.open(encoding="utf-8", newline="") as f:
        for rec in csv.DictReader(f):
            if not rec.get("point_id"):
                continue
            point = {a.name: _as_axis_value(a, rec[a.name]) for a in study.axes}
            row: dict[str, Any] = {"point_id": rec["point_id"], "status": rec["status"],
                                   "error": rec["error"]}
            for k in METRICS:
                if rec.get(k) not in (None, ""):
                    row[k] = float(rec[k])
            out.append((point, row))
    return out
