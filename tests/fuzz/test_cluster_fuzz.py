"""Fuzz: malformed cluster specs, fabric fields and torus shapes never give a traceback, a
hang or a wrong number.

The shipped cluster and pod specs (and a system's ``network:``) are mutated deterministically
(seeded) and by hypothesis: a fabric field replaced by a bad value, deleted, set to null or of
the wrong type. Loading each mutant either raises :class:`SpecError` (one line per problem,
each naming the file, and for a value no field accepts, the field) or succeeds with a system
whose collectives over typical groups cost a finite, positive time.
"""

from __future__ import annotations

import copy
import math
import random
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from _timeouts import no_hang
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.arch.loader import list_arch_files, load_arch
from simulator.arch.spec import System
from simulator.cli import main
from simulator.errors import HwsimError, SpecError
from simulator.network import collective, links_used, route_for
from workloads.importers.hf_config import strict_yaml_load
from workloads.ops import COLLECTIVES

SPECS = {n: p for n, p in list_arch_files().items()
         if n in ("a100-cluster-hdr", "h100-cluster-ndr", "tpu-v4-pod-cube", "dgx-h100")}
FABRIC = ("bandwidth", "latency", "energy_per_byte", "nics_per_node", "topology",
          "oversubscription", "nodes_per_leaf", "switch_latency")
#: values no fabric field accepts: each must be refused, naming the field
ALWAYS_BAD: list[Any] = [None, math.nan, math.inf, -math.inf, -1, -2.5, 10**30, 1e300, []]
SOMETIMES_BAD: list[Any] = [0, 0.0, 0.5, 1, 2, 3, 7, 8, 16, 1.5, True, False, "", "fast",
                            "rail-optimized", "fat-tree", "torus", "200 Gb/s", "5 us", "-5 us",
                            "1 pJ/bit", "0 Gb/s", "nan", {}, [1, 2], "x" * 300]


def _raw(name: str) -> Any:
    return strict_yaml_load(SPECS[name].read_text(encoding="utf-8"))


def _write(tmp_path: Path, tag: str, raw: Any) -> Path:
    p = tmp_path / f"{tag}.yaml"
    p.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return p


def _check_error(e: SpecError) -> str:
    msg = str(e)
    lines = msg.splitlines()
    assert e.problems and len(lines) == len(e.problems), msg
    assert all(line.startswith(f"{e.source}: ") for line in lines), msg
    assert "Traceback" not in msg
    return msg


def _check_collectives(s: System) -> None:
    """Collectives over an in-node group, a rail group and a mixed group: finite, positive
    times (or a clear MappingError where the spec has no network)."""
    per = s.devices_per_node or s.count
    groups = [tuple(range(min(per, s.count))), tuple(range(0, s.count, per))[:64],
              tuple(range(min(s.count, 2 * per)))]
    for g in groups:
        if len(g) < 2:
            continue
        try:
            r = route_for(s, g)
        except HwsimError as e:
            assert "network" in str(e)
            continue
        assert isinstance(links_used(s, g), tuple)
        for kind in COLLECTIVES:
            t = collective(kind, 1e6, r).time_s
            assert math.isfinite(t) and t > 0, (kind, g, r)


def _load(path: Path, overrides: list[str] | None = None) -> System | None:
    try:
        with no_hang():
            s = load_arch(path, overrides or [])
    except SpecError as e:
        _check_error(e)
        return None
    net = s.network
    if net is not None:
        assert math.isfinite(net.bandwidth_Bps) and net.bandwidth_Bps > 0
        assert math.isfinite(net.latency_s) and net.latency_s >= 0
    assert 0 < s.count and math.isfinite(s.tdp_w) and s.tdp_w > 0
    _check_collectives(s)
    return s


@pytest.mark.parametrize("name", sorted(SPECS))
def test_shipped_specs_cost_collectives(name):
    _check_collectives(load_arch(name))


@pytest.mark.parametrize("name", sorted(n for n in SPECS if "network" in _raw(n)))
def test_always_bad_fabric_values_fail_naming_the_field(tmp_path, name):
    rng = random.Random(f"fabric-{name}")
    raw0 = _raw(name)
    for i in range(30):
        field = rng.choice(FABRIC)
        bad = rng.choice(ALWAYS_BAD)
        raw = copy.deepcopy(raw0)
        raw["network"][field] = bad
        with pytest.raises(SpecError) as e, no_hang():
            load_arch(_write(tmp_path, f"{i}-{name}", raw))
        msg = _check_error(e.value)
        assert re.search(rf"(^|: )network\.{field}[.: ]", msg, re.M), (field, bad, msg)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_random_mutations_fail_cleanly_or_load_sane(tmp_path, name):
    rng = random.Random(f"cluster-mutate-{name}")
    raw0 = _raw(name)
    for i in range(40):
        raw = copy.deepcopy(raw0)
        for _ in range(rng.randint(1, 3)):
            target = raw.get("network") if isinstance(raw.get("network"), dict) \
                and rng.random() < 0.6 else raw
            key = rng.choice([*FABRIC, "name"] if target is not raw else
                             ["node", "nodes", "count", "network", "shape", "topology", "link",
                              "kind", "published"])
            op = rng.random()
            if op < 0.5:
                target[key] = copy.deepcopy(rng.choice(ALWAYS_BAD + SOMETIMES_BAD))
            elif op < 0.8:
                target.pop(key, None)
            else:
                target[key] = None
        _load(_write(tmp_path, f"{i}-{name}", raw))


_VALUES = st.one_of(st.sampled_from(ALWAYS_BAD + SOMETIMES_BAD), st.integers(-5, 100),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))


@settings(max_examples=150, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fields=st.dictionaries(st.sampled_from([*FABRIC, "name", "bogus"]), _VALUES,
                              max_size=4),
       nodes=st.one_of(st.integers(-3, 300), st.sampled_from([None, 2.5, "four", True])))
def test_any_fabric_fails_cleanly_or_loads_sane(tmp_path, fields, nodes):
    raw = _raw("h100-cluster-ndr")
    raw["network"].update(fields)
    if nodes is not None:
        raw["nodes"] = nodes
    _load(_write(tmp_path, "hyp", raw))


@pytest.mark.parametrize("setting, needle", [
    ("network.bandwidth=-400 Gb/s", "network.bandwidth: expected a non-negative bandwidth"),
    ("network.topology=dragonfly", "network.topology: expected one of fat-tree, "
                                   "rail-optimized, got 'dragonfly'"),
    ("network.oversubscription=.nan", "network.oversubscription: expected a ratio"),
    ("network.nics_per_node=0", "network.nics_per_node: expected a positive integer, got 0"),
    ("nodes=0", "nodes: expected a positive integer, got 0"),
    ("count=1e9", "count: expected a positive integer"),
    ("node=null", "node: expected a value, got an empty value"),
])
def test_bad_override_on_a_cluster_is_refused(setting, needle):
    with pytest.raises(SpecError) as e, no_hang():
        load_arch("h100-cluster-ndr", [setting])
    msg = _check_error(e.value)
    assert needle in msg and "--set " in msg, msg


@pytest.mark.parametrize("text, needle", [
    ("name: c\nkind: cluster\nnode: dgx-h100\nnodes: [\n", "malformed YAML"),
    ("name: c\nkind: cluster\nnode: dgx-h100\nnodes: 2\nnodes: 3\n", "duplicate key"),
    ("name: c\nkind: cluster\nnodes: 2\n", "node: missing required field"),
    ("name: c\nkind: cluster\nnode: h100-sxm\nnodes: 2\n", "network: missing required field"),
    ("name: c\nkind: cluster\nnode: dgx-h100\nnodes: 2\nnetwork: {bandwidth: -1 GB/s}\n",
     "network.bandwidth: expected a non-negative bandwidth"),
    ("name: c\nkind: cluster\nnode: dgx-h100\nnodes: 2\nnetwork: {topology: mesh}\n",
     "network.topology: expected one of fat-tree, rail-optimized, got 'mesh'"),
    ("name: c\nkind: system\ndevice: tpu-v4\ncount: 8\ntopology: torus3d\nshape: [2, 2, "
     ".nan]\nlink: {name: ici, bandwidth: 45 GB/s}\n", "shape.2: expected a positive integer"),
])
def test_odd_cluster_files_are_spec_errors(tmp_path, text, needle):
    p = tmp_path / "c.yaml"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as e, no_hang():
        load_arch(p)
    assert needle in _check_error(e.value)


def test_cli_bad_fabric_is_one_line_error_exit_2(tmp_path, capsys):
    p = tmp_path / "c.yaml"
    p.write_text("name: c\nkind: cluster\nnode: dgx-h100\nnodes: 2\n"
                 "network: {oversubscription: -2, nodes_per_leaf: 1e300}\n", encoding="utf-8")
    assert main(["run", "--arch", str(p)]) == 2
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 2 and all(line.startswith(f"error: {p}: network.") for line in lines)
    assert "Traceback" not in err
