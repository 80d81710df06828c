"""Architecture parameters: one table per family, every default with its source.

A spec's ``params`` section may set any of these; when it does not, the mappers and the
calibration fitter both read the default from here (one place, so a fitted factor and the
value a mapper uses can never drift apart). Each default says where it comes from: a
measurement, a vendor figure, or a modelling estimate (marked as such).

>>> from simulator.arch.loader import load_arch
>>> param(load_arch("h100-sxm").device, "launch_overhead") > 0
True
>>> default("cpu", "compute_efficiency")
0.7
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from simulator.arch.spec import Device

__all__ = ["ParamDefault", "FAMILY_DEFAULTS", "default", "param", "explain_defaults",
           "param_source_text"]


@dataclass(frozen=True)
class ParamDefault:
    """The value a family uses when a spec is silent, and why."""

    value: Any
    source: str


_COMMON: dict[str, ParamDefault] = {
    "bandwidth_efficiency": ParamDefault(
        0.85, "achievable fraction of peak DRAM bandwidth for a streaming kernel: STREAM-like "
        "copies reach 80-90% on HBM GPUs (e.g. 1.7 of 2.0 TB/s on A100) and DDR hosts"),
    "vector_efficiency": ParamDefault(
        0.6, "estimate: fraction of peak vector FLOP/s a pointwise kernel sustains"),
    "launch_overhead": ParamDefault(
        0.0, "no per-op dispatch cost unless the family has one (accelerators run a "
        "compiled graph)"),
    "kind_efficiency": ParamDefault(
        None, "per-kind factor, 1.0 for every kind unless a spec or calibration sets it"),
    "graph_launch_gap": ParamDefault(
        0.0, "--timing graph: a compiled program (XLA, the vendor's compiler, an HLS design) "
             "is issued whole: no gap per op (simulator.timing)"),
    "eager_dispatch": ParamDefault(
        None, "--timing eager: none, the family runs compiled programs with no framework "
              "dispatch per op (a spec may set the host time per call; simulator.timing)"),
    "eager_alloc": ParamDefault(
        0.0, "--timing eager: no caching allocator cost per output unless a spec sets one"),
    "eager_launch": ParamDefault(
        0.0, "--timing eager: no host cost per kernel launch unless a spec sets one"),
    "compute_efficiency": ParamDefault(
        None, "per-dtype fraction of matrix peak; none (1.0) for cycle-level fold models"),
    "special_cost": ParamDefault(
        None, "vector FLOPs per transcendental; default the spec's energy.special_multiplier"),
}

FAMILY_DEFAULTS: dict[str, dict[str, ParamDefault]] = {
    "gpu": {
        **_COMMON,
        "compute_efficiency": ParamDefault(
            0.8, "large cuBLAS GEMMs reach 75-85% of dense tensor peak on A100/H100 (vendor "
                 "GEMM benchmarks; Vidur A100 kernel profiles in shared/data)"),
        "attention_efficiency": ParamDefault(
            0.55, "fraction of the matrix peak a flash-attention forward reaches on a long "
                  "non-causal fp16 sequence at head_dim 128 (FlashAttention-2: up to 73% on the "
                  "A100, Dao 2023 sec. 4; FlashAttention-3: 65% on the H100, Shah et al. 2024 "
                  "fig. 5); the gpu mapper derives other shapes from it; 0.55 for an unknown "
                  "part"),
        "launch_overhead": ParamDefault(
            4e-6, "CUDA kernel launch plus inter-kernel gap seen in Kineto traces, 3-5 us"),
        "graph_launch_gap": ParamDefault(
            1e-6, "--timing graph: gap between pre-built kernels replayed back to back. NVIDIA "
                  "Technical Blog, A. Gray, 'Getting Started with CUDA Graphs' (2019), V100: a "
                  "2.9 us kernel takes 3.8 us per kernel when launched back to back into one "
                  "stream (0.9 us gap, the way a TensorRT engine enqueues its kernels) and "
                  "3.4 us inside a CUDA graph (0.5 us gap); 1 us covers both"),
        "eager_dispatch": ParamDefault(
            2.3e-6, "--timing eager: host time of one ATen call from Python up to its kernel "
                    "launch: the Python binding, argument parsing, the dispatcher and the "
                    "output TensorImpl. PyTorch operator micro-benchmark in pytorch/pytorch PR "
                    "#32194 (2020): torch.split of 8x8 to 512x512 tensors, views only (no "
                    "kernel, no allocation), 2.26 us per call after the PR (8x8 CPU tensors; "
                    "before it, with torch.functional's slower __torch_function__ check, "
                    "3.3-3.5 us on CPU and CUDA tensors alike: the device plays no part); per "
                    "call, so an op of n Python-level calls pays it n times "
                    "(simulator.timing.EAGER_RECIPES, or VLLM_RECIPES under "
                    "params.eager_recipes: vllm)"),
        "eager_recipes": ParamDefault(
            "hf", "--timing eager: whose eager ops the host runs. 'hf': HF transformers' "
                  "Python modules (LlamaRMSNorm 8 ATen calls, apply_rotary_pos_emb 16 calls "
                  "and 10 kernels, LlamaMLP's silu then mul), what model.generate and a "
                  "PyTorch training loop run; 'vllm': vLLM with enforce_eager, whose layers "
                  "call one fused custom op each (vllm/model_executor/layers layernorm.py "
                  "ops.rms_norm, rotary_embedding.py ops.rotary_embedding, activation.py "
                  "ops.silu_and_mul); simulator.timing.RECIPE_SETS"),
        "eager_alloc": ParamDefault(
            0.5e-6, "--timing eager: host time of the CUDA caching allocator per output "
                    "tensor (c10/cuda/CUDACachingAllocator.cpp malloc: a mutex, a size "
                    "round-up and an ordered-set lookup of a cached block, then the "
                    "StorageImpl; a few thousand instructions, ~0.5 us on a 2-3 GHz server "
                    "core: first-principles estimate)"),
        "eager_launch": ParamDefault(
            3.0e-6, "--timing eager: host time of one kernel launch (cudaLaunchKernel). "
                    "M. Boyer, 'CUDA Kernel Overhead' (University of Virginia, CUDA support "
                    "pages): at most ~334,000 asynchronous empty-kernel launches per second "
                    "= 3.0 us each; NVIDIA Technical Blog, A. Gray, 'Getting Started with CUDA "
                    "Graphs' (2019): back-to-back launches of a 2.9 us kernel run at 3.8 us "
                    "per kernel on a V100, an upper bound of the host's launch time"),
        "l2_level": ParamDefault("l2", "name of the L2 level in the spec's memory list"),
        "max_threads_per_sm": ParamDefault(
            2048, "resident threads per SM: 2048 on compute capability 7.0, 8.0 and 9.0 "
                  "(V100, A100, H100/H200); 1536 on 8.6/8.9 (A10, L4); CUDA C++ Programming "
                  "Guide, 'Technical Specifications per Compute Capability'"),
        "max_blocks_per_sm": ParamDefault(
            32, "resident thread blocks per SM: 32 on compute capability 7.0, 8.0 and 9.0; "
                "16 on 8.6, 24 on 8.9 (same CUDA Programming Guide table)"),
        "kernel_startup": ParamDefault(
            None, "device time from a kernel's start to its first data load: the first warps "
                  "fetch their instructions, then the kernel's parameters (constant bank), "
                  "both cold for a new kernel, so two memory round trips; default 2 x the "
                  "spec's DRAM latency (estimate; 1.2 us on the A100 spec, where a Kineto "
                  "trace shows 1.5-2.5 us for a kernel that loads and stores a few KiB)"),
        "norm_vector": ParamDefault(
            1, "elements one thread loads per access in a row-norm kernel (RMSNorm, "
               "LayerNorm: one block of min(width, 1024) threads per row). 1: vLLM (to v0.5) "
               "and sarathi-serve csrc/layernorm_kernels.cu rms_norm_kernel, scalar loads; "
               "128-bit vectorised kernels (vLLM >= 0.6, Apex, Transformer Engine) load 8 "
               "16-bit elements"),
        "collectives": ParamDefault(
            "alpha-beta", "collective model: 'alpha-beta' (each step costs the link latency "
                          "plus its bytes over the link, simulator.network.collectives) or "
                          "'nccl' (NCCL's algorithms and protocols with its published latency "
                          "and bandwidth constants, for parts whose collectives run on NCCL or "
                          "RCCL; in one node)"),
        "nvls": ParamDefault(
            False, "NVLink SHARP: the NVSwitches reduce (third-generation NVSwitch, HGX "
                   "H100/H200; NCCL >= 2.17 runs all-reduce as NVLS there)"),
        "nvlink_efficiency": ParamDefault(
            0.8, "fraction of the NVLink line rate NCCL moves as data: NCCL's topology model "
                 "gives an Ampere NVLink 20 GB/s (SM80_NVLINK_BW, src/graph/topo.h) of its "
                 "25 GB/s line rate, Hopper 20.6 GB/s (SM90_NVLINK_BW); NCCL's maintainer: "
                 "'with the protocol overhead (~20%) NCCL can get an effective NVLink "
                 "bandwidth of 370GB/s' of the H100's 450 (nccl-tests issue #212)"),
        "compute_capability": ParamDefault(
            None, "CUDA compute capability of an NVIDIA part (CUDA C++ Programming Guide, "
                  "'Compute Capabilities'): picks NCCL's per-generation tables (tuning.cc "
                  "indexes them Volta < 8.0 <= Ampere < 9.0 <= Hopper; LL128 only on 7.0, 8.0, 9.0 "
                  "and 10.0); unset: Hopper where the spec sets nvls, else Ampere"),
        "nccl_channels": ParamDefault(
            0, "NCCL's ring channels (one thread block each) inside a node; 0: unknown, "
               "NCCL's tuner estimate prices the ring, else its kernels' chunks, slices and "
               "copy rounds do (simulator.network.nccl)"),
        "cluster_multicast": ParamDefault(1, "no thread-block-cluster multicast (pre-Hopper)"),
        "persistent_gemm": ParamDefault(
            None, "on where cluster_multicast > 1: Hopper's warp-specialised persistent cuBLAS "
                  "kernels overlap a tile's epilogue with the next tile's main loop (one "
                  "pipeline fill and epilogue per GEMM, not per wave); off before Hopper"),
        "tile_shapes": ParamDefault(None, "CUTLASS/cuBLAS tile set 128x256..64x64"),
        "sparse_speedup": ParamDefault(
            None, "no sparse tensor cores: a spec lists, per dtype, the 2:4 sparse peak over the "
                  "dense peak of its datasheet (2 on A100/H100/H200/L4/MI300X)"),
        "sparse_efficiency": ParamDefault(
            0.7, "fraction of the sparse_speedup a 2:4 GEMM realises over the dense kernel: "
                 "measured 2:4 speedups are 1.2-1.4x, not 2x (PyTorch semi-structured sparsity "
                 "tutorial: BERT 1.3x on A100; torchao ViT-L MLP linears 1.24x/1.27x on A100; "
                 "pytorch/ao#2012: fp8 2:4 linears 1.26-1.39x on H100; HPC-AI Tech 2025: "
                 "CUTLASS fp8 2:4 GEMM 1.22x over cuBLAS fp8 on H100): 2 x 0.7 = 1.4x"),
    },
    "cpu": {
        **_COMMON,
        "compute_efficiency": ParamDefault(
            0.7, "oneDNN/MKL SGEMM reaches 65-80% of the FMA peak on large shapes"),
        "emulation_penalty": ParamDefault(
            0.7, "estimate: a dtype the SIMD units lack is converted while packing"),
        "launch_overhead": ParamDefault(
            5e-6, "PyTorch eager dispatch of one op on a CPU, 3-10 us (micro-probe)"),
        "graph_launch_gap": ParamDefault(
            None, "--timing graph: no published per-node cost of a compiled CPU graph runtime "
                  "(TorchScript, ONNX Runtime): refused unless a spec sets it"),
        "write_allocate": ParamDefault(True, "x86 reads a line before writing it"),
        "page_fault_threshold": ParamDefault(
            32 * 2**20, "glibc DEFAULT_MMAP_THRESHOLD_MAX on 64-bit: larger outputs are fresh "
                        "mmaps that fault on first touch"),
        "page_fault_bandwidth": ParamDefault(
            2e9, "estimate: ~2 us to fault and zero a 4 KiB page, per thread"),
        "fused_epilogue": ParamDefault(False, "eager PyTorch runs epilogues as separate ops"),
        "eager_composites": ParamDefault(False, "composite ops counted as one kernel"),
    },
    "systolic": {
        **_COMMON,
        "dataflow": ParamDefault("ws", "weight stationary, as TPUs run (Jouppi et al. 2017)"),
        "double_buffered": ParamDefault(True, "SRAM double buffering hides DRAM behind compute"),
        "cores": ParamDefault(1, "one array engine unless the spec says more"),
        "sparse_nm": ParamDefault(False, "no N:M sparsity support (TPUs have none): pruned "
                                         "weights run dense math, read compressed"),
        "on_chip_residency": ParamDefault(
            False, "each op reads its operands from the outermost level (a part with its own "
                   "DRAM/HBM); true for a DRAM-less edge part whose compiler keeps the "
                   "parameters and activations in SRAM (simulator.mapping.residency)"),
    },
    "fpga": {
        **_COMMON,
        "dataflow": ParamDefault("ws", "weight stationary HLS systolic engines"),
        "double_buffered": ParamDefault(True, "ping-pong BRAM buffers"),
        "dsp_utilization": ParamDefault(1.0, "every DSP in the engine unless the spec says less"),
        "dsp_fmax": ParamDefault(None, "the compute unit's clock"),
        "sparse_nm": ParamDefault(False, "an HLS engine without N:M index logic: pruned weights "
                                         "run dense math, read compressed"),
        "luts_per_pe": ParamDefault(
            {"int4": 12, "int8": 24, "fp8": 100, "fp16": 150, "bf16": 150, "tf32": 300,
             "fp32": 300},
            "LUTs per MAC PE by compute class. int8 24: AMD PG367 (DPUCAHX8H), the 5-engine "
            "core of 10,240 int8 MACs uses 238,433 LUTs, 23.3 per MAC with control and "
            "load/save units; int4 half of that, fp8/fp16/bf16/tf32/fp32 (exponent alignment "
            "and normalisation in LUTs beside the DSPs): estimates"),
        "ffs_per_pe": ParamDefault(
            {"int4": 21, "int8": 42, "fp8": 150, "fp16": 250, "bf16": 250, "tf32": 500,
             "fp32": 500},
            "flip-flops per MAC PE by compute class. int8 42: AMD PG367 (DPUCAHX8H), 420,289 "
            "registers for 10,240 int8 MACs, 41.0 per MAC; the others: estimates (deeper "
            "floating-point pipelines)"),
    },
}

_MISSING = object()


def default(family: str, name: str) -> Any:
    """The family default of parameter ``name``.

    Raises
    ------
    KeyError
        If the family has no default for ``name`` (never a silent ``None``).
    """
    table = FAMILY_DEFAULTS.get(family, _COMMON)
    if name not in table:
        raise KeyError(f"no default for parameter {name!r} in family {family!r}")
    return table[name].value


def param(device: Device, name: str, fallback: Any = _MISSING) -> Any:
    """``device.params[name]`` if the spec sets it, else the family default.

    ``fallback`` is returned for a parameter the family has no default for; without it that
    is a KeyError.
    """
    if name in device.params:
        return device.params[name]
    table = FAMILY_DEFAULTS.get(device.family, _COMMON)
    if name in table:
        return table[name].value
    if fallback is _MISSING:
        raise KeyError(f"no default for parameter {name!r} in family {device.family!r}")
    return fallback


def explain_defaults(family: str) -> list[tuple[str, Any, str]]:
    """``(name, value, source)`` rows of a family's defaults, for docs and ``--explain``."""
    return [(k, v.value, v.source) for k, v in sorted(FAMILY_DEFAULTS.get(family, _COMMON).items())]


def param_source_text(device: Device, name: str) -> str:
    """Where ``device``'s value of parameter ``name`` comes from, in words: its spec, or the
    family default with that default's source."""
    if name in device.params:
        return f"the spec of {device.name} sets params.{name}"
    d = FAMILY_DEFAULTS.get(device.family, _COMMON).get(name)
    if d is None:
        return f"no {device.family} default"
    return f"the {device.family} family default (simulator/arch/params.py): {d.source}"
