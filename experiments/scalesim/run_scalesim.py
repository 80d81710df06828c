"""Generate the SCALE-Sim v3 reference data set (reference.csv) for hwsim's systolic model.

Run with the interpreter of a venv that has ``scalesim==3.0.0`` and ``numpy<2``:

    python3 -m venv /tmp/scalesim-venv
    /tmp/scalesim-venv/bin/pip install scalesim "numpy<2"
    /tmp/scalesim-venv/bin/python experiments/scalesim/run_scalesim.py [--jobs 2] [--only NAME,...]

It (re)writes the inputs under ``inputs/`` (one cfg per array x dataflow, one GEMM and one
conv topology CSV) and then runs every (array, dataflow, layer) through SCALE-Sim's own
``single_layer_sim`` -- the same code path ``scalesim.scale`` takes per layer, minus the trace
and report files -- timing each layer, and writes ``reference.csv``.

Stdlib + scalesim only. See README.md and SEMANTICS.md next to this file.
"""

import argparse
import csv
import multiprocessing
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
INPUTS = os.path.join(HERE, "inputs")
OUT_CSV = os.path.join(HERE, "reference.csv")

# Fixed DRAM interface bandwidth, words per cycle (a word is 1 byte: SCALE-Sim hard-codes
# word_size = 1 in single_layer_sim.run). In USER mode SCALE-Sim takes the ifmap and filter
# DRAM bandwidths from [layout] IfmapSRAMBankBandwidth / FilterSRAMBankBandwidth and only the
# ofmap one from [architecture_presets] Bandwidth, so all three are set to this value.
BANDWIDTH = 10

# (rows, cols, ifmap kB, filter kB, ofmap kB)
ARRAYS = [
    (16, 16, 16, 16, 16),
    (32, 32, 64, 64, 64),
]
DATAFLOWS = ["os", "ws", "is"]

# GEMM topology rows: name, M, N, K  (K is the contraction dim; SCALE-Sim maps it to a conv
# with ifmap M x K, filter 1 x K, 1 channel, N filters, stride 1 -> Sr=M, Sc=N, T=K for os).
GEMMS = [
    ("g_64x64x64", 64, 64, 64),
    ("g_256x128x512", 256, 128, 512),
    ("g_128x128x128", 128, 128, 128),
    ("g_100x60x70", 100, 60, 70),
    ("g_33x47x129", 33, 47, 129),
    ("g_512x64x64", 512, 64, 64),
    ("g_64x256x64", 64, 256, 64),
    ("g_64x64x512", 64, 64, 512),
    ("g_200x96x150", 200, 96, 150),
    ("g_8x256x256", 8, 256, 256),
    ("g_96x96x300", 96, 96, 300),
    ("g_48x200x40", 48, 200, 40),
    ("g_320x40x96", 320, 40, 96),
    ("g_17x17x17", 17, 17, 17),
    ("g_128x512x16", 128, 512, 16),
    ("g_64x2048x16", 64, 2048, 16),
]

# Conv topology rows: name, ifmap h, ifmap w, filter h, filter w, channels, num filters, stride.
# No padding (SCALE-Sim has none); ofmap = ceil((H - Fh + s) / s), so when (H - Fh) % s != 0 the
# last ofmap row/col is a window that runs off the ifmap (its out-of-range taps are address -1).
CONVS = [
    ("c_cifar_stem", 32, 32, 3, 3, 3, 16, 1),
    ("c_res_3x3_16", 16, 16, 3, 3, 16, 16, 1),
    ("c_res_3x3_s2_ragged", 16, 16, 3, 3, 16, 32, 2),
    ("c_res_3x3_s2", 17, 17, 3, 3, 16, 32, 2),
    ("c_pw_32to64", 16, 16, 1, 1, 32, 64, 1),
    ("c_pw_s2_ragged", 16, 16, 1, 1, 32, 64, 2),
    ("c_res_3x3_64", 8, 8, 3, 3, 64, 64, 1),
    ("c_alex_5x5", 31, 31, 5, 5, 8, 24, 1),
    ("c_alex_11x11_s4", 63, 63, 11, 11, 3, 32, 4),
    ("c_stem_7x7_s2", 37, 37, 7, 7, 3, 16, 2),
    ("c_3x3_32to48", 12, 12, 3, 3, 32, 48, 1),
    ("c_pw_64to128", 14, 14, 1, 1, 64, 128, 1),
    ("c_3x3_128_deep", 6, 6, 3, 3, 128, 128, 1),
    ("c_5x5_16to20", 20, 20, 5, 5, 16, 20, 1),
    ("c_3x3_24to40", 10, 10, 3, 3, 24, 40, 1),
    ("c_pw_256to32", 7, 7, 1, 1, 256, 32, 1),
    ("c_patch_2x2_s2", 16, 16, 2, 2, 16, 16, 2),
    ("c_3x3_s2_64to96", 15, 15, 3, 3, 64, 96, 2),
    ("c_3x3_8to8_wide", 34, 34, 3, 3, 8, 8, 1),
    ("c_1x7_asym", 12, 18, 1, 7, 16, 24, 1),
    ("c_res_28x28_64", 30, 30, 3, 3, 64, 64, 1),
]


def conv_ofmap(h, w, fh, fw, s):
    """SCALE-Sim's ofmap dims (topology_utils.topo_calc_hyperparams)."""
    return -(-(h - fh + s) // s), -(-(w - fw + s) // s)


def layers():
    """All layers as dicts with their GEMM view (M ofmap px, N filters, K window)."""
    out = []
    for i, (name, m, n, k) in enumerate(GEMMS):
        out.append(dict(name=name, kind="gemm", topo_index=i, M=m, N=n, K=k,
                        ifmap_h="", ifmap_w="", filter_h="", filter_w="",
                        channels="", num_filters="", stride=""))
    for i, (name, h, w, fh, fw, c, nf, s) in enumerate(CONVS):
        oh, ow = conv_ofmap(h, w, fh, fw, s)
        out.append(dict(name=name, kind="conv", topo_index=i, M=oh * ow, N=nf, K=fh * fw * c,
                        ifmap_h=h, ifmap_w=w, filter_h=fh, filter_w=fw,
                        channels=c, num_filters=nf, stride=s))
    return out


CFG_TEMPLATE = """[general]
run_name = {run_name}

[architecture_presets]
ArrayHeight = {rows}
ArrayWidth = {cols}
IfmapSramSzkB = {ifmap_kb}
FilterSramSzkB = {filter_kb}
OfmapSramSzkB = {ofmap_kb}
IfmapOffset = 0
FilterOffset = 10000000
OfmapOffset = 20000000
Bandwidth = {bw}
Dataflow = {df}
ReadRequestBuffer = 32
WriteRequestBuffer = 32

[layout]
IfmapCustomLayout = False
IfmapSRAMBankBandwidth = {bw}
IfmapSRAMBankNum = 1
IfmapSRAMBankPort = 2
FilterCustomLayout = False
FilterSRAMBankBandwidth = {bw}
FilterSRAMBankNum = 1
FilterSRAMBankPort = 2

[sparsity]
SparsitySupport = false
SparseRep = ellpack_block
OptimizedMapping = false
BlockSize = 8
RandomNumberGeneratorSeed = 40

[run_presets]
InterfaceBandwidth = USER
UseRamulatorTrace = False
"""


def cfg_path(rows, cols, df):
    return os.path.join(INPUTS, f"scalesim_{rows}x{cols}_{df}.cfg")


GEMM_TOPO = os.path.join(INPUTS, "gemm_topology.csv")
CONV_TOPO = os.path.join(INPUTS, "conv_topology.csv")


def write_inputs():
    os.makedirs(INPUTS, exist_ok=True)
    for rows, cols, ikb, fkb, okb in ARRAYS:
        for df in DATAFLOWS:
            with open(cfg_path(rows, cols, df), "w") as f:
                f.write(CFG_TEMPLATE.format(run_name=f"hwsim_ref_{rows}x{cols}_{df}", rows=rows,
                                            cols=cols, ifmap_kb=ikb, filter_kb=fkb,
                                            ofmap_kb=okb, bw=BANDWIDTH, df=df))
    # SCALE-Sim drops the last comma-separated field of every row: rows must end with ','.
    with open(GEMM_TOPO, "w") as f:
        f.write("Layer, M, N, K,\n")
        for name, m, n, k in GEMMS:
            f.write(f"{name}, {m}, {n}, {k},\n")
    with open(CONV_TOPO, "w") as f:
        f.write("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
                "Num Filter, Strides,\n")
        for name, h, w, fh, fw, c, nf, s in CONVS:
            f.write(f"{name}, {h}, {w}, {fh}, {fw}, {c}, {nf}, {s},\n")


FIELDS = [
    "array_rows", "array_cols", "ifmap_sram_kb", "filter_sram_kb", "ofmap_sram_kb",
    "bandwidth_words_per_cycle", "dataflow", "layer", "kind", "M", "N", "K",
    "ifmap_h", "ifmap_w", "filter_h", "filter_w", "channels", "num_filters", "stride",
    "total_cycles_incl_prefetch", "total_cycles", "stall_cycles", "compute_cycles",
    "overall_util_pct", "mapping_eff_pct", "compute_util_pct",
    "sram_ifmap_reads", "sram_filter_reads", "sram_ofmap_writes",
    "dram_ifmap_reads", "dram_filter_reads", "dram_ofmap_writes",
    "sram_ifmap_start", "sram_ifmap_stop", "sram_filter_start", "sram_filter_stop",
    "sram_ofmap_start", "sram_ofmap_stop",
    "dram_ifmap_start", "dram_ifmap_stop", "dram_filter_start", "dram_filter_stop",
    "dram_ofmap_start", "dram_ofmap_stop",
    "scalesim_wall_s",
]


def run_one(task):
    """Run one (array, dataflow, layer) through scalesim.single_layer_sim; returns a CSV row."""
    (rows, cols, ikb, fkb, okb), df, layer = task
    from scalesim.layout_utils import layouts
    from scalesim.scale_config import scale_config
    from scalesim.single_layer_sim import single_layer_sim
    from scalesim.topology_utils import topologies

    conf = scale_config()
    conf.read_conf_file(cfg_path(rows, cols, df))
    topo = topologies()
    gemm = layer["kind"] == "gemm"
    topo.load_arrays(topofile=GEMM_TOPO if gemm else CONV_TOPO, mnk_inputs=gemm)
    lid = layer["topo_index"]
    assert topo.topo_arrays[lid][0] == layer["name"], (topo.topo_arrays[lid], layer)

    t0 = time.time()
    sim = single_layer_sim()
    sim.set_params(layer_id=lid, config_obj=conf, topology_obj=topo, layout_obj=layouts(),
                   verbose=False)
    sim.run()
    comp = sim.get_compute_report_items()
    det = sim.get_detail_report_items()
    wall = time.time() - t0

    overall, total, stall, util, map_eff, comp_util = comp
    (si_a, si_b, si_n, sf_a, sf_b, sf_n, so_a, so_b, so_n,
     di_a, di_b, di_n, df_a, df_b, df_n, do_a, do_b, do_n) = det
    row = dict(
        array_rows=rows, array_cols=cols, ifmap_sram_kb=ikb, filter_sram_kb=fkb,
        ofmap_sram_kb=okb, bandwidth_words_per_cycle=BANDWIDTH, dataflow=df,
        layer=layer["name"], kind=layer["kind"], M=layer["M"], N=layer["N"], K=layer["K"],
        ifmap_h=layer["ifmap_h"], ifmap_w=layer["ifmap_w"], filter_h=layer["filter_h"],
        filter_w=layer["filter_w"], channels=layer["channels"],
        num_filters=layer["num_filters"], stride=layer["stride"],
        total_cycles_incl_prefetch=int(overall), total_cycles=int(total),
        stall_cycles=int(stall), compute_cycles=int(total) - int(stall),
        overall_util_pct=f"{util:.6f}", mapping_eff_pct=f"{map_eff:.6f}",
        compute_util_pct=f"{comp_util:.6f}",
        sram_ifmap_reads=int(si_n), sram_filter_reads=int(sf_n), sram_ofmap_writes=int(so_n),
        dram_ifmap_reads=int(di_n), dram_filter_reads=int(df_n), dram_ofmap_writes=int(do_n),
        sram_ifmap_start=int(si_a), sram_ifmap_stop=int(si_b),
        sram_filter_start=int(sf_a), sram_filter_stop=int(sf_b),
        sram_ofmap_start=int(so_a), sram_ofmap_stop=int(so_b),
        dram_ifmap_start=int(di_a), dram_ifmap_stop=int(di_b),
        dram_filter_start=int(df_a), dram_filter_stop=int(df_b),
        dram_ofmap_start=int(do_a), dram_ofmap_stop=int(do_b),
        scalesim_wall_s=f"{wall:.3f}",
    )
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2, help="parallel worker processes")
    ap.add_argument("--only", default="", help="comma-separated layer names to run")
    ap.add_argument("--out", default=OUT_CSV)
    args = ap.parse_args(argv)

    write_inputs()
    only = {s for s in args.only.split(",") if s}
    tasks = [(arr, df, layer) for arr in ARRAYS for df in DATAFLOWS for layer in layers()
             if not only or layer["name"] in only]
    # Longest first keeps the two workers busy to the end (rough cost: demand elements).
    tasks.sort(key=lambda t: -(t[2]["M"] * t[2]["N"] * t[2]["K"]))
    t0 = time.time()
    rows = []
    with multiprocessing.Pool(args.jobs) as pool:
        for row in pool.imap_unordered(run_one, tasks):
            rows.append(row)
            print(f"[{time.time() - t0:7.1f}s] {len(rows)}/{len(tasks)} "
                  f"{row['array_rows']}x{row['array_cols']} {row['dataflow']} {row['layer']}: "
                  f"{row['total_cycles']} cyc, {row['scalesim_wall_s']} s", flush=True)
    order = {(a[0], d, lay["name"]): i for i, (a, d, lay) in
             enumerate((a, d, lay) for a in ARRAYS for d in DATAFLOWS for lay in layers())}
    rows.sort(key=lambda r: order[(r["array_rows"], r["dataflow"], r["layer"])])
    with open(args.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {len(rows)} rows to {args.out} in {time.time() - t0:.1f}s")


if __name__ == "__main__":
    sys.exit(main())
