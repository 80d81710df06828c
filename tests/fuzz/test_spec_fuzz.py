"""Fuzz: malformed architecture specs, ``--set`` overrides and unit strings never give a
traceback, a hang or a wrong number.

Shipped specs (``arch_specs/**/*.yaml``) are mutated deterministically (seeded): a field is
replaced by a bad value, deleted, set to null, or written twice. Loading each mutant either
raises :class:`SpecError` (one line per problem, each naming the file) or succeeds with every
derived number finite and positive where physics says so. Values that no field accepts (NaN,
infinities, negatives, null, absurd magnitudes) must fail and name the field they were put in.
"""

from __future__ import annotations

import copy
import math
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from _timeouts import no_hang
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.arch.loader import (
    MAX_COUNT,
    MAX_SPEC_BYTES,
    SPEC_ROOT,
    list_arch_files,
    load_arch,
)
from simulator.arch.spec import System
from simulator.cli import main
from simulator.errors import SpecError
from simulator.units import KINDS, LIMITS, MAX_TEXT, UnitError, parse_quantity
from workloads.importers.hf_config import strict_yaml_load

SPECS = {name: path for name, path in list_arch_files().items()}
DTYPES = ("fp32", "tf32", "bf16", "fp16", "fp8", "int8", "int4")

#: Values no spec field accepts (outside ``sources``): each must be refused, naming the field.
ALWAYS_BAD: list[Any] = [None, math.nan, math.inf, -math.inf, -1, -2.5, 10**30, 1e300, []]
#: Values some fields accept: the load may succeed, but never with a non-finite number.
SOMETIMES_BAD: list[Any] = [0, 0.0, 2.5, 1, True, False, "", "3,35 TB/s", "fast", "1:30",
                            "-5 W", "1e300", "nan", "inf", " ",
                            "1 bit", "0x10", "1e-30", {}, [1, 2], "x" * 300, "1" * 50_000 + " x y",
                            "5 W", "3.35 TB/s", "1 pJ/B", "$5", "64 KiB", "7 nm", "1 GHz",
                            "2001-13-45", 1e-300, 2**62]




def _raw(name: str) -> Any:
    return strict_yaml_load(SPECS[name].read_text(encoding="utf-8"))


def _leaves(node: Any, path: tuple = ()) -> Iterator[tuple]:
    """Paths (tuples of keys and list indices) of every scalar or empty container."""
    if isinstance(node, dict) and node:
        for k, v in node.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(node, list) and node:
        for i, v in enumerate(node):
            yield from _leaves(v, (*path, i))
    else:
        yield path


def _nodes(node: Any, path: tuple = ()) -> Iterator[tuple]:
    """Paths of every node below the top."""
    items = node.items() if isinstance(node, dict) else enumerate(node) \
        if isinstance(node, list) else ()
    for k, v in items:
        yield (*path, k)
        yield from _nodes(v, (*path, k))


def _get(raw: Any, path: tuple) -> Any:
    node = raw
    for k in path:
        node = node[k]
    return node


def _set(raw: Any, path: tuple, value: Any) -> None:
    node = raw
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value


def _delete(raw: Any, path: tuple) -> None:
    node = raw
    for k in path[:-1]:
        node = node[k]
    del node[path[-1]]


def _field(raw: Any, path: tuple) -> str:
    """The dotted field path the loader reports for ``path`` (list items by their name)."""
    parts, node = [], raw
    for k in path:
        if isinstance(node, list):
            item = node[k]
            name = item.get("name") if isinstance(item, dict) else None
            parts.append(name if isinstance(name, str) and name else str(k))
        else:
            parts.append(str(k))
        node = node[k]
    return ".".join(parts)


def _write(tmp_path: Path, tag: str, raw: Any) -> Path:
    """A fresh file for each mutant (loads are cached by path)."""
    p = tmp_path / f"{tag}.yaml"
    p.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return p


def _check_error(e: SpecError) -> str:
    msg = str(e)
    assert e.problems, msg
    lines = msg.splitlines()
    assert len(lines) == len(e.problems), "one line per problem"
    assert all(line.startswith(f"{e.source}: ") for line in lines), msg
    assert "Traceback" not in msg
    return msg


def _check_system(s: System) -> None:
    """Every number a loaded spec yields is finite, and positive where physics says so."""
    d = s.device
    assert d.compute and d.memory
    for u in d.compute:
        assert isinstance(u.count, int) and not isinstance(u.count, bool) and 0 < u.count
        assert math.isfinite(u.clock_hz) and u.clock_hz > 0
        for dt in u.flops_per_cycle:
            r = u.rate(dt)
            assert r is not None and math.isfinite(r) and r > 0, (u, dt)
    for dt in DTYPES:
        for kind in ("matrix", "vector", "special"):
            peak, _ = d.peak(dt, kind)
            assert math.isfinite(peak) and peak >= 0
    for m in d.memory:
        assert math.isfinite(m.capacity_bytes) and m.capacity_bytes > 0
        assert math.isfinite(m.bandwidth_Bps) and m.bandwidth_Bps > 0
        assert math.isfinite(m.latency_s) and m.latency_s >= 0
        assert math.isfinite(m.energy_per_byte_j) and m.energy_per_byte_j >= 0
    for link in (d.link, s.link, s.host_link):
        if link is not None:
            assert math.isfinite(link.bandwidth_Bps) and link.bandwidth_Bps > 0
            assert math.isfinite(link.latency_s) and link.latency_s >= 0
    assert math.isfinite(d.power.tdp_w) and d.power.tdp_w > 0
    assert math.isfinite(d.power.static_w) and 0 <= d.power.static_w <= d.power.tdp_w
    assert math.isfinite(s.tdp_w) and s.tdp_w > 0
    assert all(math.isfinite(v) and v > 0 for v in d.energy.j_per_flop.values())
    assert math.isfinite(d.energy.special_multiplier) and d.energy.special_multiplier > 0
    for p in (d.pricing, s.pricing):
        if p is not None:
            for v in (p.price_usd, p.usd_per_hour):
                assert v is None or (math.isfinite(v) and v > 0)
            assert math.isfinite(p.lifetime_s) and p.lifetime_s > 0
    if d.peak("bf16")[0] > 0:
        assert math.isfinite(d.ridge_point("bf16"))
    assert 0 < s.count <= MAX_COUNT and math.isfinite(s.memory_capacity_bytes)


def _load(path: Path, overrides: list[str] | None = None) -> System | None:
    """Load a mutant: None on SpecError (checked for form), else the checked system."""
    try:
        with no_hang():
            s = load_arch(path, overrides or [])
    except SpecError as e:
        _check_error(e)
        return None
    _check_system(s)
    return s


# -- the shipped specs pass the same checks --------------------------------------------------
@pytest.mark.parametrize("name", sorted(SPECS))
def test_shipped_spec_is_sane(name):
    _check_system(load_arch(name, ["params.detect=false"] if name == "cpu-host" else []))


# -- values no field accepts fail and name the field -----------------------------------------
@pytest.mark.parametrize("name", sorted(SPECS))
def test_always_bad_values_fail_naming_the_field(tmp_path, name):
    rng = random.Random(f"always-{name}")
    raw0 = _raw(name)
    leaves = [p for p in _leaves(raw0) if p and p[0] != "sources"]
    for i in range(24):
        path = rng.choice(leaves)
        bad = rng.choice(ALWAYS_BAD)
        raw = copy.deepcopy(raw0)
        _set(raw, path, bad)
        field = _field(raw, path)
        with pytest.raises(SpecError) as e, no_hang():
            load_arch(_write(tmp_path, f"{i}-{name}", raw))
        msg = _check_error(e.value)
        # the field, or the list or mapping it sits in (e.g. params.tile_shapes), is named
        parts = field.split(".")
        named = [".".join(parts[:n]) for n in range(len(parts), min(2, len(parts)) - 1, -1)]
        assert any(re.search(rf"(^|: ){re.escape(f)}[.:\[ ]", line)
                   for f in named for line in msg.splitlines()), (field, bad, msg)


# -- random mutations: SpecError or a sane system, never anything else -----------------------
@pytest.mark.parametrize("name", sorted(SPECS))
def test_random_mutations_fail_cleanly_or_load_sane(tmp_path, name):
    rng = random.Random(f"mutate-{name}")
    raw0 = _raw(name)
    values = [v for p in _leaves(raw0) for v in [_get(raw0, p)] if p]
    for i in range(30):
        raw = copy.deepcopy(raw0)
        for _ in range(rng.randint(1, 3)):
            nodes = list(_nodes(raw))
            if not nodes:
                break
            path = rng.choice(nodes)
            op = rng.random()
            if op < 0.45:
                _set(raw, path, rng.choice(ALWAYS_BAD + SOMETIMES_BAD))
            elif op < 0.6:
                _set(raw, path, copy.deepcopy(rng.choice(values)))  # type confusion
            elif op < 0.8:
                _delete(raw, path)
            else:
                _set(raw, path, None)
        overrides = ["params.detect=false"] if name == "cpu-host" and rng.random() < 0.5 else []
        _load(_write(tmp_path, f"{i}-{name}", raw), overrides)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_duplicate_key_is_an_error_naming_the_line(tmp_path, name):
    rng = random.Random(f"dup-{name}")
    lines = SPECS[name].read_text(encoding="utf-8").splitlines()
    block = [i for i, line in enumerate(lines)
             if re.match(r"^\s*[A-Za-z_][\w-]*:(\s|$)", line) and not line.lstrip().startswith("-")]
    for j in range(5):
        i = rng.choice(block)
        text = "\n".join([*lines[:i + 1], lines[i], *lines[i + 1:]]) + "\n"
        p = tmp_path / f"{j}-{name}.yaml"
        p.write_text(text, encoding="utf-8")
        with pytest.raises(SpecError) as e:
            load_arch(p)
        msg = _check_error(e.value)
        assert re.search(rf"line {i + 2}, column \d+: malformed YAML \(duplicate key", msg) \
            or "malformed YAML" in msg, msg


# -- --set overrides get the same checks and name the override -------------------------------
@pytest.mark.parametrize("value, needle", [
    ("", "expected a value after '=', got an empty value"),
    ("   ", "expected a value after '=', got an empty value"),
    ("null", "got an empty value (null)"),
    (".nan", "not a finite number"),
    ("nan", "expected a bandwidth"),
    ("inf", "expected a bandwidth"),
    (".inf", "not a finite number"),
    ("-3.35 TB/s", "expected a non-negative bandwidth"),
    ("0", "expected a positive bandwidth"),
    ("3,35 TB/s", "a comma only separates thousands"),
    ("1e300 B/s", "between 1 bit/s and 1 EB/s"),
    ("1" * 50_000 + " x y", "(at most 200)"),
    ("&a [1]", "expected a bandwidth"),
])
def test_bad_override_value_names_the_override(value, needle):
    with pytest.raises(SpecError) as e, no_hang():
        load_arch("h100-sxm", [f"memory.hbm.bandwidth={value}"])
    msg = _check_error(e.value)
    assert needle in msg and "--set memory.hbm.bandwidth=" in msg, msg
    assert len(msg) < 1000


@pytest.mark.parametrize("setting, needle", [
    ("compute.tensor_core.count=2.5", "compute.tensor_core.count: expected a positive integer"),
    ("compute.0.count=true", "compute.tensor_core.count: expected a positive integer, got True"),
    ("compute.sfu.count=" + "9" * 30, "expected a positive integer of at most 1,000,000,000"),
    ("compute.tensor_core.clock=0", "compute.tensor_core.clock: expected a positive frequency"),
    ("compute.tensor_core.clock=5 THz", "between 1 Hz and 1 THz"),
    ("compute.tensor_core.flops_per_cycle.bf16=.inf", "flops_per_cycle.bf16: expected a positive"),
    ("power.static=-5 W", "power.static: expected a non-negative power"),
    ("power.tdp=1e9 W", "between 1 pW and 100 MW"),
    ("memory.hbm.energy_per_byte=-3 pJ/B", "expected a non-negative energy per byte"),
    ("memory.hbm.capacity=1e19 B", "between 1 bit and 1 EB"),
    ("cost.price=$1e11", "between $0.000001 and $10,000,000,000"),
    ("energy.special_multiplier=.nan", "energy.special_multiplier: expected a positive number"),
    ("energy.datapath_overhead=-1", "energy.datapath_overhead: expected a positive number"),
    ("params.sm_l2_bandwidth=0", "params.sm_l2_bandwidth: expected a positive bandwidth"),
    ("params.tile_shapes=[[true, 128]]", "params.tile_shapes: expected a list"),
    ("params.l2_level=", "expected a value after '='"),
    ("link=null", "link: expected a value, got an empty value"),
    ("description=[1, 2]", "description: expected a string"),
    ("name=", "expected a value after '='"),
])
def test_bad_override_is_refused(setting, needle):
    with pytest.raises(SpecError) as e:
        load_arch("h100-sxm", [setting])
    msg = _check_error(e.value)
    assert needle in msg and "--set " in msg, msg


@pytest.mark.parametrize("setting", ["=5", "a..b=1", ".x=1", "compute.x.count=1",
                                     "compute.99999999999999999999.count=1",
                                     "memory.hbm.bandwidth.x=1", "compute.\u00b2.count=1"])
def test_bad_override_path_is_refused(setting):
    with pytest.raises(SpecError) as e:
        load_arch("h100-sxm", [setting])
    assert "--set" in _check_error(e.value)


def test_static_power_zero_is_allowed():
    assert load_arch("h100-sxm", ["power.static=0 W"]).device.power.static_w == 0.0


# -- present-but-empty fields are errors, not defaults ---------------------------------------
@pytest.mark.parametrize("field", ["memory.0.bandwidth", "memory.0.latency", "compute.0.count",
                                   "compute.0.clock", "power.static", "cost", "energy", "params",
                                   "link", "description", "energy.datapath_overhead"])
def test_empty_field_in_a_file_is_an_error(tmp_path, field):
    raw = _raw("h100-sxm")
    path = tuple(int(k) if k.isdigit() else k for k in field.split("."))
    _set(raw, path, None)
    with pytest.raises(SpecError) as e:
        load_arch(_write(tmp_path, "empty", raw))
    msg = _check_error(e.value)
    assert f"{_field(raw, path)}: expected a value, got an empty value (null)" in msg, msg
    assert len(e.value.problems) == 1, msg  # reported once


# -- YAML bombs, sizes and odd files ----------------------------------------------------------
def test_alias_bomb_is_refused_quickly(tmp_path):
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 9) + "]")
    p = tmp_path / "laughs.yaml"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(SpecError, match=r"laughs\.yaml: line 1, column 4: malformed YAML "
                                        r"\(YAML anchors \(&a\) are not allowed\)"), no_hang(5):
        load_arch(p)


def test_deep_nesting_is_refused(tmp_path):
    p = tmp_path / "deep.yaml"
    p.write_text("name: x\nparams: " + "[" * 100_000 + "]" * 100_000 + "\n", encoding="utf-8")
    with pytest.raises(SpecError, match="nested deeper than"), no_hang(5):
        load_arch(p)


def test_huge_spec_file_is_refused_before_parsing(tmp_path):
    p = tmp_path / "huge.yaml"
    with open(p, "wb") as f:
        f.truncate(50 * 2**20)  # 50 MiB, sparse: nothing is written
    with pytest.raises(SpecError) as e, no_hang(5):
        load_arch(p)
    assert str(e.value) == (f"{p}: file is 52,428,800 bytes; spec files are limited to "
                            f"{MAX_SPEC_BYTES:,} bytes (1 MiB)")


@pytest.mark.parametrize("content, needle", [
    (b"", "got an empty file"),
    (b"name: x\n\xff\xfe: 1\n", "not UTF-8 text"),
    (b"- 1\n- 2\n", "expected a mapping of spec fields, got list"),
    (b"name: x\nclock: 2001-13-45\n", "cannot read '2001-13-45' as timestamp"),
    (b"name: x\ncount: " + b"1" * 5000 + b"\n", "as int"),
    (b"name: x\n? [1, 2]\n: 3\n", "a mapping key must be a plain value"),
    (b"name: !!python/name:os.system x\n", "could not determine a constructor"),
])
def test_odd_files_are_spec_errors(tmp_path, content, needle):
    p = tmp_path / "odd.yaml"
    p.write_bytes(content)
    with pytest.raises(SpecError) as e:
        load_arch(p)
    assert needle in _check_error(e.value)


def test_system_cannot_be_its_own_device(tmp_path):
    p = tmp_path / "loop.yaml"
    p.write_text(f"name: loop\nkind: system\ndevice: {p}\ncount: 2\n"
                 "link: {name: l, bandwidth: 1 GB/s}\n", encoding="utf-8")
    with pytest.raises(SpecError, match="a system's device must be a single part"), no_hang(5):
        load_arch(p)


def test_unknown_part_message_is_short():
    with pytest.raises(SpecError) as e:
        load_arch("x" * 100_000)
    assert len(str(e.value)) < 1000
    with pytest.raises(SpecError):
        load_arch("x" * 5000 + ".yaml")  # longer than a file name may be


# -- the CLI prints error: ... and exits 2 -----------------------------------------------------
@pytest.mark.parametrize("args", [
    ["--set", "memory.hbm.bandwidth="],
    ["--set", "memory.hbm.bandwidth=3,35 TB/s"],
    ["--set", "power.static=-5 W"],
    ["--set", "compute.tensor_core.count=2.5"],
])
def test_cli_bad_override_is_one_line_error(capsys, args):
    assert main(["run", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert all(line.startswith("error: ") for line in err.splitlines())


@pytest.mark.parametrize("text", [
    "name: x\nname: y\n",                   # duplicate key
    'a: &a [1, 2]\nb: [*a, *a]\n',          # aliases
    "name: bad\nkind: gpu\nfamily: gpu\nprocess_node: 4 nm\n"
    "compute: [{name: tc, unit: matrix, count: 2.5, clock: .nan, flops_per_cycle: {bf16: -1}}]\n"
    "memory: [{name: hbm, capacity: 80 GB, bandwidth: '3,35 TB/s', energy_per_byte: -1 pJ/B}]\n"
    "power: {tdp: 1e300 W, static: -90 W}\n",
])
def test_cli_bad_arch_file_is_error_exit_2(tmp_path, capsys, text):
    p = tmp_path / "bad.yaml"
    p.write_text(text, encoding="utf-8")
    assert main(["run", "--arch", str(p)]) == 2
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert lines and all(line.startswith(f"error: {p}: ") for line in lines), err
    assert "Traceback" not in err


# -- the unit parser ---------------------------------------------------------------------------
def test_long_digit_string_fails_fast():
    with no_hang(5):
        for text in ("1" * 100_000 + "x", "1" * 100_000 + " x y", " " * 100_000 + "1",
                     "1" * MAX_TEXT + " x y", "1," * 100 + " B"):
            with pytest.raises(UnitError):
                parse_quantity(text, "bytes")


@settings(max_examples=300, deadline=None, derandomize=True)
@given(text=st.text(alphabet=st.sampled_from(list("0123456789.,_eE+-$ xBbKMGTPkmunpfsWJHz/i")),
                    max_size=40),
       kind=st.sampled_from(sorted(KINDS)))
def test_unit_parser_returns_a_sane_number_or_unit_error(text, kind):
    try:
        x = parse_quantity(text, kind)
    except UnitError as e:
        assert "\n" not in str(e) and str(e).startswith("expected ")
        return
    lo, hi, _ = LIMITS[kind]
    assert math.isfinite(x) and (x == 0 or lo <= x <= hi)
    assert "," not in text or re.search(r"\d{1,3}(,\d{3})+", text)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(value=st.one_of(st.floats(), st.integers(), st.booleans(), st.none(),
                       st.lists(st.integers(), max_size=3)),
       kind=st.sampled_from(sorted(KINDS)))
def test_unit_parser_on_any_python_value(value, kind):
    try:
        x = parse_quantity(value, kind)
    except UnitError:
        return
    assert isinstance(value, (int, float)) and not isinstance(value, bool)
    assert math.isfinite(x) and 0 <= x <= LIMITS[kind][1]


def test_shipped_specs_use_no_anchors_or_duplicate_keys():
    for p in SPEC_ROOT.rglob("*.yaml"):
        strict_yaml_load(p.read_text(encoding="utf-8"))
