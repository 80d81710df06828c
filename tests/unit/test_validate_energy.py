"""Measured energy in the validation path: RAPL (a fake powercap tree in tmp_path, counter wrap
included), NVML probing (a fake ``pynvml``), the "where readable" rule (a note, never a zero),
and power/energy errors in ``compare``.

The fake counters are driven by the test, so every expected number is exact arithmetic on the
counter increments the fake makes (no wall-clock assertion).
"""

from __future__ import annotations

import json
import math
import sys
import types
from pathlib import Path

import pytest

from simulator.validate import energy as en
from simulator.validate import measure
from simulator.validate.compare import compare, op_power_w, result_device_energy
from simulator.validate.dataset import SCHEMA, Dataset, Measurement
from simulator.validate.measure import MeasureSettings, measure_energy

MAX = 262143328850  # max_energy_range_uj of a Xeon package (a real sysfs value)


def rapl_tree(root: Path, start: dict[str, int]) -> Path:
    """Two packages, a core sub-domain and a psys domain (the last two must not be summed)."""
    for d, name, e in (("intel-rapl:0", "package-0", start.get("p0", 0)),
                       ("intel-rapl:1", "package-1", start.get("p1", 0)),
                       ("intel-rapl:0:0", "core", 5),
                       ("intel-rapl:2", "psys", 7)):
        (root / d).mkdir(parents=True)
        (root / d / "name").write_text(name + "\n")
        (root / d / "energy_uj").write_text(f"{e}\n")
        (root / d / "max_energy_range_uj").write_text(f"{MAX}\n")
    return root


def bump(root: Path, d: str, uj: int) -> None:
    """Advance one domain's counter by ``uj``, wrapping as the hardware does."""
    f = root / d / "energy_uj"
    f.write_text(f"{(int(f.read_text()) + uj) % (MAX + 1)}\n")


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class VirtualPackage:
    """A package drawing ``watts`` on a virtual clock that advances 1 ms per reading of the
    loop's clock (so energy over duration is exact, whatever the machine's load): the counter
    (uJ, wrapping) reads ``watts x`` the virtual time."""

    def __init__(self, watts: float) -> None:
        self.watts, self.t = watts, 1000.0

    def clock(self) -> float:
        self.t += 1e-3
        return self.t

    def read(self, path: Path) -> int:
        if path.name == "energy_uj":
            return round(self.t * self.watts * 1e6) % (MAX + 1)
        return int(path.read_text())


def test_wrap_delta_counts_one_wrap():
    assert en.wrap_delta(100, 350, MAX) == 250
    # 10 uJ before the top, 40 after zero: 10 + 1 (the step from MAX to 0) + 40 - 1 = 50
    assert en.wrap_delta(MAX - 10, 39, MAX) == 50


def test_probe_finds_package_domains_only(tmp_path):
    root = rapl_tree(tmp_path / "powercap", {})
    p = en.probe_rapl(root)
    assert p.ok and p.method == "rapl"
    assert p.domains == ("package-0", "package-1")          # not core, not psys
    assert p.to_json() == {"measured": True, "method": "rapl",
                           "domains": ["package-0", "package-1"]}


def test_rapl_energy_per_call_across_a_counter_wrap(tmp_path):
    # package 0 reaches 3 mJ below its wrap point after the idle 0.5 s (10 J) and the two
    # warm-up calls (2 mJ), so the timed loop wraps it on its fourth call
    root = rapl_tree(tmp_path / "powercap", {"p0": MAX - 3000 - 10_000_000 - 2000, "p1": 10})
    clock = FakeClock()

    def fn(i: int) -> None:            # each call: 1 ms, 1000 uJ on p0 and 500 uJ on p1
        clock.t += 1e-3
        bump(root, "intel-rapl:0", 1000)
        bump(root, "intel-rapl:1", 500)

    def sleep(s: float) -> None:       # idle: 20 W on each package
        clock.t += s
        bump(root, "intel-rapl:0", int(20e6 * s))
        bump(root, "intel-rapl:1", int(20e6 * s))

    got = en.rapl_energy(fn, min_time_s=0.02, warmup=2, idle_s=0.5, root=root, clock=clock,
                         sleep=sleep)
    assert got["method"] == "rapl"
    assert got["calls"] == 24                         # batches of 8 until 20 ms have passed
    assert got["energy_j"] == pytest.approx(1.5e-3, rel=1e-12)   # 1000 + 500 uJ per call
    assert got["avg_power_w"] == pytest.approx(1.5, rel=1e-9)    # 1.5 mJ per 1 ms
    assert got["idle_power_w"] == pytest.approx(40.0, rel=1e-9)  # 2 x 20 W
    # the counter did wrap inside the loop: it now reads 24 calls x 1000 uJ - 3000 uJ - 1
    assert int((root / "intel-rapl:0" / "energy_uj").read_text()) == 24 * 1000 - 3000 - 1


def test_measure_energy_on_cpu_reads_rapl(tmp_path):
    root = rapl_tree(tmp_path / "powercap", {})

    def fn(i: int) -> None:
        bump(root, "intel-rapl:0", 2000)

    e = measure_energy(fn, "cpu", min_time_s=0.0, idle_s=0.0, rapl_root=root)
    assert e.method == "rapl" and e.reason is None
    assert e.energy_j == pytest.approx(2e-3, rel=1e-12) and e.calls == 8


def test_frozen_counter_gives_a_reason_not_a_zero(tmp_path):
    root = rapl_tree(tmp_path / "powercap", {})
    e = measure_energy(lambda i: None, "cpu", min_time_s=0.0, idle_s=0.0, rapl_root=root)
    assert e.energy_j is None and e.avg_power_w is None
    assert "did not move" in e.reason


def test_missing_powercap_says_why_and_mentions_nvml(tmp_path):
    p = en.probe_rapl(tmp_path / "nothing")
    assert not p.ok and "does not exist" in p.reason and "NVML" in p.reason
    e = measure_energy(lambda i: None, "cpu", rapl_root=tmp_path / "nothing")
    assert e.energy_j is None and e.reason == p.reason


def test_permission_denied_says_root_only(tmp_path, monkeypatch):
    root = rapl_tree(tmp_path / "powercap", {})
    real = en._read_int

    def read(path: Path) -> int:
        if path.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(en, "_read_int", read)
    p = en.probe_rapl(root)
    assert not p.ok and "permission denied" in p.reason and "CVE-2020-8694" in p.reason
    assert "intel-rapl:0/energy_uj" in p.reason


def test_this_machine_default_root_follows_the_module_constant(tmp_path, monkeypatch):
    """measure_ops and validate read RAPL_ROOT at call time, so a fake tree can stand in."""
    root = rapl_tree(tmp_path / "powercap", {})
    monkeypatch.setattr(en, "RAPL_ROOT", root)
    assert en.probe_energy("cpu").ok
    monkeypatch.setattr(en, "RAPL_ROOT", tmp_path / "absent")
    assert not en.probe_energy("cpu").ok


# -- NVML probing with a fake pynvml -----------------------------------------------------------
def fake_nvml(counter: bool, power: bool) -> types.ModuleType:
    m = types.ModuleType("pynvml")

    def energy(handle):
        if not counter:
            raise RuntimeError("NVMLError_NotSupported")
        return 123456

    def watts(handle):
        if not power:
            raise RuntimeError("NVMLError_NotSupported")
        return 65000

    m.nvmlDeviceGetTotalEnergyConsumption = energy
    m.nvmlDeviceGetPowerUsage = watts
    return m


@pytest.mark.parametrize("counter,power,method", [
    (True, True, "nvml-total-energy"),       # Volta and later
    (False, True, "nvml-power-samples"),     # older boards: power readings only
    (False, False, None),
])
def test_nvml_probe_picks_counter_then_samples(counter, power, method):
    p = en.probe_nvml("cuda:0", lambda: (fake_nvml(counter, power), "h"))
    assert p.method == method
    if method is None:
        assert "neither an energy counter nor power" in p.reason


def test_probe_energy_on_cuda_uses_the_nvml_handle(monkeypatch):
    monkeypatch.setattr(measure, "import_torch", lambda: None)
    monkeypatch.setattr(measure, "_nvml", lambda torch, dev: (fake_nvml(True, True), dev))
    assert measure.probe_device_energy("cuda:0").method == "nvml-total-energy"


def test_probe_energy_without_pynvml_gives_the_install_hint(monkeypatch):
    monkeypatch.setattr(measure, "import_torch", lambda: None)
    monkeypatch.setitem(sys.modules, "pynvml", None)  # `import pynvml` fails
    p = measure.probe_device_energy("cuda:0")
    assert not p.ok and "nvidia-ml-py" in p.reason


# -- the "where readable" rule in a run ---------------------------------------------------------
def test_settings_energy_defaults_to_where_readable():
    assert MeasureSettings().energy is None
    assert MeasureSettings().to_dict("cpu")["energy"] == "auto"


@pytest.mark.torch
def test_validate_records_rapl_energy_beside_latency(tmp_path, monkeypatch):
    """A fake 50 W package: every op's power is 50 W; the records and the meta carry it and
    compare() reports power and energy errors against the prediction."""
    from simulator.validate.run import validate

    root = rapl_tree(tmp_path / "powercap", {})
    watts = 50.0
    virtual = VirtualPackage(watts)
    monkeypatch.setattr(en, "RAPL_ROOT", root)
    monkeypatch.setattr(en, "_read_int", virtual.read)
    monkeypatch.setattr(en, "_now", virtual.clock)
    s = MeasureSettings(warmup=1, min_reps=3, min_time_s=0.01, threads=1,
                        energy_min_time_s=0.05)
    notes: list[str] = []
    out = validate(suite="smoke", device="cpu", out=tmp_path / "ds", settings=s,
                   progress=notes.append)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["energy"] == {"measured": True, "method": "rapl",
                              "domains": ["package-0", "package-1"]}
    assert "energy: measured with rapl (package-0, package-1)" in notes
    recs = [json.loads(x) for x in (out / "measurements.jsonl").read_text().splitlines()]
    # two packages at 50 W, on the loop's own (virtual) clock: exact
    assert recs and all(r["avg_power_w"] == pytest.approx(2 * watts, rel=1e-6) for r in recs)
    c = compare(out, "cpu-host")
    assert c.power["overall"].count == c.overall.count > 0
    assert c.energy["overall"].count == c.overall.count
    row = c.op_rows()[0]
    assert row.power_error == pytest.approx(row.predicted_power_w / row.measured_power_w - 1)


@pytest.mark.torch
def test_validate_without_rapl_writes_a_note_and_no_numbers(tmp_path, monkeypatch):
    from simulator.validate.run import validate

    monkeypatch.setattr(en, "RAPL_ROOT", tmp_path / "absent")
    s = MeasureSettings(warmup=1, min_reps=3, min_time_s=0.01, threads=1, energy=True)
    notes: list[str] = []
    out = validate(suite="smoke", device="cpu", out=tmp_path / "ds", settings=s,
                   progress=notes.append)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["energy"]["measured"] is False
    assert meta["energy"]["reason"].startswith("requested but RAPL not readable")
    assert any(n.startswith("energy: not measured: requested but RAPL") for n in notes)
    text = (out / "measurements.jsonl").read_text()
    assert "energy_j" not in text and "avg_power_w" not in text   # never a zero
    c = compare(out, "cpu-host")
    assert not c.energy and not c.power


# -- predicted power and energy ----------------------------------------------------------------
def _ds(records: list[Measurement]) -> Dataset:
    meta = {"schema": SCHEMA, "created": "now", "device": {"kind": "cuda", "name": "x"},
            "software": {}, "settings": {}}
    return Dataset(Path("mem"), meta, tuple(records))


def test_compare_reports_energy_and_power_errors_per_class():
    from simulator.api import predict_op
    from simulator.arch.loader import load_arch
    from workloads.ops import MatMul, Norm

    ops = {"mm": MatMul(m=4096, n=4096, k=4096, dtype="bf16"),
           "norm": Norm(norm="rmsnorm", rows=4096, cols=8192, dtype="bf16")}
    dev = load_arch("h100-sxm").device
    recs = []
    for name, op in ops.items():
        c = predict_op(op, "h100-sxm")
        power = op_power_w(dev, c)
        assert power is not None and power > dev.power.static_w   # work draws above idle
        # measured: 10 % more power than predicted, at the predicted time
        recs.append(Measurement(id=name, mode="op", kind=op.kind, op=measure.op_record_dict(op),
                                time_s=c.latency_s, reps=5, energy_j=1.1 * power * c.latency_s,
                                avg_power_w=1.1 * power))
    recs.append(Measurement(id="noenergy", mode="op", kind="norm",
                            op=measure.op_record_dict(ops["norm"]), time_s=1e-4, reps=5))
    cmp = compare(_ds(recs), "h100-sxm")
    assert cmp.power["overall"].count == 2 and cmp.energy["overall"].count == 2
    assert cmp.power["overall"].bias == pytest.approx(1 / 1.1 - 1, rel=1e-9)
    assert cmp.energy["overall"].mape == pytest.approx(1 - 1 / 1.1, rel=1e-9)
    assert {k for k in cmp.power if k != "overall"} == {r.op_class for r in cmp.op_rows()
                                                       if r.measured_power_w}


def test_result_device_energy_is_the_first_accelerators():
    from simulator.api import simulate

    r = simulate("mlp", "h100-sxm")
    e, p = result_device_energy(r)
    assert e is not None and p is not None and e > 0 and p > 0
    assert e <= r.energy_j * (1 + 1e-12)          # one device's share of the system's
    assert math.isfinite(p)



@pytest.mark.torch
def test_workload_end_to_end_energy_is_recorded_and_compared(tmp_path, monkeypatch):
    """The e2e record of a workload carries the energy of one pass over the graph (fake
    50 W package); compare() sets it beside the simulated run's per-device energy."""
    from simulator.validate.dataset import save_dataset
    from simulator.validate.measure import measure_workload

    root = rapl_tree(tmp_path / "powercap", {})
    only = root / "intel-rapl:1"
    for f in only.iterdir():
        f.unlink()
    only.rmdir()                                # one package

    virtual = VirtualPackage(50.0)
    monkeypatch.setattr(en, "RAPL_ROOT", root)
    monkeypatch.setattr(en, "_read_int", virtual.read)
    monkeypatch.setattr(en, "_now", virtual.clock)
    res = measure_workload("mlp", batch=1, dtype="fp32", device="cpu",
                           settings=MeasureSettings(warmup=1, min_reps=3, min_time_s=0.01,
                                                    rotate_sets=1, energy_min_time_s=0.05))
    e2e = res.e2e
    assert e2e.avg_power_w == pytest.approx(50.0, rel=1e-6)
    assert e2e.energy_j == pytest.approx(e2e.extra["energy"]["avg_power_w"]
                                         * e2e.extra["energy"]["duration_s"]
                                         / e2e.extra["energy"]["calls"], rel=1e-9)
    meta = {"created": "now", "device": {"kind": "cpu", "name": "cpu"}, "software": {},
            "settings": {}}
    path = save_dataset(tmp_path / "ds", meta, [*res.ops, e2e])
    c = compare(path, "cpu-host")
    row = c.e2e_rows()[0]
    assert row.measured_power_w == e2e.avg_power_w and row.predicted_power_w > 0
    assert c.power["e2e"].count == 1 and c.energy["e2e"].count == 1
