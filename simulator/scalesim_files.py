"""Read SCALE-Sim's input files and run its study on hwsim's systolic model.

SCALE-Sim (A. Samajdar et al., arXiv:1811.02883; https://github.com/scalesim-project) takes a
config file (INI: ``[general]``, ``[architecture_presets]``, ``[run_presets]``; v3 adds
``[layout]``, ``[sparsity]``, ...) and a topology CSV in one of two forms:

- conv: ``Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels,
  Num Filter, Strides,`` (one stride for both axes, no padding; the ofmap is
  ``ceil((ifmap - filter) / stride) + 1`` per axis, which is ``(ifmap - filter) // stride + 1``
  when the stride divides ``ifmap - filter`` and otherwise one more, the last window reaching
  past the ifmap: see :func:`conv_geometry`; a layer whose name contains ``DP`` is depthwise
  and runs as one single-channel layer per channel, ``<name>Channel_<i>``, as SCALE-Sim does);
- GEMM: ``Layer, M, N, K,`` with K the contraction dimension. SCALE-Sim turns a GEMM row into
  the conv ``ifmap M x K, filter 1 x K, 1 channel, N filters`` (``topology_utils.py``,
  ``load_arrays_gemm``): M ofmap pixels, N filters, a K-long window. So the hwsim op is
  ``MatMul(m=M, n=N, k=K)``: A (ifmap) is M x K, B (filter) K x N, C (ofmap) M x N.

Both forms may carry a trailing comma (SCALE-Sim writes one and drops whatever follows the
last comma), a v3 sparsity column (``N:M``; read and ignored with a note: hwsim runs layers
dense) and ``#`` comments.

Words and bytes
---------------
SCALE-Sim counts words (``word_size = 1`` byte in its source) and sizes its SRAMs in kB of
1,024 bytes. hwsim works in bytes: a word is one element of the run's dtype (``int8``: 1 B,
SCALE-Sim's default; ``bf16``: 2 B). The SRAMs keep their physical size (``kB x 1024`` bytes),
the interface bandwidth is ``Bandwidth words/cycle x word bytes x clock`` bytes per second,
and every count hwsim reports in SCALE-Sim's columns is ``bytes / word bytes``.

Bandwidth: ``InterfaceBandwidth: USER`` uses ``Bandwidth`` (the first value of a list, as
SCALE-Sim does). SCALE-Sim gives each of the three operand buffers its own interface of that
width; hwsim shares one DRAM channel of that width between them, so a layer whose operands
stream at the same time stalls earlier in hwsim. ``CALC`` (and a config with no
``InterfaceBandwidth``, as in SCALE-Sim v1) asks SCALE-Sim for the bandwidth that never stalls
the array: hwsim costs the layers on a DRAM of :data:`CALC_WORDS_PER_CYCLE`, so the stall
columns are (nearly) zero and the DRAM columns give the traffic that bandwidth must carry.

The hwsim device is ``arch_specs/asic/systolic-32x32.yaml`` with the config's array shape,
SRAMs, dataflow and bandwidth set through :func:`simulator.arch.loader.load_arch` overrides,
so the spec's own validation applies (:func:`device_overrides`). Its power, energy per byte
and static power are those of the base spec.

Report columns (:func:`layer_report`): ``Total Cycles`` and ``Stall Cycles`` are the
systolic model's ``cycles`` and ``cycles - compute_cycles`` (rounded up to whole cycles);
``Overall Util %`` is ``MACs / (Total Cycles x rows x cols)``; ``Mapping Efficiency %`` the
mean over folds of the PEs a fold uses (SCALE-Sim's definition; it only depends on the
shapes); ``Compute Util %`` the model's MAC utilisation over its compute cycles. ``SRAM OFMAP
Writes`` counts the writes of outputs and partial sums (one pass over C per K fold for
``ws``/``is``), not the read-backs hwsim's SRAM energy also counts. hwsim does
not time single accesses, so the start and stop cycles of the detailed access report span the
layer's whole run and its average bandwidths are the layer's words over its total cycles.

Examples
--------
>>> cfg = read_config(EXAMPLES / "scale.cfg")
>>> cfg.rows, cfg.cols, cfg.dataflow, cfg.bandwidth_mode, cfg.bandwidth_words
(32, 32, 'os', 'USER', 10)
>>> topo = read_topology(EXAMPLES / "gpt2_gemm.csv")
>>> topo.form, topo.layers[0].name, topo.layers[0].op.describe()
('gemm', 'QKT', 'matmul(dtype=int8, m=1024, n=1024, k=64, batch=1, weight=True, bias=False)')
"""

from __future__ import annotations

import configparser
import dataclasses
import json
import math
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simulator.errors import HwsimError, SpecError
from workloads.dtypes import get_dtype
from workloads.ops import Conv2d, MatMul

__all__ = ["ScaleSimConfig", "ScaleSimLayer", "ScaleSimTopology", "LayerReport",
           "read_config", "parse_config_text", "read_topology", "parse_topology_text",
           "conv_geometry", "device_overrides", "build_system", "layer_report", "run_study", "totals", "report_csv",
           "COMPUTE_COLUMNS", "BANDWIDTH_COLUMNS", "DETAIL_COLUMNS", "CALC_WORDS_PER_CYCLE",
           "BASE_ARCH", "EXAMPLES", "MAX_FILE_BYTES", "MAX_LAYERS"]

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "scalesim"
#: The hwsim spec the configured array is built from.
BASE_ARCH = "systolic-32x32"
#: Largest config or topology file read (checked before parsing); shipped ones are < 10 kB.
MAX_FILE_BYTES = 4 << 20
#: Most layers a topology may hold once depthwise (``DP``) layers are expanded per channel.
MAX_LAYERS = 100_000
#: Largest array edge (a 16,384 x 16,384 array is 5.4e8 FLOP/cycle, inside the spec limits).
MAX_ARRAY_EDGE = 16_384
#: Largest SRAM in kB (1 GiB each).
MAX_SRAM_KB = 1 << 20
#: Largest interface bandwidth in words per cycle.
MAX_BANDWIDTH_WORDS = 1_000_000
#: Largest topology dimension (SCALE-Sim's operand matrices are NumPy arrays indexed by int32).
MAX_DIM = 2**31 - 1
#: DRAM words per cycle hwsim uses for ``InterfaceBandwidth: CALC`` (never the bottleneck).
CALC_WORDS_PER_CYCLE = 1 << 20

_DATAFLOWS = ("os", "ws", "is")
_INT = re.compile(r"[0-9]+")
_BOOLS = configparser.ConfigParser.BOOLEAN_STATES

# SCALE-Sim's report columns, as its simulator.py writes them (v2; v3 adds a first cycles
# column "Total Cycles (incl. prefetch)").
COMPUTE_COLUMNS = {
    2: ["LayerID", "Total Cycles", "Stall Cycles", "Overall Util %", "Mapping Efficiency %",
        "Compute Util %"],
    3: ["LayerID", "Total Cycles (incl. prefetch)", "Total Cycles", "Stall Cycles",
        "Overall Util %", "Mapping Efficiency %", "Compute Util %"],
}
BANDWIDTH_COLUMNS = ["LayerID", "Avg IFMAP SRAM BW", "Avg FILTER SRAM BW", "Avg OFMAP SRAM BW",
                     "Avg IFMAP DRAM BW", "Avg FILTER DRAM BW", "Avg OFMAP DRAM BW"]
DETAIL_COLUMNS = ["LayerID"] + [
    f"{mem} {opnd} {what}"
    for mem in ("SRAM", "DRAM")
    for opnd, verb in (("IFMAP", "Reads"), ("Filter", "Reads"), ("OFMAP", "Writes"))
    for what in ("Start Cycle", "Stop Cycle", verb)]


# -- small helpers ---------------------------------------------------------------------------
def _show(value: str, n: int = 40) -> str:
    """``repr`` of a value from a file, shortened and on one line."""
    text = value if len(value) <= n else value[:n - 3] + "..."
    return repr(text)


def _read_text(path: str | os.PathLike, what: str) -> str:
    """The UTF-8 text of ``path`` (at most MAX_FILE_BYTES); SpecError naming the file."""
    p = str(path)
    try:
        with open(p, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            data = f.read(MAX_FILE_BYTES + 1)
    except IsADirectoryError:
        raise SpecError(p, [f"is a folder, expected a SCALE-Sim {what} file"]) from None
    except OSError as e:
        raise SpecError(p, [f"cannot read the {what} file ({e.strerror or e})"]) from None
    if max(size, len(data)) > MAX_FILE_BYTES:
        raise SpecError(p, [f"file is {max(size, len(data)):,} bytes; a SCALE-Sim {what} file "
                            f"is limited to {MAX_FILE_BYTES:,} bytes"])
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise SpecError(p, [f"not UTF-8 text (byte {e.start}: {e.reason})"]) from None


# -- the config file -------------------------------------------------------------------------
@dataclass(frozen=True)
class ScaleSimConfig:
    """A SCALE-Sim config as hwsim reads it (sizes in bytes, bandwidth in words per cycle).

    ``bandwidth_words`` is the ``Bandwidth`` value (``None`` if the file has none);
    ``bandwidth_mode`` is ``USER`` (use it) or ``CALC`` (size the DRAM so it never stalls).
    ``version`` (2 or 3) picks the report columns: 3 when the file has a v3-only key
    (``UseRamulatorTrace``, ``ReadRequestBuffer``, ``WriteRequestBuffer``) or a ``[layout]``
    section. ``notes`` say what was read but is not modelled.
    """

    path: str
    run_name: str
    rows: int
    cols: int
    ifmap_sram_bytes: int
    filter_sram_bytes: int
    ofmap_sram_bytes: int
    dataflow: str
    bandwidth_mode: str
    bandwidth_words: int | None
    version: int = 2
    notes: tuple[str, ...] = ()

    @property
    def sram_bytes(self) -> dict[str, int]:
        return {"ifmap": self.ifmap_sram_bytes, "filter": self.filter_sram_bytes,
                "ofmap": self.ofmap_sram_bytes}

    def describe(self) -> str:
        kb = "/".join(f"{v // 1024:g}" for v in self.sram_bytes.values())
        bw = (f"{self.bandwidth_words} words/cycle" if self.bandwidth_mode == "USER"
              else "CALC (stall-free)")
        return (f"{self.rows}x{self.cols} array, {self.dataflow}, SRAM ifmap/filter/ofmap "
                f"{kb} kB, bandwidth {bw}")


# key (lowercase, as configparser stores it) -> (SCALE-Sim's spelling, kind)
_LAYOUT_KEYS = {
    "ifmapcustomlayout": ("IfmapCustomLayout", "bool"),
    "filtercustomlayout": ("FilterCustomLayout", "bool"),
    "ifmapsrambankbandwidth": ("IfmapSRAMBankBandwidth", "count"),
    "ifmapsrambanknum": ("IfmapSRAMBankNum", "count"),
    "ifmapsrambankport": ("IfmapSRAMBankPort", "count"),
    "filtersrambankbandwidth": ("FilterSRAMBankBandwidth", "count"),
    "filtersrambanknum": ("FilterSRAMBankNum", "count"),
    "filtersrambankport": ("FilterSRAMBankPort", "count"),
}
_KEYS: dict[str, dict[str, tuple[str, str]]] = {
    "general": {"run_name": ("run_name", "text")},
    "architecture_presets": {
        "arrayheight": ("ArrayHeight", "edge"), "arraywidth": ("ArrayWidth", "edge"),
        "ifmapsramszkb": ("IfmapSramSzkB", "kb"), "filtersramszkb": ("FilterSramSzkB", "kb"),
        "ofmapsramszkb": ("OfmapSramSzkB", "kb"),
        "ifmapoffset": ("IfmapOffset", "offset"), "filteroffset": ("FilterOffset", "offset"),
        "ofmapoffset": ("OfmapOffset", "offset"),
        "dataflow": ("Dataflow", "dataflow"), "bandwidth": ("Bandwidth", "bandwidth"),
        "memorybanks": ("MemoryBanks", "count"),
        "onchipmemorybanks": ("OnChipMemoryBanks", "count"),
        "onchipmemorybankports": ("OnChipMemoryBankPorts", "count"),
        "readrequestbuffer": ("ReadRequestBuffer", "count"),
        "writerequestbuffer": ("WriteRequestBuffer", "count"),
        **_LAYOUT_KEYS,
    },
    "run_presets": {
        "interfacebandwidth": ("InterfaceBandwidth", "bwmode"),
        "useramulatortrace": ("UseRamulatorTrace", "bool"),
        "sram_row_size": ("SRAM_row_size", "count"), "sram_bank_size": ("SRAM_bank_size", "count"),
        "dram_row_size": ("DRAM_row_size", "count"), "dram_bank_size": ("DRAM_bank_size", "count"),
    },
    "layout": dict(_LAYOUT_KEYS),
    "sparsity": {
        "sparsitysupport": ("SparsitySupport", "bool"), "sparserep": ("SparseRep", "text"),
        "optimizedmapping": ("OptimizedMapping", "bool"), "blocksize": ("BlockSize", "count"),
        "nonzeroelems": ("NonZeroElems", "count"),
        "randomnumbergeneratorseed": ("RandomNumberGeneratorSeed", "offset"),
    },
    "network_presets": {"topologycsvloc": ("TopologyCsvLoc", "text")},
}
_REQUIRED = ("arrayheight", "arraywidth", "ifmapsramszkb", "filtersramszkb", "ofmapsramszkb",
             "dataflow")
#: keys whose effect on SCALE-Sim's numbers hwsim does not model (banks, request buffers)
_UNMODELLED = ("memorybanks", "onchipmemorybanks", "onchipmemorybankports", "readrequestbuffer",
               "writerequestbuffer", "sram_row_size", "sram_bank_size", "dram_row_size",
               "dram_bank_size", *_LAYOUT_KEYS)
_V3_KEYS = ("useramulatortrace", "readrequestbuffer", "writerequestbuffer")


def _value(kind: str, text: str) -> tuple[Any, str | None]:
    """(parsed value, None) or (None, what was expected) for one config value."""
    t = text.strip()
    if kind == "text":
        return t, None
    if kind == "bool":
        return (_BOOLS[t.lower()], None) if t.lower() in _BOOLS else \
            (None, "true or false")
    if kind == "dataflow":
        return (t.lower(), None) if t.lower() in _DATAFLOWS else \
            (None, "os, ws or is (output, weight or input stationary)")
    if kind == "bwmode":
        return (t.upper(), None) if t.upper() in ("CALC", "USER") else (None, "CALC or USER")
    if kind == "bandwidth":
        parts = [x.strip() for x in t.split(",")]
        if parts and all(_INT.fullmatch(x) and 1 <= int(x) <= MAX_BANDWIDTH_WORDS
                         for x in parts):
            return [int(x) for x in parts], None
        return None, (f"words per cycle, a whole number from 1 to {MAX_BANDWIDTH_WORDS:,} "
                      "(or a comma-separated list of them)")
    lo, hi, what = {"edge": (1, MAX_ARRAY_EDGE, "of PEs"), "kb": (1, MAX_SRAM_KB, "of kB"),
                    "count": (1, 10**9, ""), "offset": (0, 2**63 - 1, "")}[kind]
    if _INT.fullmatch(t) and len(t) <= 30 and lo <= int(t) <= hi:
        return int(t), None
    unit = f" {what}" if what else ""
    return None, f"a whole number{unit} from {lo:,} to {hi:,}"


def _config_problem(e: configparser.Error) -> str:
    line = getattr(e, "lineno", None)
    where = f"line {line}: " if line else ""
    if isinstance(e, configparser.DuplicateOptionError):
        return f"{where}[{e.section}] {e.option}: given twice"
    if isinstance(e, configparser.DuplicateSectionError):
        return f"{where}section [{e.section}] given twice"
    if isinstance(e, configparser.MissingSectionHeaderError):
        return (f"{where}expected a section header such as [architecture_presets] before "
                f"{_show(str(e.line).strip())}")
    if isinstance(e, configparser.ParsingError):
        bad = [f"line {n}: {_show(str(t).strip())}" for n, t in e.errors[:3]]
        return "malformed INI (expected key = value or key: value): " + "; ".join(bad)
    return f"malformed INI ({str(e).splitlines()[0]})"


def parse_config_text(text: str, source: str = "<config>") -> ScaleSimConfig:
    """Parse the text of a SCALE-Sim config; ``source`` names it in errors.

    Raises
    ------
    SpecError
        Listing every problem, each as ``source: [section] Key: expected ..., got '...'``.

    Examples
    --------
    >>> c = parse_config_text("[architature_presets]\\n", "x.cfg")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    simulator.errors.SpecError: x.cfg: missing section [architecture_presets] ...
    """
    cp = configparser.ConfigParser(interpolation=None, strict=True, default_section="\0")
    try:
        cp.read_string(text, source=source)
    except configparser.Error as e:
        raise SpecError(source, [_config_problem(e)]) from None
    except RecursionError:  # pragma: no cover - configparser does not recurse today
        raise SpecError(source, ["malformed INI"]) from None
    problems: list[str] = []
    sections: dict[str, str] = {}
    for real in cp.sections():
        if real.lower() in sections:
            problems.append(f"section [{real}] given twice (SCALE-Sim's section names are "
                            f"read without regard to case: [{sections[real.lower()]}])")
        sections.setdefault(real.lower(), real)
    notes: list[str] = []
    values: dict[str, Any] = {}  # lowercase key -> parsed value, over all known sections
    present: set[str] = set()
    unknown: list[str] = []
    for low, real in sections.items():
        table = _KEYS.get(low)
        if table is None:
            notes.append(f"section [{real}] is not one hwsim reads: ignored")
            continue
        for key, raw in cp.items(real):
            spec = table.get(key)
            if spec is None:
                unknown.append(f"[{real}] {key}")
                continue
            name, kind = spec
            present.add(key)
            v, expected = _value(kind, raw)
            if expected is not None:
                problems.append(f"[{real}] {name}: expected {expected}, got {_show(raw)}")
            elif key not in values:  # a layout key may sit in two sections; the first wins
                values[key] = v
    if unknown:
        notes.append("keys SCALE-Sim does not define, ignored: " + ", ".join(unknown[:10])
                     + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""))
    if "architecture_presets" not in sections:
        problems.append("missing section [architecture_presets] (ArrayHeight, ArrayWidth, "
                        "IfmapSramSzkB, FilterSramSzkB, OfmapSramSzkB, Dataflow, Bandwidth)")
    else:
        arch = sections["architecture_presets"]
        for key in _REQUIRED:
            if key not in present:
                problems.append(f"[{arch}] {_KEYS['architecture_presets'][key][0]}: "
                                "missing required key")
    mode = values.get("interfacebandwidth")
    if "interfacebandwidth" not in present:
        mode = "CALC"
        notes.append("no [run_presets] InterfaceBandwidth: CALC (the bandwidth that never "
                      "stalls the array), as SCALE-Sim v1 computed it")
    bws = values.get("bandwidth")
    if mode == "USER" and "bandwidth" not in present:
        problems.append("[architecture_presets] Bandwidth: missing; InterfaceBandwidth USER "
                        "needs it (words per cycle)")
    if problems:
        raise SpecError(source, problems)
    if bws and len(set(bws)) > 1:
        notes.append(f"Bandwidth lists {len(bws)} values: hwsim uses the first, {bws[0]} "
                     "words/cycle, as SCALE-Sim does")
    if mode == "CALC" and bws:
        notes.append(f"InterfaceBandwidth CALC: Bandwidth {bws[0]} is not used (SCALE-Sim "
                     "computes the bandwidth that never stalls the array)")
    if values.get("sparsitysupport"):
        notes.append("[sparsity] SparsitySupport is on: hwsim runs every layer dense "
                     "(SCALE-Sim's sparse filter mapping is not modelled)")
    if values.get("useramulatortrace"):
        notes.append("UseRamulatorTrace is on: hwsim has no Ramulator DRAM timing; its DRAM is "
                     "one bandwidth")
    if values.get("ifmapcustomlayout") or values.get("filtercustomlayout"):
        notes.append("custom SRAM layouts are on: hwsim does not model SRAM banks or bank "
                     "conflicts")
    ignored = [name for low, table in _KEYS.items() if low != "layout"
               for key, (name, _) in table.items()
               if key in present and key in _UNMODELLED and "customlayout" not in key]
    if ignored:
        notes.append("not modelled by hwsim (SRAM banks, ports and request buffers), ignored: "
                     + ", ".join(dict.fromkeys(ignored)))
    version = 3 if any(k in present for k in _V3_KEYS) or "layout" in sections else 2
    run_name = values.get("run_name") or Path(source).stem or "scale_run"
    return ScaleSimConfig(
        path=source, run_name=run_name, rows=values["arrayheight"], cols=values["arraywidth"],
        ifmap_sram_bytes=values["ifmapsramszkb"] * 1024,
        filter_sram_bytes=values["filtersramszkb"] * 1024,
        ofmap_sram_bytes=values["ofmapsramszkb"] * 1024, dataflow=values["dataflow"],
        bandwidth_mode=mode, bandwidth_words=bws[0] if bws else None, version=version,
        notes=tuple(notes))


def read_config(path: str | os.PathLike) -> ScaleSimConfig:
    """Read a SCALE-Sim ``.cfg`` file (see :func:`parse_config_text`).

    Raises
    ------
    SpecError
        If the file cannot be read, is not UTF-8 INI text, or has malformed values (each
        problem names the file, section, key and value).
    """
    return parse_config_text(_read_text(path, "config"), str(path))


# -- the topology file -----------------------------------------------------------------------
@dataclass(frozen=True)
class ScaleSimLayer:
    """One topology row as an hwsim op; ``fields`` are SCALE-Sim's values by column name."""

    name: str
    op: Conv2d | MatMul
    line: int
    fields: tuple[tuple[str, int], ...]
    sparsity: str | None = None

    @property
    def gemm(self) -> tuple[int, int, int]:
        """SCALE-Sim's (M, N, K): ofmap pixels, filters, window (contraction)."""
        if isinstance(self.op, MatMul):
            return self.op.m, self.op.n, self.op.k
        _, m, n, k = self.op.gemm_shape()
        return m, n, k

    @property
    def macs(self) -> int:
        m, n, k = self.gemm
        return m * n * k


@dataclass(frozen=True)
class ScaleSimTopology:
    """A topology file: its form (``conv`` or ``gemm``), layers and notes."""

    path: str
    name: str
    form: str
    layers: tuple[ScaleSimLayer, ...]
    notes: tuple[str, ...] = ()


_CONV_COLUMNS = ("Layer name", "IFMAP Height", "IFMAP Width", "Filter Height", "Filter Width",
                 "Channels", "Num Filter", "Strides")
_GEMM_COLUMNS = ("Layer", "M", "N", "K")


def _cells(line: str) -> list[str]:
    """A row's cells: a ``#`` comment cut, cells stripped, trailing empty cells dropped."""
    cells = [c.strip() for c in line.split("#", 1)[0].split(",")]
    while cells and not cells[-1]:
        cells.pop()
    return cells


def conv_geometry(h: int, w: int, r: int, s: int, stride: int) -> tuple[int, int, int]:
    """``(h, w, pad)`` of the hwsim Conv2d that has SCALE-Sim's ofmap for this layer.

    SCALE-Sim's ofmap is ``ceil((ifmap - filter + stride) / stride)`` per axis
    (``topology_utils.topo_calc_hyperparams``): when the stride does not divide
    ``ifmap - filter``, the last window reaches past the ifmap and its missing pixels are
    invalid addresses (zeros). hwsim's ``(h + 2 pad - r) // stride + 1`` gets the same ofmap
    with the smallest pad that does it on both axes; when no single pad does (an odd mix of
    axes), the ifmap grows by the rows and columns the last window reaches (pad 0).

    Examples
    --------
    >>> conv_geometry(224, 224, 11, 11, 4)   # AlexNet conv1: a 55 x 55 ofmap
    (224, 224, 2)
    >>> conv_geometry(225, 225, 3, 3, 2), conv_geometry(224, 225, 2, 2, 2)
    ((225, 225, 0), (224, 226, 0))
    """
    want = [-(-(x - f) // stride) + 1 for x, f in ((h, r), (w, s))]
    lo, hi = 0, stride  # pads (times 2) that keep each axis' ofmap at SCALE-Sim's
    for x, f in ((h, r), (w, s)):
        rem = (x - f) % stride
        lo = max(lo, (stride - rem + 1) // 2 if rem else 0)
        hi = min(hi, (2 * stride - rem - 1) // 2 if rem else (stride - 1) // 2)
    if lo <= hi and all((x + 2 * lo - f) // stride + 1 == n
                        for (x, f), n in zip(((h, r), (w, s)), want, strict=True)):
        return h, w, lo
    return (want[0] - 1) * stride + r, (want[1] - 1) * stride + s, 0


def _form(header: list[str]) -> str | None:
    low = [re.sub(r"\s+", " ", h.lower()) for h in header]
    if len(low) >= 4 and low[1:4] == ["m", "n", "k"]:
        return "gemm"
    if len(low) >= 8 and low[1].startswith("ifmap"):
        return "conv"
    return None


def parse_topology_text(text: str, source: str = "<topology>", dtype: str = "int8"
                        ) -> ScaleSimTopology:
    """Parse a SCALE-Sim topology CSV (conv or GEMM form, told apart by the header line).

    Raises
    ------
    SpecError
        Listing every bad row, each as ``source: line N: <column> '<value>': expected ...``.
    """
    dt = get_dtype(dtype)
    lines = text.splitlines()
    rows = [(i, ln) for i, ln in enumerate(lines, 1) if ln.strip()
            and not ln.lstrip().startswith("#")]
    if not rows:
        raise SpecError(source, ["empty: expected a header line (Layer name, IFMAP Height, "
                                 "... or Layer, M, N, K) and one line per layer"])
    hline, htext = rows[0]
    form = _form(_cells(htext))
    if form is None:
        raise SpecError(source, [
            f"line {hline}: header {_show(htext.strip(), 60)}: expected SCALE-Sim's conv header "
            f"({', '.join(_CONV_COLUMNS)},) or its GEMM header ({', '.join(_GEMM_COLUMNS)},)"])
    columns = _CONV_COLUMNS if form == "conv" else _GEMM_COLUMNS
    want = len(columns)
    problems: list[str] = []
    notes: list[str] = []
    layers: list[ScaleSimLayer] = []
    sparse_rows = dp_layers = edge_layers = 0
    for ln, row in rows[1:]:
        cells = _cells(row)
        if len(cells) not in (want, want + 1):
            problems.append(f"line {ln}: {len(cells)} value{'s' if len(cells) != 1 else ''}, "
                            f"expected {want} ({', '.join(columns)}) and an optional sparsity "
                            f"ratio")
            continue
        name = cells[0] or f"layer{len(layers)}"
        vals: dict[str, int] = {}
        for col, cell in zip(columns[1:], cells[1:want], strict=True):
            if _INT.fullmatch(cell) and len(cell) <= 12 and 1 <= int(cell) <= MAX_DIM:
                vals[col] = int(cell)
            else:
                problems.append(f"line {ln}: layer {_show(name)}: {col} {_show(cell)}: expected "
                                f"a whole number from 1 to {MAX_DIM:,}")
        sparsity = None
        if len(cells) > want:
            sparsity = cells[want]
            if not re.fullmatch(r"[0-9]{1,9}(\s*:\s*[0-9]{1,9})?", sparsity):
                problems.append(f"line {ln}: layer {_show(name)}: sparsity {_show(sparsity)}: "
                                "expected a ratio N:M such as 2:4")
                continue
            sparse_rows += 1
        if len(vals) != want - 1:
            continue
        fields = tuple(vals.items())
        try:
            if form == "gemm":
                op: Conv2d | MatMul = MatMul(m=vals["M"], n=vals["N"], k=vals["K"], weight=True,
                                             dtype=dt)
                expanded = [(name, op)]
            else:
                h, w, r, s = (vals[c] for c in _CONV_COLUMNS[1:5])
                if r > h or s > w:
                    problems.append(f"line {ln}: layer {_show(name)}: filter {r}x{s} is larger "
                                    f"than the ifmap {h}x{w} (SCALE-Sim pads nothing)")
                    continue
                c, k, st = vals["Channels"], vals["Num Filter"], vals["Strides"]
                h, w, pad = conv_geometry(h, w, r, s, st)
                if pad or (h, w) != (vals["IFMAP Height"], vals["IFMAP Width"]):
                    edge_layers += 1
                if "DP" in name:  # SCALE-Sim: depthwise, one single-channel layer per channel
                    dp_layers += 1
                    if len(layers) + c > MAX_LAYERS:
                        problems.append(f"line {ln}: layer {_show(name)}: depthwise over {c:,} "
                                        f"channels expands past {MAX_LAYERS:,} layers")
                        break
                    one = Conv2d(n=1, c=1, h=h, w=w, k=k, r=r, s=s, stride=st, pad=pad,
                                 dtype=dt)
                    expanded = [(f"{name}Channel_{i}", one) for i in range(c)]
                else:
                    expanded = [(name, Conv2d(n=1, c=c, h=h, w=w, k=k, r=r, s=s, stride=st,
                                              pad=pad, dtype=dt))]
        except ValueError as e:  # a shape the op refuses (none expected after the checks)
            problems.append(f"line {ln}: layer {_show(name)}: {e}")
            continue
        if len(layers) + len(expanded) > MAX_LAYERS:
            problems.append(f"line {ln}: more than {MAX_LAYERS:,} layers")
            break
        layers.extend(ScaleSimLayer(n, op, ln, fields, sparsity) for n, op in expanded)
        if len(problems) >= 50:
            problems.append("(stopped after 50 problems)")
            break
    if not problems and not layers:
        problems.append(f"no layers after the header on line {hline}")
    if problems:
        raise SpecError(source, problems)
    if sparse_rows:
        notes.append(f"{sparse_rows} layer{'s give' if sparse_rows > 1 else ' gives'} a "
                     "sparsity ratio: hwsim runs every layer dense")
    if edge_layers:
        notes.append(f"{edge_layers} conv layer{'s' if edge_layers > 1 else ''} whose stride "
                     "does not divide ifmap - filter: SCALE-Sim's last window reaches past the "
                     "ifmap (ofmap = ceil((ifmap - filter) / stride) + 1, the missing pixels "
                     "zeros); hwsim pads the op to the same ofmap (conv_geometry)")
    if dp_layers:
        notes.append(f"{dp_layers} depthwise layer{'s' if dp_layers > 1 else ''} ('DP' in the "
                     "name) run as one single-channel layer per channel, as SCALE-Sim does")
    return ScaleSimTopology(path=source, name=Path(source).stem, form=form,
                            layers=tuple(layers), notes=tuple(notes))


def read_topology(path: str | os.PathLike, dtype: str = "int8") -> ScaleSimTopology:
    """Read a SCALE-Sim topology ``.csv`` (see :func:`parse_topology_text`).

    Raises
    ------
    SpecError
        If the file cannot be read or a row is malformed (naming the file, line and column).
    """
    return parse_topology_text(_read_text(path, "topology"), str(path), dtype)


# -- the hwsim device ------------------------------------------------------------------------
def _word_bytes(dtype: str) -> float:
    return float(get_dtype(dtype).bytes)


def device_overrides(cfg: ScaleSimConfig, *, dtype: str = "int8", clock_hz: float = 1e9,
                     calc_stall_free: bool = True) -> dict[str, str]:
    """``load_arch`` overrides that turn :data:`BASE_ARCH` into the configured array.

    One MAC per PE per cycle in the study's dtype (SCALE-Sim's PE is a MAC of one word; the
    array lists only that dtype, so the silicon model sizes its PEs for it), the SRAM sizes
    in bytes, the dataflow, and DRAM bandwidth ``words/cycle x word bytes x clock``
    (``CALC``: :data:`CALC_WORDS_PER_CYCLE` if ``calc_stall_free``, else ``Bandwidth`` or
    the base spec's). The on-chip level holds the three SRAMs and reads
    ``3 x max(rows, cols)`` words per cycle (the base spec's rule).
    """
    wb = _word_bytes(dtype)
    cls = get_dtype(dtype).compute_class
    flops = 2 * cfg.rows * cfg.cols
    classes = (cls,)  # the PEs run (and the area model sizes them for) the study's dtype
    ov = {
        "description": json.dumps(f"SCALE-Sim config {cfg.run_name[:80]}: {cfg.describe()}"),
        "compute.pe_array.shape": f"[{cfg.rows}, {cfg.cols}]",
        "compute.pe_array.flops_per_cycle": "{" + ", ".join(f"{c}: {flops}" for c in classes)
                                            + "}",
        "compute.pe_array.clock": f"{clock_hz!r} Hz",
        "compute.vector.clock": f"{clock_hz!r} Hz",
        "params.dataflow": cfg.dataflow,
        "params.sram": "{" + ", ".join(f"{k}: {v}" for k, v in cfg.sram_bytes.items()) + "}",
        "params.compute_efficiency": "{" + ", ".join(f"{c}: 1.0" for c in classes) + "}",
        "memory.sram.capacity": f"{sum(cfg.sram_bytes.values())} B",
        "memory.sram.bandwidth": f"{3 * max(cfg.rows, cfg.cols) * wb * clock_hz!r} B/s",
    }
    if cfg.bandwidth_mode == "CALC" and calc_stall_free:  # capped at the spec's 1 EB/s
        ov["memory.dram.bandwidth"] = f"{min(CALC_WORDS_PER_CYCLE * wb * clock_hz, 1e18)!r} B/s"
    elif cfg.bandwidth_words is not None:
        ov["memory.dram.bandwidth"] = f"{cfg.bandwidth_words * wb * clock_hz!r} B/s"
    return ov


def build_system(cfg: ScaleSimConfig, *, dtype: str = "int8", clock_hz: float = 1e9,
                 calc_stall_free: bool = True):
    """The hwsim :class:`~simulator.arch.spec.System` of the configured array.

    Raises
    ------
    SpecError
        Naming the config file, if the spec's validation refuses the configured array.
    """
    from simulator.arch.loader import load_arch

    ov = device_overrides(cfg, dtype=dtype, clock_hz=clock_hz, calc_stall_free=calc_stall_free)
    try:
        return load_arch(BASE_ARCH, ov)
    except SpecError as e:
        raise SpecError(cfg.path, [f"as an hwsim spec ({BASE_ARCH} with this array at "
                                   f"{clock_hz:g} Hz, {dtype}): {p}" for p in e.problems]
                        ) from None


# -- the study -------------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerReport:
    """One layer in SCALE-Sim's report terms (counts in words) plus hwsim's figures."""

    layer_id: int
    name: str
    op: str
    total_cycles: int
    prefetch_cycles: int
    compute_cycles: int
    stall_cycles: int
    overall_util_pct: float
    mapping_efficiency_pct: float
    compute_util_pct: float
    sram_words: dict[str, float]   # ifmap, filter reads; ofmap writes (words)
    dram_words: dict[str, float]   # ifmap, filter reads; ofmap writes (words)
    latency_s: float
    energy_j: float
    dynamic_energy_j: float
    static_energy_j: float
    bound: str

    def compute_row(self, version: int = 2) -> list[Any]:
        row = [self.layer_id, self.total_cycles, self.stall_cycles,
               round(self.overall_util_pct, 6), round(self.mapping_efficiency_pct, 6),
               round(self.compute_util_pct, 6)]
        if version == 3:  # Total Cycles (incl. prefetch), Total Cycles (without), Stall
            without = max(self.compute_cycles, self.total_cycles - self.prefetch_cycles)
            row[1:3] = [self.total_cycles, without, without - self.compute_cycles]
        return row

    def bandwidth_row(self) -> list[Any]:
        t = max(self.total_cycles, 1)
        return [self.layer_id, *(round(d[o] / t, 6) for d in (self.sram_words, self.dram_words)
                                 for o in ("ifmap", "filter", "ofmap"))]

    def detail_row(self) -> list[Any]:
        stop = max(self.total_cycles - 1, 0)
        return [self.layer_id, *(x for d in (self.sram_words, self.dram_words)
                                 for o in ("ifmap", "filter", "ofmap")
                                 for x in (0, stop, _whole(d[o])))]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _whole(x: float) -> int:
    """Up to a whole count (cycles, words), ignoring float noise."""
    return int(math.ceil(x - 1e-6)) if x > 0 else 0


def _mapping_efficiency(dataflow: str, m: int, n: int, k: int, rows: int, cols: int) -> float:
    """SCALE-Sim's mean over folds of used PEs / all PEs: the spatial dimensions per dataflow
    are (rows, cols) = os (M, N), ws (K, N), is (K, M) (``calc_spatio_temporal_params``)."""
    sr, sc = {"os": (m, n), "ws": (k, n), "is": (k, m)}[dataflow]
    return sr * sc / (math.ceil(sr / rows) * rows * math.ceil(sc / cols) * cols)


def layer_report(layer_id: int, layer: ScaleSimLayer, cost: Any, cfg: ScaleSimConfig,
                 *, dtype: str = "int8", static_w: float = 0.0) -> LayerReport:
    """SCALE-Sim's report figures of one layer from its hwsim :class:`OpCost` (systolic)."""
    d = cost.details
    wb = _word_bytes(dtype)
    arrays = int(d.get("arrays", 1))
    total = _whole(float(d["cycles"]))
    compute = min(_whole(float(d["compute_cycles"])), total)
    m, n, k = layer.gemm
    pes = cfg.rows * cfg.cols * arrays
    dram = {o: float(d["dram_bytes"].get(o, 0.0)) / wb for o in ("ifmap", "filter", "ofmap")}
    sram = {o: float(d["sram_bytes"].get(o, 0.0)) / wb for o in ("ifmap", "filter", "ofmap")}
    # SCALE-Sim's ofmap column counts the writes alone (every partial sum of ws/is once per K
    # fold), not the read-backs hwsim's ofmap SRAM traffic also holds
    sram["ofmap"] = float(d["sram_writes"]["ofmap"]) / wb
    static = static_w * cost.latency_s
    return LayerReport(
        layer_id=layer_id, name=layer.name, op=layer.op.describe(), total_cycles=total,
        prefetch_cycles=min(_whole(float(d.get("first_load_cycles", 0.0))), total),
        compute_cycles=compute, stall_cycles=total - compute,
        overall_util_pct=100.0 * layer.macs / (max(total, 1) * pes),
        mapping_efficiency_pct=100.0 * _mapping_efficiency(
            str(d.get("dataflow", cfg.dataflow)), m, n, k, cfg.rows, cfg.cols),
        compute_util_pct=100.0 * float(d["utilization"]), sram_words=sram, dram_words=dram,
        latency_s=cost.latency_s, energy_j=cost.energy_j + static,
        dynamic_energy_j=cost.energy_j, static_energy_j=static, bound=cost.bound)


def run_study(cfg: ScaleSimConfig, topology: ScaleSimTopology, system: Any, *,
              dtype: str = "int8", schedule: str | None = None,
              on_note: Callable[[str], None] | None = None) -> list[LayerReport]:
    """Cost every layer on ``system`` (from :func:`build_system`) with the config's dataflow.

    ``schedule`` (``scalesim`` or ``best``) is passed as ``MapOptions.schedule`` when this
    hwsim has that field; otherwise ``on_note`` hears that it was not applied.

    Raises
    ------
    HwsimError
        Naming the topology file, line and layer, if a layer cannot be costed.
    """
    from simulator.mapping.base import MapOptions
    from simulator.mapping.registry import Mapper

    kw: dict[str, Any] = {"dataflow": cfg.dataflow}
    if schedule is not None:
        if "schedule" in {f.name for f in dataclasses.fields(MapOptions)}:
            kw["schedule"] = schedule
        elif on_note is not None:
            on_note(f"schedule {schedule!r} not applied: this hwsim's MapOptions has no "
                    "schedule yet; each GEMM keeps SCALE-Sim's schedule or an SRAM-blocked "
                    "one, whichever moves fewer DRAM bytes")
    try:
        mapper = Mapper(system.device, MapOptions(**kw))
    except (TypeError, ValueError) as e:
        raise HwsimError(f"--schedule {schedule}: {e}") from None
    static_w = system.device.power.static_w
    out = []
    for i, layer in enumerate(topology.layers):
        try:
            cost = mapper.cost(layer.op)
        except (HwsimError, ValueError, ArithmeticError) as e:
            raise HwsimError(f"{topology.path}: line {layer.line}: layer {layer.name!r}: {e}"
                             ) from None
        method = cost.details.get("scalesim_method") or ""
        if on_note is not None and method.startswith("closed form, ideal"):
            on_note(f"layer {layer.name!r}: {method}")
        out.append(layer_report(i, layer, cost, cfg, dtype=dtype, static_w=static_w))
    return out


def totals(reports: Iterable[LayerReport]) -> dict[str, Any]:
    """Sums over the layers (cycles, words, latency, energy) and cycle-weighted utilisation."""
    rs = list(reports)
    cyc = sum(r.total_cycles for r in rs)
    out: dict[str, Any] = {
        "layers": len(rs), "total_cycles": cyc, "stall_cycles": sum(r.stall_cycles for r in rs),
        "compute_cycles": sum(r.compute_cycles for r in rs),
        "sram_words": {o: sum(r.sram_words[o] for r in rs) for o in ("ifmap", "filter", "ofmap")},
        "dram_words": {o: sum(r.dram_words[o] for r in rs) for o in ("ifmap", "filter", "ofmap")},
        "latency_s": sum(r.latency_s for r in rs), "energy_j": sum(r.energy_j for r in rs),
        "dynamic_energy_j": sum(r.dynamic_energy_j for r in rs),
        "static_energy_j": sum(r.static_energy_j for r in rs),
    }
    out["overall_util_pct"] = (sum(r.overall_util_pct * r.total_cycles for r in rs) / cyc
                               if cyc else 0.0)
    return out


def report_csv(columns: list[str], rows: Iterable[list[Any]]) -> str:
    """A report in SCALE-Sim's CSV style: ``a, b, c,`` lines (a trailing comma on each)."""
    lines = [", ".join(columns) + ","]
    lines += [", ".join(str(x) for x in row) + "," for row in rows]
    return "\n".join(lines) + "\n"
