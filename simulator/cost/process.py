"""Process-node data for the ASIC area and die-cost model, read from ``arch_specs/process/nodes.yaml``.

The YAML holds published per-node figures (SRAM bit cells, logic densities, wafer prices,
defect densities) and the area model's estimates, each with its source in the file header.
This module turns one node of it into a :class:`ProcessNode` with every figure the model
needs resolved, or says which figure is missing for which node.

>>> node_for(28).name
'28nm'
>>> round(node_for(28).logic_kgates_per_mm2)
3900
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from simulator.errors import SpecError

__all__ = ["NODES_FILE", "ProcessNode", "AreaModel", "process_data", "node_for", "area_model",
           "known_nodes"]

NODES_FILE = Path(__file__).resolve().parents[2] / "arch_specs" / "process" / "nodes.yaml"


@dataclass(frozen=True)
class ProcessNode:
    """One node's figures, in the units the model uses (um^2 per bit cell, kGE/mm^2, $)."""

    name: str
    nm: float
    sram_bitcell_um2: float
    sram_macro_mbit_per_mm2: float | None  # published macro density, if any
    logic_kgates_per_mm2: float
    wafer_usd: float
    defect_density_per_cm2: float
    leakage_w_per_mm2: float
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class AreaModel:
    """The model-wide figures of ``area_model:`` plus the yield and price figures."""

    reference_kgates_per_mm2: float
    ff_gate_equivalents: float
    placement_utilization: float
    wiring_overhead: float
    sram_macro_efficiency: float
    control_share: float
    phy_mm2_per_gbps: Mapping[str, float]
    arithmetic_45nm_um2: Mapping[str, float]
    dram_usd_per_gb: float
    hbm_usd_per_gb: float
    cowos_usd: float
    package_test_usd: float
    yield_alpha: float
    wafer_diameter_mm: float
    edge_loss_mm: float
    scribe_lane_mm: float


def _bad(field: str, expected: str, got: Any) -> SpecError:
    return SpecError(str(NODES_FILE), [f"{field}: expected {expected}, got {got!r}"])


def _num(d: Mapping[str, Any], key: str, path: str) -> float:
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise _bad(f"{path}.{key}", "a positive number", v)
    return float(v)


@functools.lru_cache(maxsize=1)
def process_data() -> dict[str, Any]:
    """The parsed YAML (cached)."""
    try:
        raw = yaml.safe_load(NODES_FILE.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise SpecError(str(NODES_FILE), [f"cannot read the process data: {exc}"]) from None
    if not isinstance(raw, dict) or not isinstance(raw.get("nodes"), dict):
        raise _bad("nodes", "a mapping of node names", None if not isinstance(raw, dict)
                   else raw.get("nodes"))
    return raw


def known_nodes() -> list[str]:
    """Node names with every figure the area model needs, smallest feature first."""
    out = []
    for name in process_data()["nodes"]:
        try:
            out.append(_resolve(name))
        except SpecError:
            continue
    return [n.name for n in sorted(out, key=lambda n: n.nm)]


def _nm(name: str) -> float:
    return float(name.removesuffix("nm"))


@functools.cache
def _resolve(name: str) -> ProcessNode:
    raw = process_data()
    nodes = raw["nodes"]
    model = raw.get("area_model") or {}
    d = nodes[name]
    path = f"nodes.{name}"
    notes: list[str] = []
    if "sram_bitcell_um2" not in d:
        raise _bad(f"{path}.sram_bitcell_um2", "the node's SRAM bit cell (um^2)", None)
    bitcell = _num(d, "sram_bitcell_um2", path)
    macro = d.get("sram_macro_mibit_per_mm2")
    macro_mbit = _num(d, "sram_macro_mibit_per_mm2", path) * 1.048576 if macro else None
    if "logic_kgates_per_mm2" in d:
        logic = _num(d, "logic_kgates_per_mm2", path)
    elif "logic_mtr_per_mm2" in d:
        tpg = _num(model, "transistors_per_gate", "area_model")
        logic = _num(d, "logic_mtr_per_mm2", path) * 1e3 / tpg
        notes.append(f"{name} logic density {d['logic_mtr_per_mm2']} MTr/mm^2 at "
                     f"{tpg:g} transistors per NAND2 gate")
    elif "logic_density_x_vs_5nm" in d:
        base = _resolve("5nm")
        logic = base.logic_kgates_per_mm2 * _num(d, "logic_density_x_vs_5nm", path)
        notes.append(f"{name} logic density = 5nm x {d['logic_density_x_vs_5nm']}")
    else:
        raise _bad(f"{path}.logic_kgates_per_mm2", "a logic density", None)
    if "defect_density_per_cm2" in d:
        d0 = _num(d, "defect_density_per_cm2", path)
    else:
        d0 = _num(model, "defect_density_fallback_per_cm2", "area_model")
        notes.append(f"{name} has no published defect density: {d0:g}/cm^2 assumed "
                     f"(area_model.defect_density_fallback_per_cm2)")
    leak_map = model.get("leakage_w_per_mm2") or {}
    if name not in leak_map:
        raise _bad(f"area_model.leakage_w_per_mm2.{name}", "a leakage density (W/mm^2)", None)
    leak = _num(leak_map, name, "area_model.leakage_w_per_mm2")
    return ProcessNode(name=name, nm=_nm(name), sram_bitcell_um2=bitcell,
                       sram_macro_mbit_per_mm2=macro_mbit, logic_kgates_per_mm2=logic,
                       wafer_usd=_num(d, "wafer_usd", path), defect_density_per_cm2=d0,
                       leakage_w_per_mm2=leak, notes=tuple(notes))


def node_for(process_nm: float, source: str = "process_node") -> ProcessNode:
    """The node whose name matches a spec's ``process_node`` (nm), exactly.

    Raises
    ------
    SpecError
        If nodes.yaml has no such node, or lacks a figure the model needs for it.
    """
    nm = float(process_nm)
    names = {n: _nm(n) for n in process_data()["nodes"]}
    match = [n for n, v in names.items() if abs(v - nm) < 1e-6 * max(nm, 1.0)]
    if not match:
        raise SpecError(source, [
            f"process_node: {nm:g} nm is not in {NODES_FILE.name} (the area and die-cost model "
            f"knows {', '.join(known_nodes())}); set process_node to one of them"])
    return _resolve(match[0])


@functools.lru_cache(maxsize=1)
def area_model() -> AreaModel:
    """The model-wide figures, validated."""
    raw = process_data()
    m = raw.get("area_model")
    if not isinstance(m, dict):
        raise _bad("area_model", "a mapping", m)
    phy = m.get("phy_mm2_per_gbps") or {}
    arith = raw.get("arithmetic_area_45nm_um2") or {}
    ym = raw.get("yield_model") or {}
    pk = raw.get("packaging") or {}
    return AreaModel(
        reference_kgates_per_mm2=_num(m, "reference_kgates_per_mm2", "area_model"),
        ff_gate_equivalents=_num(m, "ff_gate_equivalents", "area_model"),
        placement_utilization=_num(m, "placement_utilization", "area_model"),
        wiring_overhead=_num(m, "wiring_overhead", "area_model"),
        sram_macro_efficiency=_num(m, "sram_macro_efficiency", "area_model"),
        control_share=_num(m, "control_share", "area_model"),
        phy_mm2_per_gbps={k: _num(phy, k, "area_model.phy_mm2_per_gbps")
                          for k in ("ddr", "hbm", "serdes")},
        arithmetic_45nm_um2={k: _num(arith, k, "arithmetic_area_45nm_um2") for k in arith},
        dram_usd_per_gb=_num(m, "dram_usd_per_gb", "area_model"),
        hbm_usd_per_gb=_num(raw, "hbm_usd_per_gb", ""),
        cowos_usd=_num(pk, "cowos_usd_per_package", "packaging"),
        package_test_usd=_num(pk, "assembly_test_usd_per_chip", "packaging"),
        yield_alpha=_num(ym, "alpha", "yield_model"),
        wafer_diameter_mm=_num(ym, "wafer_diameter_mm", "yield_model"),
        edge_loss_mm=_num(ym, "edge_loss_mm", "yield_model"),
        scribe_lane_mm=_num(ym, "scribe_lane_mm", "yield_model"),
    )
