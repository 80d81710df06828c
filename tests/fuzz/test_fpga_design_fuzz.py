"""Fuzz: random and malformed FPGA designs and fabrics through ``load_arch(..., overrides)``.

Each example sets a few ``design.*``, ``designs.*``, ``resources.*``, ``params.*`` or DSP
fields of a shipped Alveo spec to a random value, valid or not, as ``--set`` would. The load
either succeeds, with every derived number finite and the design inside every budget (and a
GEMM in each of its dtypes costs a finite, positive latency or is refused with a
MappingError), or raises :class:`SpecError` whose problems each name a field and at least one
names an overridden field (or says ``(from --set ...)``). Never another exception, never NaN.
"""

from __future__ import annotations

import math

from _timeouts import no_hang
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator import predict_op
from simulator.arch.loader import fpga_design_config, load_arch
from simulator.arch.spec import System, fpga_buffer_use
from simulator.errors import MappingError, SpecError
from workloads.ops import MatMul

PARTS = {"alveo-u280": "hbm2", "alveo-u250": "ddr4"}
DESIGNS = {"alveo-u280": ["balanced", "int8-wide", "fp16-fast"],
           "alveo-u250": ["balanced", "int8-wide", "fp32-2ddr"]}
SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

_ints = st.one_of(st.integers(-3, 3), st.integers(1, 100_000),
                  st.sampled_from([0, 10**9, 10**9 + 1, 10**30, 2**62])).map(str)
_floats = st.sampled_from([".nan", ".inf", "-.inf", "1e300", "0.5", "-0.5", "1e-300", "2.5"])
_freqs = st.one_of(st.integers(1, 2000).map(lambda x: f"{x} MHz"),
                   st.sampled_from(["0 Hz", "-5 MHz", "1e300 Hz", "fast", "5 THz", "300MHz",
                                    "1 GHz", "nan MHz", "300 MB"]))
_sizes = st.one_of(st.integers(0, 64).map(lambda x: f"{x} MiB"),
                   st.sampled_from(["0 B", "1 EB", "-1 MiB", "8 MiB/s", "huge", "4608 B",
                                    "36 KiB", "1e19 B"]))
_lists = st.one_of(
    st.lists(st.integers(-2, 200), min_size=0, max_size=3).map(str),
    st.sampled_from(["[32, 32]", "[1, 1]", "[1000000000, 1000000000]", "[32]", "[true, 2]",
                     "[32.5, 32]", "[[32, 32]]"]))
_dtypes = st.one_of(
    st.lists(st.sampled_from(["int8", "int4", "fp16", "bf16", "fp32", "fp8", "tf32", "fp64",
                              "x", "1"]), min_size=0, max_size=4).map(
        lambda xs: "[" + ", ".join(xs) + "]"),
    st.sampled_from(["int8", "{int8: 1}", "null"]))
_maps = st.sampled_from(["{int8: 4}", "{int8: 0}", "{fp99: 1}", "{int8: -1, fp16: 2}",
                         "{int8: .nan}", "{}", "{ifmap: 8 MiB}", "{ifmap: 1 MiB, filter: 1 MiB, "
                         "ofmap: 1 MiB}", "{min: 1 MHz, max: 100 MHz}", "{dsps: 10000}",
                         "{luts: 1}", "{hbm2: 8}", "{ddr4: 2}", "[1, 2]", "x"])
_names = st.sampled_from(["balanced", "int8-wide", "fp16-fast", "fp32-2ddr", "nope", "",
                          "hbm2", "ddr4", "on_chip", "DSP58", "   "])
_values = st.one_of(_ints, _floats, _freqs, _sizes, _lists, _dtypes, _maps, _names,
                    st.sampled_from(["null", "true", "&a [1]", "x" * 300]))

_PATHS = ["design.base", "design.clock", "design.pe_array", "design.engines",
          "design.engines.int8", "design.engines.fp16", "design.engines.fp32", "design.dtypes",
          "design.buffers", "design.buffers.ifmap", "design.buffers.filter",
          "design.buffers.ofmap", "design.memory", "design.channels", "design.description",
          "design", "designs", "designs.balanced.clock", "designs.balanced.engines",
          "designs.int8-wide.pe_array", "resources", "resources.luts", "resources.ffs",
          "resources.bram36", "resources.uram288", "resources.clock", "resources.clock.min",
          "resources.clock.max", "resources.channels", "resources.channels.hbm2",
          "resources.channels.ddr4", "resources.shell", "resources.shell.dsps",
          "resources.shell.luts", "resources.dsp_slice", "params.dsp_utilization",
          "params.luts_per_pe", "params.luts_per_pe.int8", "params.ffs_per_pe.fp16",
          "params.sram", "compute.dsp_array.count", "compute.dsp_array.clock",
          "compute.dsp_array.shape", "compute.dsp_array.flops_per_cycle.int8",
          "memory.0.bandwidth"]


def _value_for(path: str) -> st.SearchStrategy[str]:
    """Mostly values of the right kind for the field (so deep checks run), sometimes any."""
    leaf = path.rsplit(".", 1)[-1]
    right = (_freqs if leaf in ("clock", "min", "max") else
             _sizes if leaf in ("ifmap", "filter", "ofmap") else
             _lists if leaf in ("pe_array", "shape") else
             _dtypes if leaf == "dtypes" else
             _names if leaf in ("base", "memory", "dsp_slice", "description") else
             _ints if leaf not in ("dsp_utilization",) else _floats)
    return st.one_of(right, right, _values)


_overrides = st.lists(
    st.sampled_from(_PATHS).flatmap(lambda p: _value_for(p).map(lambda v: (p, v))),
    min_size=1, max_size=4, unique_by=lambda pv: pv[0])


def _finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _check_loaded(s: System) -> None:
    d = s.device
    assert d.design is not None and d.resources is not None
    for u in d.compute:
        assert u.count > 0 and _finite(u.clock_hz) and u.clock_hz > 0
        assert all(_finite(v) and v > 0 for v in u.flops_per_cycle.values())
    for m in d.memory:
        assert _finite(m.bandwidth_Bps) and m.bandwidth_Bps > 0
        assert _finite(m.capacity_bytes) and m.capacity_bytes > 0
    res, des = d.resources, d.design
    assert res.clock_min_hz <= des.clock_hz <= res.clock_max_hz
    unit = d.units("matrix")[0]
    assert set(unit.flops_per_cycle) == set(des.dtypes)
    for cls in des.dtypes:
        cfg = fpga_design_config(d, unit, cls)
        for use in cfg.uses:
            assert _finite(use.used) and use.used >= 0
            assert not use.over, use.shortfall()
    sram = d.params.get("sram")
    if sram:
        for use in fpga_buffer_use(res, sram):
            assert not use.over and _finite(use.used)
    for cls in des.dtypes[:2]:
        try:
            with no_hang(20):
                c = predict_op(MatMul(m=96, n=200, k=72, dtype=cls), s)
        except MappingError as e:
            assert str(e)
            continue
        assert _finite(c.latency_s) and c.latency_s > 0
        assert _finite(c.energy_j) and c.energy_j > 0
        for v in c.details["fpga_resources"].values():
            for x in v.values():
                assert not isinstance(x, float) or not math.isnan(x)


def _names_a_field(e: SpecError, paths: list[str]) -> bool:
    msg = str(e)
    assert e.problems and len(msg.splitlines()) == len(e.problems)
    assert all(line.startswith(f"{e.source}: ") for line in msg.splitlines())
    assert "Traceback" not in msg and "nan%" not in msg.lower()
    fields = [p.split(": ", 1)[0] for p in e.problems]
    return any("(from --set" in p or f.startswith("--set") for f, p in
               zip(fields, e.problems, strict=True)) or any(
        f == p or p.startswith(f + ".") or f.startswith(p + ".")
        for f in fields for p in paths)


@SETTINGS
@given(part=st.sampled_from(sorted(PARTS)), overrides=_overrides)
def test_random_design_overrides_load_cleanly_or_name_the_field(part, overrides):
    ov = dict(overrides)
    try:
        with no_hang(20):
            s = load_arch(part, ov)
    except SpecError as e:
        assert _names_a_field(e, list(ov)), (ov, str(e))
        return
    _check_loaded(s)


_dims = st.one_of(st.integers(1, 16), st.sampled_from([16, 32, 64, 80, 128, 256]))


@SETTINGS
@given(part=st.sampled_from(sorted(PARTS)), data=st.data())
def test_random_valid_designs_fit_or_say_by_how_much(part, data):
    """Well-formed designs: either they fit (and the mapper agrees), or every problem is an
    overflow that names the need, the budget and the excess."""
    base = data.draw(st.sampled_from(DESIGNS[part]), label="base")
    rows, cols = data.draw(_dims, label="rows"), data.draw(_dims, label="cols")
    ov = {"design.base": base, "design.pe_array": f"[{rows}, {cols}]",
          "design.clock": f"{data.draw(st.integers(40, 550), label='MHz')} MHz",
          "design.buffers.ifmap": f"{data.draw(st.integers(1, 40), label='ifmap')} MiB",
          "design.channels": str(data.draw(st.integers(1, 40), label="channels"))}
    if data.draw(st.booleans(), label="explicit"):
        ov["design.engines"] = str(data.draw(st.integers(1, 64), label="engines"))
    if data.draw(st.booleans(), label="dsps"):
        ov["compute.dsp_array.count"] = str(data.draw(st.integers(1000, 40_000), label="count"))
    try:
        with no_hang(20):
            s = load_arch(part, ov)
    except SpecError as e:
        assert _names_a_field(e, list(ov)), (ov, str(e))
        for p in e.problems:
            assert ("% over" in p or "is below the fabric's clock range" in p), p
        return
    _check_loaded(s)
