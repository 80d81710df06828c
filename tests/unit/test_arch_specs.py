"""Shipped architecture specs: they load, their derived peaks match the published figures,
their headers carry provenance, bad inputs give actionable errors, and host-CPU detection
falls back field by field."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import pytest
import yaml

from simulator.arch import host as host_facts
from simulator.arch.cpu_detect import detect_cpu_host
from simulator.arch.loader import SPEC_ROOT, list_arch_files, load_arch
from simulator.errors import SpecError
from simulator.units import parse_quantity

PARTS = {
    "gpu": ["a100-sxm-80gb", "h100-sxm", "h200-sxm", "l4", "mi300x", "a100-sxm-40gb",
            "a100-pcie-80gb", "v100-sxm2-32gb", "h100-pcie", "mi210", "mi250x", "b200"],
    "tpu": ["tpu-v1", "tpu-v4", "tpu-v5e"],
    "fpga": ["alveo-u280", "alveo-u250"],
    "asic": ["eyeriss", "systolic-32x32"],
    "cpu": ["cpu-host"],
    "edge": ["jetson-agx-orin-64gb", "jetson-orin-nano-8gb", "coral-edge-tpu", "hailo-8",
             "apple-a17-pro-ane", "raspberry-pi-5"],
}
#: parts whose vendor publishes neither a memory size nor a bandwidth (Eyeriss: a chip; Hailo-8:
#: no DRAM at all; Apple: no memory figures for iPhones)
NO_PUBLISHED_MEMORY = {"eyeriss", "hailo-8", "apple-a17-pro-ane"}
SYSTEMS = {"dgx-a100": ("a100-sxm-80gb", 300e9, 6.5), "dgx-h100": ("h100-sxm", 450e9, 10.2)}
DEVICES = [p for names in PARTS.values() for p in names]
ALL = DEVICES + list(SYSTEMS)
TOL = 0.015  # derived vs published


def _load(name: str):
    """Shipped part; the host CPU with detection off, so its YAML defaults are checked."""
    return load_arch(name, ["params.detect=false"] if name == "cpu-host" else [])


def _header(path: Path) -> str:
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return "\n".join(lines)


# -- the shipped set -------------------------------------------------------------------------
def test_every_required_file_is_shipped_where_expected():
    files = list_arch_files()
    for folder, names in {**PARTS, "systems": list(SYSTEMS)}.items():
        for name in names:
            assert name in files, f"{name} missing"
            assert files[name] == SPEC_ROOT / folder / f"{name}.yaml"


@pytest.mark.parametrize("name", ALL)
def test_loads_and_name_matches_file(name):
    s = load_arch(name)  # cpu-host with detection on: must not fail on this machine
    assert s.name == name


@pytest.mark.parametrize("name", ALL)
def test_provenance_header(name):
    header = _header(list_arch_files()[name])
    for section in ("Sources", "Modelling decisions", "Derived vs published"):
        assert section in header, f"{name}: header lacks {section!r}"
    checks = re.findall(r"vs [^\n]*?:\s*([+-]?\d+(?:\.\d+)?)%", header)
    assert checks, f"{name}: no 'derived ... vs published: x%' line"
    for pct in checks:  # the header's own arithmetic stays within tolerance
        assert abs(float(pct)) <= TOL * 100, f"{name}: header reports {pct}%"


# -- derived vs published --------------------------------------------------------------------
@pytest.mark.parametrize("name", DEVICES)
def test_derived_peaks_match_published(name):
    d = _load(name).device
    peaks = d.published.get("peak", {})
    assert peaks, f"{name}: published.peak is empty"
    for dtype, published in peaks.items():
        derived, _cls = d.peak(dtype, "matrix")
        if "dsp_fmax" in d.params:  # FPGA datasheet peaks are at the DSP fmax, not the design clock
            derived *= d.params["dsp_fmax"] / d.units("matrix")[0].clock_hz
        assert derived == pytest.approx(published, rel=TOL), f"{name} {dtype}"


@pytest.mark.parametrize("name", DEVICES)
def test_memory_power_clock_link_match_published(name):
    d = _load(name).device
    pub = d.published
    if "memory" in pub:
        assert d.dram.capacity_bytes == pytest.approx(pub["memory"], rel=TOL)
    if "memory_bandwidth" in pub:
        assert d.dram.bandwidth_Bps == pytest.approx(pub["memory_bandwidth"], rel=TOL)
    if "tdp" in pub:
        assert d.power.tdp_w == pytest.approx(pub["tdp"], rel=TOL)
    if "clock" in pub:
        assert any(u.clock_hz == pytest.approx(pub["clock"], rel=TOL) for u in d.compute)
    if "link_bandwidth" in pub:
        assert d.link is not None
        assert d.link.bandwidth_Bps == pytest.approx(pub["link_bandwidth"], rel=TOL)
    assert {"memory", "memory_bandwidth"} & set(pub) or name in NO_PUBLISHED_MEMORY


@pytest.mark.parametrize("name", DEVICES)
def test_physical_sanity(name):
    d = _load(name).device
    assert 0 <= d.power.static_w < d.power.tdp_w
    caps = [m.capacity_bytes for m in d.memory]
    assert caps[0] == max(caps), "outermost (DRAM) level first"
    assert all(m.bandwidth_Bps > 0 for m in d.memory)
    if d.family == "systolic":
        assert any(u.shape for u in d.units("matrix"))
        assert set(d.params["sram"]) == {"ifmap", "filter", "ofmap"}


#: parts whose power/energy blocks were set with the power model (simulator/power); the GPU
#: parts added since (a100-sxm-40gb, a100-pcie-80gb, v100, h100-pcie, mi210, mi250x, b200)
#: still carry datapath_overhead values fitted before the busy floor and crossbar terms
POWER_MODEL_PARTS = ["h100-sxm", "h200-sxm", "a100-sxm-80gb", "l4", "mi300x", "tpu-v4"]


@pytest.mark.parametrize("name", POWER_MODEL_PARTS)
def test_big_bf16_gemm_power_is_near_but_below_tdp(name):
    """The header arithmetic, end to end through the family mapper and the power model
    (simulator/power: idle + busy floor + dynamic energy over the latency): an 8192^3 bf16
    GEMM at the full clock lands at 75-120% of TDP (real parts run such GEMMs at their cap;
    the predictor keeps the measured time at the default limit and caps the power)."""
    from simulator import predict_op
    from simulator.mapping.base import MapOptions
    from simulator.mapping.registry import Mapper
    from simulator.power import op_power_w, power_model
    from workloads.ops import MatMul

    d = _load(name).device
    op = MatMul(m=8192, n=8192, k=8192, dtype="bf16")
    cost = Mapper(d, MapOptions()).cost(op)  # the mapper's rates, before the power-cap step
    assert cost.bound == "compute"
    # at the default limit (the TDP) the measured rates stand: the cap step keeps the time
    assert predict_op(op, name).latency_s == pytest.approx(cost.latency_s, rel=1e-12)
    watts = op_power_w(cost, power_model(d))
    # up to 1.4: GH100 parts hold 1,500-1,830 of 1,980 MHz on such GEMMs at 700 W (h100-sxm.yaml
    # header: ~1.3 x TDP at full clock); the 72 W L4 is strongly power-limited too
    assert 0.75 * d.power.tdp_w < watts < 1.4 * d.power.tdp_w


def test_h100_per_unit_clocks_and_a100_fp8_fallback():
    h100 = _load("h100-sxm").device
    clocks = {u.name: u.clock_hz for u in h100.compute}
    assert clocks["tensor_core"] == pytest.approx(1.83e9)
    assert clocks["cuda_core"] == pytest.approx(1.98e9)
    a100 = _load("a100-sxm-80gb").device
    assert a100.native_peak("fp8") == 0
    rate, cls = a100.peak("fp8")
    assert cls == "fp16" and rate == pytest.approx(312e12, rel=TOL)


def test_tpu_v5e_clock_is_derived_from_the_bf16_peak():
    d = _load("tpu-v5e").device
    mxu = d.units("matrix")[0]
    assert mxu.shape == (128, 128) and mxu.count == 4
    assert mxu.clock_hz == pytest.approx(197e12 / (4 * 128 * 128 * 2), rel=TOL)


@pytest.mark.parametrize("name", list(SYSTEMS))
def test_systems(name):
    device, link_bw, tdp_kw = SYSTEMS[name]
    s = load_arch(name)
    assert s.kind == "system" and s.count == 8 and s.topology == "switch"
    assert s.device.name == device
    assert s.link.bandwidth_Bps == pytest.approx(link_bw)
    assert s.host_link is not None and s.host_link.bandwidth_Bps > 0
    assert s.tdp_w == pytest.approx(tdp_kw * 1e3, rel=TOL)
    assert s.pricing.price_usd > 0 and s.pricing.usd_per_hour > 0
    raw = yaml.safe_load(list_arch_files()[name].read_text(encoding="utf-8"))["published"]
    assert s.tdp_w == pytest.approx(parse_quantity(raw["tdp"], "power"), rel=TOL)
    assert s.memory_capacity_bytes == pytest.approx(parse_quantity(raw["memory"], "bytes"))


# -- overrides and bad inputs ----------------------------------------------------------------
def test_set_override_changes_the_value_and_only_that_load():
    s = load_arch("h100-sxm", ["memory.hbm.bandwidth=4 TB/s"])
    assert s.device.dram.bandwidth_Bps == 4e12
    assert load_arch("h100-sxm").device.dram.bandwidth_Bps == 3.35e12
    s = load_arch("h100-sxm", ["compute.tensor_core.count=264"])
    assert s.device.peak("bf16")[0] == pytest.approx(989.4e12 / 2, rel=TOL)


def test_override_value_is_validated():
    with pytest.raises(SpecError) as e:
        load_arch("h100-sxm", ["memory.hbm.bandwidth=fast"])
    assert "memory.hbm.bandwidth" in str(e.value) and "'fast'" in str(e.value)


def _raw(name: str) -> dict:
    return yaml.safe_load(list_arch_files()[name].read_text(encoding="utf-8"))


def _write(tmp_path: Path, raw: dict, fname: str = "bad.yaml") -> Path:
    p = tmp_path / fname
    p.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return p


def test_malformed_yaml_names_file_and_line(tmp_path):
    p = tmp_path / "broken.yaml"
    p.write_text("name: broken\nkind: gpu\ncompute: [\n  {name: x, unit: matrix\n", encoding="utf-8")
    with pytest.raises(SpecError) as e:
        load_arch(p)
    msg = str(e.value)
    assert "broken.yaml" in msg and re.search(r"line \d+", msg) and "malformed YAML" in msg


def test_unknown_field_is_named(tmp_path):
    raw = _raw("h100-sxm")
    raw["frobnicate"] = 3
    with pytest.raises(SpecError) as e:
        load_arch(_write(tmp_path, raw))
    assert "frobnicate: unknown field" in str(e.value)


def test_unit_typo_names_field_path_and_value(tmp_path):
    raw = _raw("h100-sxm")
    raw["memory"][0]["bandwidth"] = "3.35 TB"  # a size, not a bandwidth
    with pytest.raises(SpecError) as e:
        load_arch(_write(tmp_path, raw))
    msg = str(e.value)
    assert "bad.yaml" in msg
    assert "memory.hbm.bandwidth: expected a bandwidth" in msg and "'3.35 TB'" in msg


def test_unknown_part_lists_shipped_names():
    with pytest.raises(SpecError) as e:
        load_arch("h100")
    msg = str(e.value)
    assert "unknown part 'h100'" in msg
    for name in ("h100-sxm", "tpu-v5e", "dgx-h100", "cpu-host"):
        assert name in msg


def test_all_errors_of_a_file_are_reported_at_once(tmp_path):
    raw = _raw("tpu-v4")
    raw["colour"] = "blue"
    raw["memory"][0]["bandwidth"] = "1.2 TB"
    raw["power"]["tdp"] = "lots"
    raw["compute"][0]["count"] = -8
    raw["params"]["dataflow"] = "rs"
    with pytest.raises(SpecError) as e:
        load_arch(_write(tmp_path, raw))
    problems = " | ".join(e.value.problems)
    assert len(e.value.problems) >= 5, problems
    for needle in ("colour", "memory.hbm.bandwidth", "power.tdp", "compute.mxu.count",
                   "params.dataflow"):
        assert needle in problems


@pytest.mark.parametrize("name", ["h100-sxm", "tpu-v4", "alveo-u280", "cpu-host"])
def test_kind_efficiency_is_a_param_of_every_family(name):
    s = load_arch(name, ["params.kind_efficiency={softmax: 0.25, embedding: 3, attention: 1}"])
    assert dict(s.device.params["kind_efficiency"]) == {"softmax": 0.25, "embedding": 3.0,
                                                        "attention": 1.0}
    assert "kind_efficiency" not in _load(name).device.params  # absent: 1.0 for every kind


@pytest.mark.parametrize("value, needle", [
    ("{matmul: 0.5}", "params.kind_efficiency.matmul: expected an op kind (elementwise, norm, "
                      "softmax, pool, embedding, memcpy, attention), got 'matmul'"),
    ("{softmax: 4.5}", "params.kind_efficiency.softmax: expected a number in (0, 4], got 4.5"),
    ("{norm: 0}", "params.kind_efficiency.norm: expected a number in (0, 4], got 0"),
    ("{norm: -0.3}", "params.kind_efficiency.norm: expected a number in (0, 4]"),
    ("{pool: fast}", "params.kind_efficiency.pool: expected a number in (0, 4], got 'fast'"),
    ("0.5", "params.kind_efficiency: expected a mapping op kind -> number in (0, 4], got 0.5"),
])
def test_bad_kind_efficiency_names_the_kind(tmp_path, value, needle):
    raw = _raw("h100-sxm")
    raw["params"]["kind_efficiency"] = yaml.safe_load(value)
    with pytest.raises(SpecError) as e:
        load_arch(_write(tmp_path, raw))
    assert needle in str(e.value) and "bad.yaml" in str(e.value)
    with pytest.raises(SpecError, match=re.escape(needle)):  # --set gets the same checks
        load_arch("cpu-host", [f"params.kind_efficiency={value}"])


def test_kind_efficiency_kinds_are_the_streaming_kinds_and_attention():
    from simulator.arch.spec import KIND_EFFICIENCY_KINDS
    from simulator.mapping.common import STREAMING_KINDS

    assert KIND_EFFICIENCY_KINDS == (*STREAMING_KINDS, "attention")


# -- host CPU detection ----------------------------------------------------------------------
def _fake_machine(monkeypatch, files: dict[str, str], cpus: set[int] | None):
    monkeypatch.setattr(host_facts, "_read", lambda path: files.get(path))
    monkeypatch.setattr(host_facts, "_glob",
                        lambda pattern: sorted(p for p in {f.rsplit("/", 1)[0] for f in files}
                                               if fnmatch.fnmatch(p, pattern)))
    monkeypatch.setattr(host_facts, "affinity", lambda: cpus)


def _cache(files, index, level, ctype, size, shared):
    d = f"/sys/devices/system/cpu/cpu0/cache/index{index}"
    files.update({f"{d}/level": f"{level}\n", f"{d}/type": f"{ctype}\n", f"{d}/size": f"{size}\n",
                  f"{d}/shared_cpu_list": f"{shared}\n"})


def _topology(files, cpu, core, pkg=0):
    d = f"/sys/devices/system/cpu/cpu{cpu}/topology"
    files.update({f"{d}/core_id": f"{core}\n", f"{d}/physical_package_id": f"{pkg}\n"})


@pytest.fixture
def host():
    return load_arch("cpu-host", ["params.detect=false"])


def test_detects_an_avx512_server_with_smt_and_amx(monkeypatch, host):
    files = {
        "/proc/cpuinfo": "processor\t: 0\nmodel name\t: Fake Xeon\nflags\t\t: sse2 avx avx2 fma "
                         "avx512f avx512_vnni avx512_bf16 amx_bf16 amx_int8 amx_tile\n"
                         "cpu MHz\t\t: 2000.000\n",
        "/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq": "3500000\n",
        "/proc/meminfo": "MemTotal:       67108864 kB\nMemFree: 1 kB\n",
    }
    for cpu in range(8):  # 4 cores x 2 hyperthreads: cpu n and n+4 share core n
        _topology(files, cpu, cpu % 4)
    _cache(files, 0, 1, "Data", "48K", "0,4")
    _cache(files, 1, 1, "Instruction", "32K", "0,4")
    _cache(files, 2, 2, "Unified", "2048K", "0,4")
    _cache(files, 3, 3, "Unified", "107520K", "0-7")
    _fake_machine(monkeypatch, files, set(range(8)))

    d = detect_cpu_host(host).device
    simd = next(u for u in d.compute if u.name == "simd")
    assert simd.count == 4 and simd.clock_hz == 3.5e9
    assert dict(simd.flops_per_cycle) == {"fp32": 64, "bf16": 128, "fp16": 64, "int8": 256}
    amx = next(u for u in d.compute if u.name == "amx")
    assert amx.unit == "matrix" and amx.flops_per_cycle["bf16"] == 1024
    assert d.peak("bf16", "matrix") == (pytest.approx(4 * 1024 * 3.5e9), "bf16")
    mem = {m.name: m for m in d.memory}
    assert mem["dram"].capacity_bytes == 64 * 2**30
    assert mem["dram"].bandwidth_Bps == host.device.dram.bandwidth_Bps  # not detectable
    assert mem["l1"].capacity_bytes == 4 * 48 * 2**10
    assert mem["l2"].capacity_bytes == 4 * 2 * 2**20
    assert mem["l3"].capacity_bytes == 105 * 2**20
    assert mem["l1"].bandwidth_Bps == pytest.approx(64 * 4 * 3.5e9)
    det = d.params["detected"]
    assert det["model"] == "Fake Xeon" and det["cores"] == 4 and det["threads"] == 8
    assert det["simd_bits"] == 512 and det["fallbacks"] == ()
    assert d.params["simd_bits"] == 512 and d.params["threads"] == 8


def test_detects_an_arm_host_without_l3_or_clock(monkeypatch, host):
    files = {"/proc/cpuinfo": "processor\t: 0\nFeatures\t: fp asimd asimddp asimdhp\n",
             "/proc/meminfo": "MemTotal: 8388608 kB\n"}
    _cache(files, 0, 1, "Data", "64K", "0")
    _cache(files, 1, 2, "Unified", "1024K", "0")
    _fake_machine(monkeypatch, files, {0, 1})

    d = detect_cpu_host(host).device
    simd = d.compute[0]
    assert simd.count == 2  # no topology files: logical CPUs
    assert simd.clock_hz == host.device.compute[0].clock_hz  # fell back to the YAML clock
    assert simd.flops_per_cycle["fp32"] == 2 * 2 * 128 / 32
    assert simd.flops_per_cycle["int8"] == 4 * simd.flops_per_cycle["fp32"]  # asimddp
    assert simd.flops_per_cycle["fp16"] == 2 * simd.flops_per_cycle["fp32"]  # asimdhp
    assert [m.name for m in d.memory] == ["dram", "l2", "l1"]  # the machine has no L3
    assert d.params["detected"]["fallbacks"] == ("clock",)


def test_unreadable_machine_keeps_every_yaml_default(monkeypatch, host):
    _fake_machine(monkeypatch, {}, None)
    d = detect_cpu_host(host).device
    assert d.compute == host.device.compute
    assert d.memory == host.device.memory
    assert set(d.params["detected"]["fallbacks"]) >= {"cores", "flags", "clock", "caches",
                                                      "memory"}


def test_cgroup_limits_cap_cores_and_memory(monkeypatch, host):
    files = {"/proc/cpuinfo": "flags\t: avx avx2 fma\ncpu MHz\t: 3000.0\n",
             "/proc/meminfo": "MemTotal: 134217728 kB\n",
             "/sys/fs/cgroup/cpu.max": "150000 100000\n",
             "/sys/fs/cgroup/memory.max": f"{4 * 2**30}\n"}
    _fake_machine(monkeypatch, files, set(range(16)))
    d = detect_cpu_host(host).device
    assert d.compute[0].count == 2  # 1.5 CPUs of quota -> 2 cores' worth of FMA units
    assert d.dram.capacity_bytes == 4 * 2**30
    assert "cgroup" in d.params["detected"]["sources"]["memory"]


def test_garbage_files_never_crash(monkeypatch, host):
    files = {"/proc/cpuinfo": "flags: \ncpu MHz: fast\n", "/proc/meminfo": "MemTotal: lots\n",
             "/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq": "n/a\n",
             "/sys/fs/cgroup/cpu.max": "max 100000\n"}
    _cache(files, 0, 1, "Data", "huge", "x-y")
    _topology(files, 0, "a")
    _fake_machine(monkeypatch, files, {0})
    d = detect_cpu_host(host).device
    assert d.compute[0].count == 1
    assert d.compute[0].clock_hz == host.device.compute[0].clock_hz
    assert d.dram.capacity_bytes == host.device.dram.capacity_bytes


def test_loader_runs_detection_for_the_shipped_host():
    d = load_arch("cpu-host").device
    det = d.params["detected"]
    assert det["cores"] >= 1 and d.compute[0].count == det["cores"]
    assert d.peak("fp32")[0] > 0


@pytest.mark.parametrize("value, needle", [
    ("{sigmoid: 10}", "params.special_cost.sigmoid: expected a function (exp, tanh, erf, "
                      "rsqrt, sqrt), got 'sigmoid'"),
    ("{tanh: 0}", "params.special_cost.tanh: expected a number of vector FLOPs in (0, 10000], "
                  "got 0"),
    ("{exp: lots}", "params.special_cost.exp: expected a number of vector FLOPs"),
    ("56", "params.special_cost: expected a mapping function -> vector FLOPs per evaluation"),
])
def test_bad_special_cost_names_the_function(tmp_path, value, needle):
    raw = _raw("alveo-u280")
    raw.setdefault("params", {})["special_cost"] = yaml.safe_load(value)
    with pytest.raises(SpecError) as e:
        load_arch(_write(tmp_path, raw))
    assert needle in str(e.value) and "bad.yaml" in str(e.value)


@pytest.mark.parametrize("setting, needle", [
    ("params.page_fault_threshold=32 MB/s", "params.page_fault_threshold: expected"),
    ("params.gemv_threads=0", "params.gemv_threads: expected a positive integer, got 0"),
    ("params.write_allocate=maybe", "params.write_allocate: expected true or false"),
    ("params.pack_bandwidth=7 GHz", "params.pack_bandwidth: expected"),
])
def test_bad_cpu_library_params_are_named(setting, needle):
    with pytest.raises(SpecError, match=re.escape(needle)):
        load_arch("cpu-host", [setting])


def test_cpu_host_library_params_load_with_units():
    p = load_arch("cpu-host").device.params
    assert p["page_fault_threshold"] == 32 * 2**20 and p["pack_bandwidth"] == 7.3e9
    assert p["core_bandwidth"] == 16e9 and p["gemv_threads"] == 1
    assert dict(p["special_cost"])["tanh"] > dict(p["special_cost"])["exp"]
