"""Fuzz: malformed SCALE-Sim config and topology text never gives a traceback, a hang or a
wrong number.

Each input either parses (and then builds a device and costs its layers to finite, positive
figures) or raises :class:`SpecError` whose every line names the file and the section and
key, or the line, at fault. Through the CLI: exit 0, or exit 2 with only ``error: ...`` lines.
"""

from __future__ import annotations

import math
from pathlib import Path

from _timeouts import no_hang
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.cli import main
from simulator.errors import SpecError
from simulator.scalesim_files import (
    EXAMPLES,
    build_system,
    parse_config_text,
    parse_topology_text,
    run_study,
)

CFG_LINES = (EXAMPLES / "scale.cfg").read_text().splitlines()
KEYS = ["ArrayHeight", "ArrayWidth", "IfmapSramSzkB", "FilterSramSzkB", "OfmapSramSzkB",
        "IfmapOffset", "Dataflow", "Bandwidth", "InterfaceBandwidth", "MemoryBanks",
        "run_name", "SparsitySupport", "UseRamulatorTrace", "ReadRequestBuffer",
        "IfmapCustomLayout", "BlockSize", "TopologyCsvLoc", "Bogus"]
SECTIONS = ["[general]", "[architecture_presets]", "[run_presets]", "[sparsity]", "[layout]",
            "[memory]", "[General]", "[architecture_presets", "[]", "[network_presets]"]
VALUES = ["", "0", "1", "2", "8", "32", "64", "-1", "1e3", "32.0", "x", "10,10", "10, 20",
          "os", "ws", "is", "OS", "rs", "CALC", "USER", "user", "True", "false", "yes",
          "\u0669", "9" * 40, "16384", "16385", "1048576", "1048577", "1000000", "1000001",
          "%(x)s", "a = b", "\t", "64 kB", "nan", "inf"]

CONV_HEADER = ("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
               "Num Filter, Strides,")
GEMM_HEADER = "Layer, M, N, K,"
HEADERS = [CONV_HEADER, GEMM_HEADER, CONV_HEADER.replace("Strides,", "Strides, Sparsity,"),
           "Layer,M,N,K", "Layer, A, B, C,", "", "garbage", "Layer name, IFMAP Height,"]
CELLS = ["1", "2", "3", "5", "7", "16", "64", "224", "0", "-1", "x", "", "2.5", "2:4", "1:1",
         "#dw", "9" * 13, "2147483647", "2147483648", " 8 ", "\t3"]
NAMES = ["Conv1", "fc", "", "DP_conv", "Conv#1", "QKT", "L 1", "\u00e9"]


def check_spec_error(e: SpecError, source: str) -> None:
    lines = str(e).splitlines()
    assert lines, e
    for line in lines:
        assert line.startswith(f"{source}: "), line
        assert "[" in line or "line " in line or "empty" in line or "stopped" in line, line
        assert len(line) < 600, line


@st.composite
def config_texts(draw) -> str:
    lines = list(CFG_LINES)
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.integers(0, 7))
        i = draw(st.integers(0, len(lines)))
        if op <= 1:
            lines.insert(i, f"{draw(st.sampled_from(KEYS))}: {draw(st.sampled_from(VALUES))}")
        elif op == 2 and lines:
            lines.pop(min(i, len(lines) - 1))
        elif op == 3:
            lines.insert(i, draw(st.sampled_from(SECTIONS)))
        elif op >= 4 and op != 7 and lines:
            j = min(i, len(lines) - 1)
            if ":" in lines[j]:
                lines[j] = lines[j].split(":")[0] + ": " + draw(st.sampled_from(VALUES))
        else:
            lines.insert(i, draw(st.text(max_size=20)))
    return "\n".join(lines) + "\n"


@st.composite
def topology_texts(draw, cells=CELLS) -> str:
    """A header and rows: mostly well-formed (odd spacing, trailing commas, comments, a
    sparsity column), some with one cell or the length broken."""
    form = draw(st.sampled_from(["conv", "gemm", "other"]))
    header = {"conv": draw(st.sampled_from(HEADERS[0:3:2])),
              "gemm": draw(st.sampled_from(HEADERS[1:4:2])),
              "other": draw(st.sampled_from(HEADERS))}[form]
    rows = [header]
    small = st.integers(1, 40)
    for _ in range(draw(st.integers(0, 5))):
        if form == "gemm" or (form == "other" and draw(st.booleans())):
            row = [str(draw(st.integers(1, 300))) for _ in range(3)]
        else:
            h, w = draw(small), draw(small)
            row = [str(x) for x in (h, w, draw(st.integers(1, h)), draw(st.integers(1, w)),
                                    draw(st.integers(1, 8)), draw(st.integers(1, 40)),
                                    draw(st.integers(1, 5)))]
        row = [draw(st.sampled_from(NAMES)), *row]
        if draw(st.integers(0, 3)) == 0:
            row.append(draw(st.sampled_from(["2:4", "1:1", "3", "half"])))
        if draw(st.integers(0, 3)) == 0:  # break one cell or the length
            if draw(st.booleans()):
                row[draw(st.integers(0, len(row) - 1))] = draw(st.sampled_from(cells))
            else:
                row = row[:-1] if draw(st.booleans()) else [*row, draw(st.sampled_from(cells))]
        sep = draw(st.sampled_from([", ", ",", " ,", " ,\t"]))
        rows.append(draw(st.sampled_from(["", "\t", "  "])) + sep.join(row)
                    + draw(st.sampled_from([",", "", ",#x", ", ,", ",\n"])))
    return "\n".join(rows) + "\n"


def _costs_are_sane(cfg, topo) -> None:
    try:
        system = build_system(cfg)
    except SpecError as e:
        check_spec_error(e, cfg.path)
        return
    for r in run_study(cfg, topo, system):
        assert r.total_cycles >= r.compute_cycles >= 1 and r.stall_cycles >= 0
        assert 0 < r.mapping_efficiency_pct <= 100 and 0 < r.overall_util_pct <= 100 + 1e-9
        assert math.isfinite(r.energy_j) and r.energy_j > 0 and r.latency_s > 0
        assert all(math.isfinite(v) and v >= 0 for v in (*r.sram_words.values(),
                                                          *r.dram_words.values()))


SMALL_GEMM = parse_topology_text("Layer, M, N, K,\nG, 40, 24, 50,\n", "g.csv")


@settings(max_examples=300, deadline=None, derandomize=True)
@given(text=config_texts())
def test_config_mutants_parse_or_fail_naming_the_key(text):
    with no_hang():
        try:
            cfg = parse_config_text(text, "study.cfg")
        except SpecError as e:
            check_spec_error(e, "study.cfg")
            return
        assert 1 <= cfg.rows <= 16384 and 1 <= cfg.cols <= 16384
        assert cfg.dataflow in ("os", "ws", "is") and cfg.bandwidth_mode in ("CALC", "USER")
        assert min(cfg.sram_bytes.values()) >= 1024
        assert cfg.bandwidth_mode == "CALC" or cfg.bandwidth_words >= 1
        _costs_are_sane(cfg, SMALL_GEMM)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(text=st.text(max_size=300))
def test_random_text_as_config(text):
    with no_hang():
        try:
            parse_config_text(text, "r.cfg")
        except SpecError as e:
            check_spec_error(e, "r.cfg")


SMALL_CFG = parse_config_text((EXAMPLES / "scale.cfg").read_text(), "scale.cfg")


@settings(max_examples=400, deadline=None, derandomize=True)
@given(text=topology_texts())
def test_topology_mutants_parse_or_fail_naming_the_line(text):
    with no_hang():
        try:
            topo = parse_topology_text(text, "t.csv")
        except SpecError as e:
            check_spec_error(e, "t.csv")
            return
        assert topo.form in ("conv", "gemm") and topo.layers
        for layer in topo.layers:
            m, n, k = layer.gemm
            assert m >= 1 and n >= 1 and k >= 1
            assert layer.op.flops().matrix == 2.0 * m * n * k


@settings(max_examples=200, deadline=None, derandomize=True)
@given(text=st.text(max_size=300))
def test_random_text_as_topology(text):
    with no_hang():
        try:
            parse_topology_text(text, "r.csv")
        except SpecError as e:
            check_spec_error(e, "r.csv")


@settings(max_examples=60, deadline=None, derandomize=True)
@given(cfg=config_texts(), topo=topology_texts(cells=["1", "2", "3", "5", "16", "64", "0",
                                                        "x", "", "2:4"]))
def test_cli_exits_0_or_one_error_per_line(tmp_path_factory, cfg, topo):
    d = Path(tmp_path_factory.mktemp("ss"))
    (d / "c.cfg").write_text(cfg, encoding="utf-8")
    (d / "t.csv").write_text(topo, encoding="utf-8")
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with no_hang(30), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["scalesim", "--config", str(d / "c.cfg"), "--topology", str(d / "t.csv"),
                     "--json"])
    if code == 0:
        import json

        doc = json.loads(out.getvalue())
        assert doc["layers"] and doc["total"]["total_cycles"] >= 1
    else:
        assert code == 2
        lines = err.getvalue().strip().splitlines()
        assert lines and all(x.startswith("error: ") for x in lines), err.getvalue()
        assert "Traceback" not in err.getvalue()
