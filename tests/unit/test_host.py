"""Host facts (simulator.arch.host): parsing of fake /proc and /sys trees, and never raising
when files are missing or garbled."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.arch import host
from simulator.arch.host import CacheInfo

CPU = "sys/devices/system/cpu"

X86_CPUINFO = """\
processor\t: 0
vendor_id\t: GenuineIntel
model\t\t: 143
model name\t: Fake Xeon 8480
cpu MHz\t\t: 2000.000
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512_bf16 amx_bf16 amx_tile
processor\t: 1
model\t\t: 143
model name\t: Fake Xeon 8480
cpu MHz\t\t: 3100.500
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512_bf16 amx_bf16 amx_tile
"""

ARM_CPUINFO = """\
processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes sve asimddp asimdhp bf16
CPU implementer\t: 0x41
processor\t: 1
Features\t: fp asimd evtstrm aes sve asimddp asimdhp bf16
"""


@pytest.fixture
def root(tmp_path, monkeypatch):
    """An empty fake machine: ``host`` reads under ``tmp_path``; caches cleared around."""
    monkeypatch.setattr(host, "ROOT", str(tmp_path))
    host.clear_caches()
    yield tmp_path
    host.clear_caches()


def put(root: Path, path: str, text: str) -> None:
    f = root / path
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(text)


def cache(root: Path, index: int, level: int | str, ctype: str, size: str | None,
          shared: str | None) -> None:
    d = f"{CPU}/cpu0/cache/index{index}"
    put(root, f"{d}/level", f"{level}\n")
    put(root, f"{d}/type", f"{ctype}\n")
    if size is not None:
        put(root, f"{d}/size", f"{size}\n")
    if shared is not None:
        put(root, f"{d}/shared_cpu_list", f"{shared}\n")


# -- /proc/cpuinfo ----------------------------------------------------------------------------
def test_x86_flags_model_and_cpu_mhz(root):
    put(root, "proc/cpuinfo", X86_CPUINFO)
    assert host.cpu_flags() == {"fpu", "sse2", "avx", "avx2", "fma", "avx512f", "avx512_bf16",
                                "amx_bf16", "amx_tile"}
    assert host.cpu_model() == "Fake Xeon 8480"  # "model : 143" is not the model name
    assert host.cpuinfo_max_hz() == pytest.approx(3100.5e6)
    info = host.cpuinfo()
    assert info["processor"] == ["0", "1"] and info["model"] == ["143", "143"]


def test_arm_features_and_no_model_line(root):
    put(root, "proc/cpuinfo", ARM_CPUINFO)
    assert host.cpu_flags() == {"fp", "asimd", "evtstrm", "aes", "sve", "asimddp", "asimdhp",
                                "bf16"}
    info = host.cpuinfo()
    assert host.model_of(info) is None
    assert isinstance(host.cpu_model(), str) and host.cpu_model()  # platform fallback
    assert host.cpuinfo_max_hz(info) is None  # Arm has no cpu MHz


@pytest.mark.parametrize("text, model", [
    ("Hardware\t: BCM2835\nModel\t\t: Raspberry Pi 4\n", "BCM2835"),  # first in file order
    ("system type\t: MT7621\ncpu model\t: MIPS 1004Kc\n", "MIPS 1004Kc"),
    ("model\t\t: 85\n", None),
])
def test_model_of_follows_file_order_and_exact_keys(text, model):
    assert host.model_of(host.parse_cpuinfo(text)) == model


def test_flags_of_takes_the_first_flags_line_and_empty_when_blank():
    assert host.flags_of(host.parse_cpuinfo("flags : a b\nFeatures : c\n")) == {"a", "b"}
    assert host.flags_of(host.parse_cpuinfo("flags :   \n")) == frozenset()
    assert host.flags_of({}) == frozenset()


def test_cpu_flags_is_cached_until_cleared(root):
    put(root, "proc/cpuinfo", "flags : avx2\n")
    assert host.cpu_flags() == {"avx2"}
    put(root, "proc/cpuinfo", "flags : avx512f\n")
    assert host.cpu_flags() == {"avx2"}
    host.clear_caches()
    assert host.cpu_flags() == {"avx512f"}


# -- /sys/devices/system/cpu ------------------------------------------------------------------
def test_cache_index_files(root):
    cache(root, 0, 1, "Data", "48K", "0,4")
    cache(root, 1, 1, "Instruction", "32K", "0,4")
    cache(root, 2, 2, "Unified", "2048K", "0-1,4-5")
    cache(root, 3, 3, "Unified", "105M", "0-7")
    cache(root, 4, 4, "Unified", None, "0-7")          # no size: left out
    cache(root, 5, 2, "Unified", "1 MiB", "x-y")       # bad shared list: 1 CPU
    assert host.cpu_caches() == (
        CacheInfo("1", "Data", 48 * 2**10, 2), CacheInfo("1", "Instruction", 32 * 2**10, 2),
        CacheInfo("2", "Unified", 2 * 2**20, 4), CacheInfo("3", "Unified", 105 * 2**20, 8),
        CacheInfo("2", "Unified", 2**20, 1))
    assert host.cpu_cache_bytes() == {"L1d": 48 * 2**10, "L1i": 32 * 2**10, "L2": 2**20,
                                      "L3": 105 * 2**20}


def test_cache_without_shared_list_counts_one_cpu(root):
    cache(root, 0, 1, "Data", "32K", None)
    assert host.cpu_caches() == (CacheInfo("1", "Data", 32 * 2**10, 1),)


@pytest.mark.parametrize("text, size", [
    ("32K", 32 * 2**10), ("32k", 32 * 2**10), ("16M", 16 * 2**20), ("48 KiB", 48 * 2**10),
    ("1G", 2**30), ("512", 512), ("", None), ("huge", None), ("-1K", None), ("1.5M", None),
])
def test_parse_cache_size(text, size):
    assert host.parse_cache_size(text) == size


def test_parse_cpu_list():
    assert host.parse_cpu_list("0-3,8,10-11\n") == {0, 1, 2, 3, 8, 10, 11}
    assert host.parse_cpu_list("") == set()
    with pytest.raises(ValueError):
        host.parse_cpu_list("a-b")


def test_cpufreq_and_topology(root):
    put(root, f"{CPU}/cpu0/cpufreq/cpuinfo_max_freq", "3500000\n")
    put(root, f"{CPU}/cpu1/cpufreq/cpuinfo_max_freq", "n/a\n")
    put(root, f"{CPU}/cpu0/topology/core_id", "3\n")
    put(root, f"{CPU}/cpu0/topology/physical_package_id", "1\n")
    put(root, f"{CPU}/cpu1/topology/core_id", "3\n")  # no package id
    assert host.cpufreq_max_hz() == 3.5e9
    assert host.cpufreq_max_hz(1) is None
    assert host.cpufreq_max_hz(2) is None
    assert host.cpu_topology(0) == ("1", "3")
    assert host.cpu_topology(1) is None


def test_sve_vector_length(root):
    assert host.sve_vector_bytes() is None
    put(root, "proc/sys/abi/sve_default_vector_length", "32\n")
    assert host.sve_vector_bytes() == 32
    put(root, "proc/sys/abi/sve_default_vector_length", "wide\n")
    assert host.sve_vector_bytes() is None


# -- memory and cgroups -----------------------------------------------------------------------
def test_meminfo(root):
    put(root, "proc/meminfo", "MemTotal:       67108864 kB\nMemFree: lots\n"
                              "MemAvailable:   1024 kB\nHugePages_Total:       4\n")
    assert host.meminfo() == {"MemTotal": 64 * 2**30, "MemAvailable": 2**20,
                              "HugePages_Total": 4}
    assert host.meminfo_bytes("MemTotal") == 64 * 2**30
    assert host.meminfo_bytes("MemFree") is None
    assert host.available_memory_bytes() == 2**20


def test_cgroup_v2(root):
    put(root, "sys/fs/cgroup/cpu.max", "150000 100000\n")
    put(root, "sys/fs/cgroup/memory.max", f"{4 * 2**30}\n")
    assert host.cgroup_cpu_quota() == 1.5
    assert host.cgroup_memory_limit() == (4 * 2**30, "/sys/fs/cgroup/memory.max")


def test_cgroup_unlimited_v2_and_v1_fallbacks(root):
    put(root, "sys/fs/cgroup/cpu.max", "max 100000\n")
    put(root, "sys/fs/cgroup/memory.max", "max\n")
    put(root, "sys/fs/cgroup/memory/memory.limit_in_bytes", "1073741824\n")
    assert host.cgroup_cpu_quota() is None
    assert host.cgroup_memory_limit() == (2**30, "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def test_cgroup_v1_cpu_quota(root):
    put(root, "sys/fs/cgroup/cpu/cpu.cfs_quota_us", "200000\n")
    put(root, "sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000\n")
    assert host.cgroup_cpu_quota() == 2.0
    put(root, "sys/fs/cgroup/cpu/cpu.cfs_quota_us", "-1\n")
    assert host.cgroup_cpu_quota() is None
    put(root, "sys/fs/cgroup/cpu/cpu.cfs_quota_us", "1\n")
    put(root, "sys/fs/cgroup/cpu/cpu.cfs_period_us", "0\n")
    assert host.cgroup_cpu_quota() is None


# -- missing and unreadable files -------------------------------------------------------------
def test_missing_files_give_empty_or_none(root):
    assert host.cpuinfo() == {}
    assert host.cpu_flags() == frozenset()
    assert isinstance(host.cpu_model(), str) and host.cpu_model()
    assert host.cpuinfo_max_hz() is None
    assert host.cpufreq_max_hz() is None
    assert host.cpu_caches() == () and host.cpu_cache_bytes() == {}
    assert host.cpu_topology(0) is None
    assert host.meminfo() is None and host.meminfo_bytes("MemTotal") is None
    assert host.cgroup_cpu_quota() is None and host.cgroup_memory_limit() is None
    assert host.sve_vector_bytes() is None


def test_a_folder_where_a_file_should_be_reads_as_missing(root):
    (root / "proc" / "cpuinfo").mkdir(parents=True)
    (root / "proc" / "meminfo").mkdir()
    cache(root, 0, 1, "Data", "32K", "0")
    (root / CPU / "cpu0" / "cache" / "index0" / "size").unlink()
    (root / CPU / "cpu0" / "cache" / "index0" / "size").mkdir()
    assert host.cpu_flags() == frozenset()
    assert host.meminfo() is None
    assert host.cpu_caches() == ()


def test_garbled_text_never_raises(root):
    put(root, "proc/cpuinfo", "\x00\xff no colon here\nflags\n:\ncpu MHz : fast\n")
    put(root, "proc/meminfo", "MemTotal:\n:::\n")
    put(root, f"{CPU}/cpu0/cpufreq/cpuinfo_max_freq", "")
    assert host.cpu_flags() == frozenset()
    assert host.cpuinfo_max_hz() is None
    assert host.meminfo() == {}
    assert host.cpufreq_max_hz() is None


# -- this process -----------------------------------------------------------------------------
def test_affinity_falls_back_to_cpu_count(monkeypatch):
    def no_affinity(pid):
        raise OSError("not supported")

    monkeypatch.setattr(host.os, "sched_getaffinity", no_affinity, raising=False)
    monkeypatch.setattr(host.os, "cpu_count", lambda: 3)
    assert host.affinity() == {0, 1, 2} and host.affinity_count() == 3
    monkeypatch.setattr(host.os, "cpu_count", lambda: None)
    assert host.affinity() is None and host.affinity_count() == 1


def test_this_machine_answers_without_raising():
    assert host.affinity_count() >= 1
    assert isinstance(host.cpu_flags(), frozenset)
    assert isinstance(host.cpu_cache_bytes(), dict)
    load = host.load_average()
    assert load is None or load >= 0


# -- cpu_detect reads through host ------------------------------------------------------------
def test_cpu_detect_reads_the_fake_tree(root, monkeypatch):
    from simulator.arch.cpu_detect import detect_cpu_host
    from simulator.arch.loader import load_arch

    put(root, "proc/cpuinfo", X86_CPUINFO)
    put(root, "proc/meminfo", "MemTotal: 8388608 kB\n")
    put(root, f"{CPU}/cpu0/cpufreq/cpuinfo_max_freq", "3500000\n")
    cache(root, 0, 1, "Data", "48K", "0")
    cache(root, 1, 2, "Unified", "2048K", "0")
    monkeypatch.setattr(host, "affinity", lambda: {0, 1})
    spec = load_arch("cpu-host", ["params.detect=false"])
    d = detect_cpu_host(spec).device
    det = d.params["detected"]
    assert det["model"] == "Fake Xeon 8480" and det["cores"] == 2
    assert det["clock_hz"] == 3.5e9 and det["simd_bits"] == 512
    assert det["memory_bytes"] == 8 * 2**30
    assert dict(det["caches"]) == {"l1": 2 * 48 * 2**10, "l2": 2 * 2 * 2**20}
    assert "amx_bf16" in det["isa"]
