"""SCALE-Sim v3's memory model: DRAM traffic per operand, stalls and total cycles.

What ``--schedule scalesim`` runs (:mod:`simulator.mapping.systolic_core`), so a study
reproduces SCALE-Sim's numbers; hwsim's own schedule (``best``) is the SRAM tiling search.
Derived from SCALE-Sim 3.0.0's source (MIT) and checked row by row against its output in
experiments/scalesim/ (SEMANTICS.md there says which source function each piece mirrors):

- :func:`closed_form`: O(1) formulas. Exact for compute cycles and SRAM accesses always, and
  for DRAM traffic and total cycles when each operand's fetch stream fits the active half of
  its SRAM; an ideal-streaming estimate otherwise.
- :func:`replay`: SCALE-Sim's read buffers (a FIFO window of hashed lines over the fetch
  order, not a cache), write buffer and per-demand-line stall accumulation, re-executed from
  index arithmetic instead of numpy matrices. Exact on every reference row, spills included;
  slower (linear in the demanded elements).
- :func:`scalesim_layer`: the closed form when nothing spills (no read operand outgrows the
  active half of its SRAM, the ofmap writes fit the write buffer), else the replay, up to
  :data:`REPLAY_BUDGET` demand entries (a few seconds); beyond it the closed form, with a note
  (a GPT-2-sized layer would take minutes).

SCALE-Sim counts words (1 byte each, hard-coded) and gives each of the ifmap, filter and
ofmap interfaces its own ``bandwidth_words`` per cycle.
"""

from __future__ import annotations

import functools
import math
from collections import defaultdict
from typing import Any

__all__ = ["Layer", "closed_form", "replay", "spills", "scalesim_layer", "ACTIVE_FRAC",
           "HIT_LATENCY"]

ACTIVE_FRAC = 0.5       # single_layer_sim.run: active_buf_frac = 0.5
HIT_LATENCY = 1         # read_buffer.hit_latency; read_port.latency = 1; write_port.latency = 0


def cdiv(a, b):
    return -(-a // b)


# --------------------------------------------------------------------------------------------
# Layer geometry
# --------------------------------------------------------------------------------------------

class Layer:
    """GEMM view of one SCALE-Sim layer: M ofmap pixels, N filters, K = Fh*Fw*C window."""

    def __init__(self, *, rows: int, cols: int, dataflow: str, m: int, n: int, k: int,
                 bandwidth_words: int, sram_words: dict[str, int],
                 conv: tuple[int, int, int, int, int, int] | None = None):
        """``conv = (H, W, Fh, Fw, channels, stride)`` of the ifmap and filter, else a GEMM
        (SCALE-Sim's GEMM form: an M x K ifmap and N filters of 1 x K)."""
        self.R, self.C, self.df = int(rows), int(cols), dataflow
        self.kind = "conv" if conv else "gemm"
        self.M, self.N, self.K = int(m), int(n), int(k)
        self.B = max(1, int(bandwidth_words))
        self.sram_words = {o: max(1, int(sram_words[o])) for o in ("ifmap", "filter", "ofmap")}
        if conv:
            self.H, self.W, self.Fh, self.Fw, self.Ch, self.s = (int(x) for x in conv)
        else:  # topology_utils.load_arrays_gemm: ifmap M x K, filter 1 x K, 1 channel, stride 1
            self.H, self.W, self.Fh, self.Fw, self.Ch, self.s = self.M, self.K, 1, self.K, 1, 1
        self.Oh = cdiv(self.H - self.Fh + self.s, self.s)
        self.Ow = cdiv(self.W - self.Fw + self.s, self.s)
        if self.Oh * self.Ow != self.M or self.Fh * self.Fw * self.Ch != self.K:
            raise ValueError(f"SCALE-Sim layer: conv {conv} gives M={self.Oh * self.Ow}, "
                             f"K={self.Fh * self.Fw * self.Ch}, not M={m}, K={k}")
        # (Sr, Sc, T): topology_utils.calc_spatio_temporal_params / systolic_compute_*.set_params
        self.Sr, self.Sc, self.T = {"os": (self.M, self.N, self.K),
                                    "ws": (self.K, self.N, self.M),
                                    "is": (self.K, self.M, self.N)}[self.df]
        self.row_fold = cdiv(self.Sr, self.R)
        self.col_fold = cdiv(self.Sc, self.C)
        self.folds = self.row_fold * self.col_fold
        R, C, T = self.R, self.C, self.T
        self.lines_per_fold = T + R + C - 2 if self.df == "os" else 2 * R + C + T - 2

    def ifmap_addr(self, m, k):
        """operand_matrix.calc_ifmap_elem_addr (ifmap offset 0); -1 for a tap off the ifmap."""
        oy, ox = divmod(m, self.Ow)
        iy, ix = oy * self.s, ox * self.s
        fy, rem = divmod(k, self.Fw * self.Ch)
        fx, ch = divmod(rem, self.Ch)
        if fy + iy >= self.H or fx + ix >= self.W:
            return -1
        return ((iy + fy) * self.W + (ix + fx)) * self.Ch + ch

    def valid_ifmap_entries(self):
        """Number of im2col entries that are not -1 (only < M*K for ragged strided convs)."""
        vy = sum(1 for oy in range(self.Oh) for fy in range(self.Fh) if oy * self.s + fy < self.H)
        vx = sum(1 for ox in range(self.Ow) for fx in range(self.Fw) if ox * self.s + fx < self.W)
        return self.Ch * vy * vx


# --------------------------------------------------------------------------------------------
# Closed forms (SEMANTICS.md sections 2-6)
# --------------------------------------------------------------------------------------------

def buffer_geometry(sram_words, B):
    """read_buffer.set_params / prepare_hashed_buffer constants."""
    active = math.ceil(sram_words * ACTIVE_FRAC)            # words in the active half
    prefetch = sram_words - active                          # words in the prefetch half
    eps = math.ceil(sram_words / 100)                       # elements per hashed line ("set")
    return dict(active=active, prefetch=prefetch, eps=eps,
                max_active_lines=cdiv(active, eps), max_prefetch_lines=cdiv(prefetch, eps),
                init_lines_cap=cdiv(active, B),             # DRAM lines of the first fill
                pf_words=cdiv(prefetch, B) * B,             # words counted per new_prefetch
                pf_cycles=cdiv(prefetch, B) + 1)            # DRAM-clock advance per new_prefetch


def operand_streams(L):
    """Per read operand: (padded fetch-matrix size, non-null elements, passes) -- SEMANTICS 4.2."""
    M, N, K, R, C = L.M, L.N, L.K, L.R, L.C
    vi = L.valid_ifmap_entries()
    if L.df == "os":
        # ifmap fetch = row folds in order, re-streamed once per column fold;
        # filter fetch = column folds in order, each block reused by row_fold consecutive folds.
        return {"ifmap": (cdiv(M, R) * R * K, vi, L.col_fold),
                "filter": (cdiv(N, C) * C * K, K * N, 1)}
    if L.df == "ws":
        return {"ifmap": (cdiv(K, R) * R * M, vi, L.col_fold),
                "filter": (cdiv(N, C) * C * K, K * N, 1)}
    return {"ifmap": (cdiv(M, C) * C * K, vi, 1),
            "filter": (cdiv(K, R) * R * N, K * N, L.col_fold)}


def read_dram_closed(sram_words, B, f_pad, nn, passes):
    """One read_buffer under ideal sequential streaming (SEMANTICS.md 4.3).

    Returns (DRAM words, stream positions in [0, 1) of the demand at each new_prefetch, geometry).
    """
    g = buffer_geometry(sram_words, B)
    init = min(g["init_lines_cap"], cdiv(f_pad, B)) * B
    n_lines = nn // g["eps"] + 1
    if n_lines <= g["max_active_lines"]:
        return init, [], g
    A = g["max_active_lines"]
    P = min(g["max_prefetch_lines"], n_lines - A)
    n_pf = cdiv(passes * n_lines - A, P)
    # prefetch k (1-based) is triggered when the demand first needs stream line A + (k-1)P
    # (counted over all passes); as a fraction of the whole demand of this operand:
    where = [min(1.0, (A + (k - 1) * P) / (passes * n_lines)) for k in range(1, n_pf + 1)]
    return init + n_pf * g["pf_words"], where, g


def stall_recurrence(events):
    """double_buffered_scratchpad.service_memory_requests + read_buffer.service_reads for a
    list of (demand line, DRAM-ready cycle) misses: a miss at line l, met at cycle l + S + 1,
    stalls 2 * (ready - (l + S + 1)) when positive (the offset is added twice, sic)."""
    stall = 0
    for line, ready in sorted(events):
        t = line + stall + HIT_LATENCY
        if ready > t:
            stall += 2 * (ready - t)
    return stall


def closed_form(L: Layer) -> dict[str, float]:
    M, N, K, R, C, B = L.M, L.N, L.K, L.R, L.C, L.B
    out = {}
    compute = L.folds * L.lines_per_fold - 1
    out["compute_cycles"] = compute
    if L.df == "os":
        out["sram_ifmap_reads"] = L.col_fold * M * K
        out["sram_filter_reads"] = L.row_fold * K * N
        out["sram_ofmap_writes"] = M * N + L.folds * (R + C)   # the (R+C)/fold is a scalesim bug
        ofmap_words = M * N
    elif L.df == "ws":
        out["sram_ifmap_reads"] = L.col_fold * M * K
        out["sram_filter_reads"] = K * N
        out["sram_ofmap_writes"] = L.row_fold * M * N          # partial sums per K fold
        ofmap_words = L.row_fold * M * N
    else:
        out["sram_ifmap_reads"] = M * K
        out["sram_filter_reads"] = L.col_fold * K * N
        out["sram_ofmap_writes"] = L.row_fold * M * N
        ofmap_words = L.row_fold * M * N
    events = []
    for op, (f_pad, nn, passes) in operand_streams(L).items():
        words, where, g = read_dram_closed(L.sram_words[op], B, f_pad, nn, passes)
        out[f"dram_{op}_reads"] = words
        # each operand's prefetches are chained on its own port from cycle 0 (the first fill
        # is free): prefetch k is ready at k * (ceil(prefetch/B) + 1) - 1
        events += [(int(w * (compute + 1)), k * g["pf_cycles"] - 1)
                   for k, w in enumerate(where, start=1)]
    out["dram_ofmap_writes"] = ofmap_words
    stall = stall_recurrence(events)
    # ofmap: the write buffer sustains B words/cycle and absorbs its whole size; what is left at
    # the end drains after the last demand line (not in total_cycles).
    So = L.sram_words["ofmap"]
    stall = max(stall, cdiv(max(0, ofmap_words - So), B) - compute)
    out["stall_cycles"] = stall
    out["total_cycles"] = compute + stall
    out.update(utilizations(L, out["total_cycles"]))
    return out


def utilizations(L, total_cycles):
    """single_layer_sim.calc_report_data + systolic_compute_*.create_*_demand_mat (percent)."""
    macs = L.M * L.N * L.K
    R, C, T = L.R, L.C, L.T
    cyc_fold = T + R + C - 2 if L.df == "os" else 2 * R + 2 * C + T - 3
    return {"overall_util_pct": 100.0 * macs / (total_cycles * R * C),
            "mapping_eff_pct": 100.0 * L.Sr * L.Sc / (L.folds * R * C),
            "compute_util_pct": 100.0 * macs / (L.folds * R * C * cyc_fold)}


# --------------------------------------------------------------------------------------------
# Replay of SCALE-Sim's memory model (SEMANTICS.md section 7)
# --------------------------------------------------------------------------------------------

def diag_order(n_rows, n_cols):
    """systolic_compute_*.create_*_prefetch_mat 'roll out along the diagonal' order."""
    for d in range(n_rows + n_cols):
        hi = min(d, n_rows - 1)
        lo = max(0, d - n_cols + 1)
        for r in range(hi, lo - 1, -1):
            yield r, d - r


def fetch_sequence(L, op):
    """The read_buffer fetch matrix of `op`, row-major, -1 for padding (keys are op-local)."""
    M, N, K, R, C = L.M, L.N, L.K, L.R, L.C
    ifa = L.ifmap_addr
    def fil(k, n):
        return n * K + k   # operand_matrix.calc_filter_elem_addr minus the offset
    seq = []
    if L.df == "os" and op == "ifmap":      # rows: fr*T + t, cols c -> ifmap[fr*R + c][t]
        T = K
        for r, c in diag_order(L.row_fold * T, R):
            fr, t = divmod(r, T)
            m = fr * R + c
            seq.append(ifa(m, t) if m < M else -1)
    elif L.df == "os" and op == "filter":   # rows: fc*T + t, cols c -> filter[t][fc*C + c]
        T = K
        for r, c in diag_order(L.col_fold * T, C):
            fc, t = divmod(r, T)
            n = fc * C + c
            seq.append(fil(t, n) if n < N else -1)
    elif L.df == "ws" and op == "ifmap":    # rows: fr*M + t, cols c -> ifmap[t][fr*R + c]
        for r, c in diag_order(L.row_fold * M, R):
            fr, t = divmod(r, M)
            k = fr * R + c
            seq.append(ifa(t, k) if k < K else -1)
    elif L.df == "ws" and op == "filter":   # no roll: fc*K + k, c -> filter[k][fc*C + c]
        for fc in range(L.col_fold):
            for k in range(K):
                for c in range(C):
                    n = fc * C + c
                    seq.append(fil(k, n) if n < N else -1)
    elif L.df == "is" and op == "ifmap":    # no roll: fc*K + k, c -> ifmap[fc*C + c][k]
        for fc in range(cdiv(M, C)):
            for k in range(K):
                for c in range(C):
                    m = fc * C + c
                    seq.append(ifa(m, k) if m < M else -1)
    else:                                   # is filter: fr*N + n, c -> filter[fr*R + c][n]
        for r, c in diag_order(L.row_fold * N, R):
            fr, n = divmod(r, N)
            k = fr * R + c
            seq.append(fil(k, n) if k < K else -1)
    return seq


def demand_fold(L, op, fc, fr):
    """Per demand line of fold (fc, fr): the non-null keys of `op`, in column order.

    For the ofmap only the count of non-null writes per line matters; returns counts.
    Mirrors systolic_compute_{os,ws,is}.create_{ifmap,filter,ofmap}_demand_mat.
    """
    M, N, K, R, C, T = L.M, L.N, L.K, L.R, L.C, L.T
    n_lines = L.lines_per_fold
    ifa = L.ifmap_addr
    def fil(k, n):
        return n * K + k
    out = []
    if L.df == "os":
        r0, c0 = fr * R, fc * C
        rows_used, cols_used = min(R, M - r0), min(C, N - c0)
        if op == "ifmap":     # skew(ifmap^T[:, r0:r0+R] ++ (C-1) null rows); line j col c: t=j-c
            for j in range(n_lines):
                out.append([ifa(r0 + c, j - c) for c in range(max(0, j - T + 1),
                                                              min(rows_used, j + 1))])
        elif op == "filter":  # skew(filter[:, c0:c0+C] ++ (R-1) null rows)
            for j in range(n_lines):
                out.append([fil(j - c, c0 + c) for c in range(max(0, j - T + 1),
                                                             min(cols_used, j + 1))])
        else:                 # skew((T-1) null rows ++ flip(ofmap block padded to R x C))
            for j in range(n_lines):
                cnt = 0
                for c in range(cols_used):
                    q = j - c - (T - 1)          # row inside the flipped R x C block
                    if 0 <= q < R and R - 1 - q < rows_used:
                        cnt += 1
                out.append(cnt)
        return out
    if L.df == "ws":
        k0, c0 = fr * R, fc * C
        rows_used, cols_used = min(R, K - k0), min(C, N - c0)
        if op == "ifmap":     # skew(R null rows ++ ifmap[:, k0:k0+R] ++ (C-1) null rows)
            for j in range(n_lines):
                out.append([ifa(j - c - R, k0 + c)
                            for c in range(max(0, j - R - T + 1), min(rows_used, j - R + 1))])
        elif op == "filter":  # flip(filter[k0:k0+R, c0:c0+C] padded) ++ null rows; no skew
            for j in range(n_lines):
                r = R - 1 - j
                if j < R and r < rows_used:
                    out.append([fil(k0 + r, c0 + c) for c in range(cols_used)])
                else:
                    out.append([])
        else:                 # skew((2R-1) null rows ++ ofmap[:, c0:c0+C])
            for j in range(n_lines):
                lo, hi = max(0, j - (2 * R - 1) - T + 1), min(cols_used, j - (2 * R - 1) + 1)
                out.append(max(0, hi - lo))
        return out
    # is
    k0, m0 = fr * R, fc * C
    rows_used, cols_used = min(R, K - k0), min(C, M - m0)
    if op == "ifmap":         # flip(ifmap^T[k0:k0+R, m0:m0+C] padded) ++ null rows; no skew
        for j in range(n_lines):
            r = R - 1 - j
            if j < R and r < rows_used:
                out.append([ifa(m0 + c, k0 + r) for c in range(cols_used)])
            else:
                out.append([])
    elif op == "filter":      # skew(R null rows ++ filter[k0:k0+R, :]^T ++ (C-1) null rows)
        for j in range(n_lines):
            out.append([fil(k0 + c, j - c - R)
                        for c in range(max(0, j - R - T + 1), min(rows_used, j - R + 1))])
    else:                     # skew((2R-1) null rows ++ ofmap[m0:m0+C, :]^T)
        for j in range(n_lines):
            lo, hi = max(0, j - (2 * R - 1) - T + 1), min(cols_used, j - (2 * R - 1) + 1)
            out.append(max(0, hi - lo))
    return out


class ReadBuffer:
    """memory/read_buffer.py (USER bandwidth mode, no custom layout, no ramulator)."""

    def __init__(self, sram_words, B, seq):
        g = buffer_geometry(sram_words, B)
        self.g = g
        eps = g["eps"]
        self.lines_of = defaultdict(list)      # key -> hashed line ids holding it
        nn = 0
        for key in seq:
            if key != -1:
                lst = self.lines_of[key]
                line = nn // eps
                if not lst or lst[-1] != line:
                    lst.append(line)
                nn += 1
        self.n_lines = nn // eps + 1
        self.A = min(g["max_active_lines"], self.n_lines)
        self.P = min(g["max_prefetch_lines"], self.n_lines - self.A)
        self.fits = self.n_lines <= g["max_active_lines"]
        fetch_rows = cdiv(len(seq), B)
        self.init_lines = min(g["init_lines_cap"], fetch_rows)
        self.num_access = self.init_lines * B
        self.start = 0
        self.last = None                        # last_prefetch_cycle
        self.n_prefetch = 0

    def hit(self, key):
        n, s, A = self.n_lines, self.start, self.A
        lines = self.lines_of.get(key)
        if not lines:
            raise KeyError(f"demanded key {key} is not in the fetch sequence")
        for line in lines:
            if (line - s) % n < A:
                return True
        return False

    def service_line(self, keys, cycle):
        """read_buffer.service_reads for one demand line; returns out_cycle - cycle."""
        if self.last is None:                   # prefetch_active_buffer(start_cycle=cycle)
            self.last = cycle - 1
        offset = HIT_LATENCY
        if self.fits:
            return offset
        for key in keys:
            if key == -1:                       # off-ifmap tap of a ragged strided conv
                continue
            while not self.hit(key):
                self.start = (self.start + self.P) % self.n_lines       # new_prefetch
                self.num_access += self.g["pf_words"]
                self.last += self.g["pf_cycles"]
                self.n_prefetch += 1
                pot = self.last - (cycle + offset)
                offset += pot                    # sic: added once always ...
                if pot > 0:
                    offset += pot                # ... and once more when positive
        return offset


class WriteBuffer:
    """memory/write_buffer.py with write_port latency 0."""

    def __init__(self, sram_words, B):
        self.B = B
        self.total = sram_words
        self.active = math.ceil(sram_words * ACTIVE_FRAC)
        self.drain = sram_words - self.active
        self.drain_lines = cdiv(self.drain, B)
        self.free = sram_words
        self.lines = []          # fill of each flushed trace line (B = full)
        self.cur = 0             # elements in the unflushed current line
        self.dstart = 0
        self.drain_end = 0
        self.num_access = 0
        self.cycles = []         # min / max drain cycle (the ofmap DRAM start / stop)

    def _flush(self):
        if self.cur:
            self.lines.append(self.cur)
            self.cur = 0

    def _drain(self, start):
        end_id = min(self.dstart + self.drain_lines, len(self.lines))
        n = end_id - self.dstart
        data = n * self.B - (self.B - self.lines[end_id - 1])   # only the last line's -1s
        self.num_access += data
        self.free += data
        self.dstart = end_id
        self.cycles.append(start)
        self.cycles.append(start + n - 1)
        return start + n - 1

    def service_line(self, count, cycle):
        """write_buffer.service_writes for one demand line with `count` non-null writes."""
        offset = 0
        cur_cycle = cycle
        for _ in range(count):
            self.cur += 1
            if self.cur == self.B:
                self.lines.append(self.B)
                self.cur = 0
            self.free -= 1
            if cur_cycle < self.drain_end:
                if not self.free > 0:
                    offset += max(self.drain_end - cur_cycle, 0)
                    cur_cycle = self.drain_end
            elif self.free < self.total - self.drain:
                self._flush()
                self.drain_end = self._drain(cur_cycle)
        return cur_cycle - cycle

    def empty_all(self, cycle):
        self._flush()
        while self.dstart < len(self.lines):
            self.drain_end = self._drain(cycle)
            cycle = self.drain_end + 1


def replay(L: Layer) -> dict[str, float]:
    B = L.B
    bufs = {op: ReadBuffer(L.sram_words[op], B, fetch_sequence(L, op))
            for op in ("ifmap", "filter")}
    wbuf = WriteBuffer(L.sram_words["ofmap"], B)
    stall = 0
    i = 0
    last_out = 0
    max_out = 0
    for fc in range(L.col_fold):
        for fr in range(L.row_fold):
            dem_i = demand_fold(L, "ifmap", fc, fr) if not bufs["ifmap"].fits else None
            dem_f = demand_fold(L, "filter", fc, fr) if not bufs["filter"].fits else None
            dem_o = demand_fold(L, "ofmap", fc, fr)
            for j in range(L.lines_per_fold):
                cycle = i + stall
                oi = bufs["ifmap"].service_line(dem_i[j] if dem_i else (), cycle)
                of = bufs["filter"].service_line(dem_f[j] if dem_f else (), cycle)
                oo = wbuf.service_line(dem_o[j], cycle)
                out = cycle + oo
                max_out = max(max_out, out)
                last_out = out
                stall += int(max(oi - HIT_LATENCY, of - HIT_LATENCY, oo))
                i += 1
    wbuf.empty_all(last_out)
    res = {
        "compute_cycles": i - 1,
        "total_cycles": int(max_out),
        "stall_cycles": stall,
        "dram_ifmap_reads": bufs["ifmap"].num_access,
        "dram_filter_reads": bufs["filter"].num_access,
        "dram_ofmap_writes": wbuf.num_access,
    }
    rd_start = min(-bufs["ifmap"].init_lines, -bufs["filter"].init_lines)
    if wbuf.cycles:
        res["total_cycles_incl_prefetch"] = int(max(wbuf.cycles) - rd_start)
    res.update(utilizations(L, res["total_cycles"]))
    return res


def spills(L: Layer) -> list[str]:
    """Read operands whose fetch stream has more hashed lines than the active half holds."""
    out = []
    for op, (_f_pad, nn, _passes) in operand_streams(L).items():
        g = buffer_geometry(L.sram_words[op], L.B)
        if nn // g["eps"] + 1 > g["max_active_lines"]:
            out.append(op)
    return out


@functools.lru_cache(maxsize=4096)
def _cached(key: tuple) -> tuple[tuple[str, Any], ...]:
    rows, cols, df, m, n, k, bw, si, sf, so, conv = key
    L = Layer(rows=rows, cols=cols, dataflow=df, m=m, n=n, k=k, bandwidth_words=bw,
              sram_words={"ifmap": si, "filter": sf, "ofmap": so}, conv=conv)
    if not (spills(L) or _ofmap_spills(L)):
        out, method = closed_form(L), "closed form (exact: nothing spills)"
    elif replay_work(L) <= REPLAY_BUDGET:
        out, method = replay(L), "replay (exact)"
    else:
        out = closed_form(L)
        method = (f"closed form, ideal streaming: the exact replay would step "
                  f"{replay_work(L):,} demand entries (over the {REPLAY_BUDGET:,} budget); "
                  f"SCALE-Sim's FIFO read buffers may re-read more than this")
    return tuple(sorted({**out, "method": method}.items()))


#: Demand entries (folds x lines x (R + C)) the replay steps through at most (~3 s); the
#: largest of the 222 reference rows needs 6.2 million.
REPLAY_BUDGET = 10_000_000


def replay_work(L: Layer) -> int:
    """Demand entries the replay walks: its cost, linear in this."""
    return L.folds * L.lines_per_fold * (L.R + L.C)


def _ofmap_spills(L: Layer) -> bool:
    """The ofmap writes outgrow the write buffer: its drains may stall the array, which only
    the replay times exactly."""
    writes = L.M * L.N * (1 if L.df == "os" else L.row_fold)
    return writes > L.sram_words["ofmap"]


def scalesim_layer(*, rows: int, cols: int, dataflow: str, m: int, n: int, k: int,
                   bandwidth_words: int, sram_words: dict[str, int],
                   conv: tuple[int, int, int, int, int, int] | None = None) -> dict[str, Any]:
    """SCALE-Sim's report for one layer: ``compute_cycles``, ``total_cycles``,
    ``stall_cycles``, ``sram_{ifmap,filter}_reads``, ``sram_ofmap_writes`` (where the closed
    form ran) and ``dram_{ifmap,filter}_reads``, ``dram_ofmap_writes`` in words, and
    ``method``: which of the closed form and the replay gave them, and why; cached."""
    key = (int(rows), int(cols), dataflow, int(m), int(n), int(k), max(1, int(bandwidth_words)),
           *(max(1, int(sram_words[o])) for o in ("ifmap", "filter", "ofmap")),
           tuple(int(x) for x in conv) if conv else None)
    return dict(_cached(key))
