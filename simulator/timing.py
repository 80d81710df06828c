"""Timing semantics: which of the ways users time a part a prediction stands for.

Users time accelerators in different ways, and the same op reads differently in each. hwsim
predicts one of four, chosen with ``--timing`` (``Predictor(timing=...)``,
``simulate(..., timing=...)``), and says which in every output (``Result.meta["timing"]``,
the ``timing`` key of ``--json``, ``--explain``):

``kernel``
    The device time of the kernels alone, what a profiler's kernel trace (Kineto, Nsight
    Systems) reports: no launch, no gap between kernels. ``latency = kernel time``
    (:func:`simulator.mapping.gpu.kernel_time` for a GPU op).
``graph``
    A captured graph replayed (a CUDA graph, a TensorRT engine, an XLA program): pre-built
    kernels back to back, each after the small gap a graph node has. ``latency = kernel time
    + min(graph_launch_gap, launch_overhead)`` (a graph never waits longer than a stream
    launch). Refused on a part whose family has no figure for the gap (CPUs), unless its spec
    sets ``params.graph_launch_gap``.
``stream`` (the default: hwsim's numbers before the option existed)
    Ops issued one by one into an in-order stream by a host that keeps ahead of the device:
    each op pays the part's ``launch_overhead`` (GPU: the launch and the inter-kernel gap of
    a Kineto trace of a busy stream, 4 us; CPU: PyTorch's eager dispatch, serial with the op
    on the thread that runs it, 5 us; systolic and FPGA parts: their runtime's per-op cost,
    0 unless the spec sets one). The device never waits for the host.
``eager``
    A framework op called from Python (PyTorch eager), as it really runs: the op's class
    (:func:`eager_class`) names a recipe of :data:`EAGER_RECIPES`, the ATen calls eager
    PyTorch makes for it, each with its source (HF ``LlamaRMSNorm`` is eight calls and
    eight kernels, ``F.layer_norm`` one fused kernel, a Linear one cuBLAS call). The host
    pays, per op, ``eager_dispatch`` per call from Python (Python binding, argument
    parsing, dispatcher), ``eager_alloc`` per output tensor (the caching allocator) and
    ``eager_launch`` per kernel (the host side of ``cudaLaunchKernel``; the mapper's extra
    kernels, split-K's reduction or flash-decoding's combine, count too): ``host_s``. The
    host runs ahead of the device in a two-stage pipeline, ``device start_i = max(host
    issue done_i, device end_{i-1}, dependencies)``. On a GPU a recipe whose kernels are
    not the op's fused kernel (RMSNorm, rotary, SwiGLU, a matmul's epilogue) also costs its
    unfused kernels on the device, each reading and writing its own tensor and paying its
    own launch share (costed by the part's mapper), issued one by one as the host reaches
    them: the op's device time is that sub-pipeline's span (never less than the fused
    kernel's stream time), and it may start once the first kernel is issued
    (``details["host_lead_s"]`` before its last). When the host's time per op exceeds the
    op's device time the stream is host-bound: the device idles between kernels, the
    result says so (``meta["timing"]["host_bound"]``, per-op host times) and the trace
    shows a host track above the device's gaps. On a CPU the host thread dispatches and
    runs each op itself, so eager is ``stream`` (dispatch serial with the op; the CPU
    mapper's ``eager_composites`` covers the unfused passes). Refused on systolic and FPGA
    parts (they run compiled programs) unless the spec sets ``params.eager_dispatch``.

Every launch share and graph gap is per kernel: an op whose mapper runs ``k`` kernels
(``details["kernels"]``, or ``details["launches"]``; default 1) pays ``k`` graph gaps under
``graph`` and ``k`` launches on the host under ``eager``.

Every overhead is a spec parameter with a family default and its source
(:mod:`simulator.arch.params`); ``hwsim calibrate`` can fit them.

>>> from simulator.arch.loader import load_arch
>>> d = load_arch("h100-sxm").device
>>> [check_timing(t, d) for t in ("kernel", "graph", None, "eager")]
['kernel', 'graph', 'stream', 'eager']
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from simulator.arch.params import FAMILY_DEFAULTS, param, param_source_text
from simulator.errors import HwsimError
from simulator.frozen import FrozenMap

if TYPE_CHECKING:
    from simulator.arch.spec import Device
    from simulator.mapping.base import OpCost
    from workloads.ops import Op

__all__ = ["TIMINGS", "DEFAULT_TIMING", "MEANINGS", "check_timing", "launch_part",
           "apply_timing", "host_dispatch_s", "timing_overheads", "timing_meta",
           "host_pipeline", "kernels_of", "AtenCall", "EagerRecipe", "EAGER_RECIPES",
           "VLLM_RECIPES", "RECIPE_SETS", "recipe_set", "recipes",
           "eager_class", "eager_recipe", "eager_host_s", "EAGER_HOST_PARAMS",
           "eager_recipe_rows"]

#: the timing modes, fastest first for one op (kernel <= graph <= stream <= eager)
TIMINGS = ("kernel", "graph", "stream", "eager")
DEFAULT_TIMING = "stream"

MEANINGS = {
    "kernel": "kernel device time only, as a profiler's kernel trace reports it (no launch, "
              "no gaps)",
    "graph": "a captured graph replayed (CUDA graph, TensorRT engine, XLA program): kernels "
             "back to back with a graph node's gap per kernel",
    "stream": "ops issued one by one by a host that keeps ahead: each kernel pays the part's "
              "launch_overhead (hwsim's default)",
    "eager": "framework ops called from Python: per op the host pays each ATen call's "
             "dispatch, output allocation and kernel launches, pipelined ahead of the device; "
             "host-bound when kernels are short",
}

#: the host cost parameters of ``eager``: (name, what one unit of it is)
EAGER_HOST_PARAMS = (
    ("eager_dispatch", "per ATen call from Python (binding, argument parsing, dispatcher)"),
    ("eager_alloc", "per output tensor (caching allocator)"),
    ("eager_launch", "per kernel launched (host side of the launch call)"),
)


# -- eager recipes: the ATen calls eager PyTorch makes for an op ------------------------------
@dataclass(frozen=True)
class AtenCall:
    """One ATen op eager PyTorch runs for an hwsim op.

    ``python``: called from Python (pays ``eager_dispatch``); False for an op the previous
    call runs inside its own C++ (only the dispatcher, counted in the caller's figure).
    ``kernels``: kernels it launches (0 for a no-op such as ``.to`` of a tensor already in
    that dtype); ``outputs``: tensors it allocates.
    """

    name: str
    python: bool = True
    kernels: int = 1
    outputs: int = 1
    op_kernel: bool = False  # runs the op's own kernel (default: the first call that launches)


@dataclass(frozen=True)
class EagerRecipe:
    """How eager PyTorch runs one class of op: its ATen calls and where that is written.

    ``unfused``: the calls' kernels are not the op's fused kernel (the graph holds a fused op
    that eager runs as several kernels), so under ``eager`` a GPU op also costs them on the
    device (:func:`apply_timing`).
    """

    calls: tuple[AtenCall, ...]
    source: str
    unfused: bool = False

    @property
    def python_calls(self) -> int:
        return sum(1 for c in self.calls if c.python)

    @property
    def kernels(self) -> int:
        return sum(c.kernels for c in self.calls)

    @property
    def outputs(self) -> int:
        return sum(c.outputs for c in self.calls)


EAGER_RECIPES: dict[str, EagerRecipe] = {}


def _register(name: str, recipe: EagerRecipe) -> None:
    """Add a recipe; registering a class twice is an error (one source per class)."""
    if name in EAGER_RECIPES:
        raise ValueError(f"eager recipe {name!r} registered twice")
    EAGER_RECIPES[name] = recipe


_HF_RMS = ("HF transformers models/llama/modeling_llama.py LlamaRMSNorm.forward: "
           "hidden_states.to(torch.float32); variance = hidden_states.pow(2).mean(-1, "
           "keepdim=True); hidden_states * torch.rsqrt(variance + eps); self.weight * "
           "hidden_states.to(input_dtype)")
_register("norm.rmsnorm", EagerRecipe((
    AtenCall("aten::_to_copy (to float32)"), AtenCall("aten::pow"), AtenCall("aten::mean"),
    AtenCall("aten::add (eps)"), AtenCall("aten::rsqrt"), AtenCall("aten::mul"),
    AtenCall("aten::_to_copy (to the input dtype)"), AtenCall("aten::mul (weight)")),
    _HF_RMS + ": 8 calls, 8 kernels", unfused=True))
_register("norm.rmsnorm.fp32", EagerRecipe((
    AtenCall("aten::to (already float32: no kernel)", kernels=0, outputs=0),
    AtenCall("aten::pow"), AtenCall("aten::mean"), AtenCall("aten::add (eps)"),
    AtenCall("aten::rsqrt"), AtenCall("aten::mul"),
    AtenCall("aten::to (already the input dtype: no kernel)", kernels=0, outputs=0),
    AtenCall("aten::mul (weight)")),
    _HF_RMS + ": in float32 the two .to calls return their input (8 calls, 6 kernels)",
    unfused=True))
_register("norm.layernorm", EagerRecipe(
    (AtenCall("aten::native_layer_norm", outputs=3),),
    "F.layer_norm -> aten::native_layer_norm, one fused CUDA kernel "
    "(aten/src/ATen/native/cuda/layer_norm_kernel.cu vectorized_layer_norm_kernel) writing "
    "the output and the per-row mean and rstd (3 outputs)"))
_register("norm.batchnorm", EagerRecipe(
    (AtenCall("aten::cudnn_batch_norm"),),
    "F.batch_norm in inference -> aten::_batch_norm_impl_index -> cudnn_batch_norm, one "
    "cuDNN kernel (aten/src/ATen/native/Normalization.cpp)"))
_register("softmax", EagerRecipe(
    (AtenCall("aten::_softmax"),),
    "F.softmax -> aten::_softmax, one kernel (aten/src/ATen/native/cuda/SoftMax.cu "
    "cunn_SoftMaxForward)"))
_register("embedding", EagerRecipe(
    (AtenCall("aten::embedding"),),
    "F.embedding -> aten::embedding -> index_select, one gather kernel "
    "(aten/src/ATen/native/Embedding.cpp)"))
_register("attention", EagerRecipe(
    (AtenCall("aten::_scaled_dot_product_flash_attention", outputs=2),),
    "F.scaled_dot_product_attention -> the flash backend, one kernel writing the output and "
    "its log-sum-exp (aten/src/ATen/native/transformers/cuda/attention.cu); a split-KV "
    "decode's combine kernel comes from the mapper (details['launches'])"))
_register("linear", EagerRecipe(
    (AtenCall("aten::addmm / aten::mm (cuBLAS)"),),
    "F.linear -> aten::addmm (bias) or aten::mm: one cuBLAS call; the bias rides cuBLASLt's "
    "epilogue (aten/src/ATen/native/cuda/Blas.cpp addmm_out_cuda_impl, gemm_and_bias); "
    "split-K's reduction kernel comes from the mapper (details['kernels'])"))
_register("matmul", EagerRecipe(
    (AtenCall("aten::bmm / aten::mm (cuBLAS)"),),
    "torch.matmul -> aten::bmm or aten::mm, one cuBLAS call (aten/src/ATen/native/cuda/"
    "Blas.cpp)"))
_register("conv2d", EagerRecipe(
    (AtenCall("aten::cudnn_convolution"),),
    "F.conv2d -> aten::convolution -> cudnn_convolution, one cuDNN call "
    "(aten/src/ATen/native/Convolution.cpp)"))
_register("conv2d.bias", EagerRecipe(
    (AtenCall("aten::cudnn_convolution"),
     AtenCall("aten::add_ (bias)", python=False, outputs=0)),
    "F.conv2d with a bias: cudnn_convolution, then output.add_(bias) in C++, a second "
    "kernel (aten/src/ATen/native/Convolution.cpp _convolution, Cudnn backend)"))
_register("elementwise.swiglu", EagerRecipe(
    (AtenCall("aten::silu"), AtenCall("aten::mul")),
    "HF transformers models/llama/modeling_llama.py LlamaMLP.forward: "
    "self.act_fn(self.gate_proj(x)) * self.up_proj(x): silu, then mul (2 kernels)",
    unfused=True))
_HF_ROPE = ("HF transformers models/llama/modeling_llama.py apply_rotary_pos_emb: "
            "cos.unsqueeze(1), sin.unsqueeze(1), then for q and for k: (x * cos) + "
            "(rotate_half(x) * sin), rotate_half = torch.cat((-x[..., d/2:], x[..., :d/2]), "
            "-1)")


def _rope_calls() -> tuple[AtenCall, ...]:
    view = {"kernels": 0, "outputs": 0}
    per = (AtenCall("aten::mul (x * cos)"), AtenCall("aten::slice (x1, a view)", **view),
           AtenCall("aten::slice (x2, a view)", **view), AtenCall("aten::neg (-x2)"),
           AtenCall("aten::cat (rotate_half)"), AtenCall("aten::mul (* sin)"),
           AtenCall("aten::add"))
    return (AtenCall("aten::unsqueeze (cos, a view)", **view),
            AtenCall("aten::unsqueeze (sin, a view)", **view)) + per + per


_register("elementwise.rope", EagerRecipe(
    _rope_calls(), _HF_ROPE + ": 16 calls, 10 kernels (5 for q, 5 for k)", unfused=True))
_register("elementwise.dropout", EagerRecipe(
    (AtenCall("aten::native_dropout", outputs=2),),
    "F.dropout in training -> aten::native_dropout, one kernel writing the output and its "
    "mask (aten/src/ATen/native/cuda/Dropout.cu fused_dropout_kernel)"))
_register("elementwise.adam", EagerRecipe(
    (AtenCall("aten::_fused_adam_", outputs=0),),
    "torch.optim.Adam(fused=True) -> aten::_fused_adam_, one multi-tensor kernel updating "
    "param, exp_avg and exp_avg_sq in place (torch/optim/adam.py _fused_adam); the foreach "
    "default runs 7 _foreach_ kernels per list of up to hundreds of tensors, less per tensor"))
for _fn, _aten in (("add", "add"), ("mul", "mul"), ("relu", "relu"), ("gelu", "gelu"),
                   ("silu", "silu"), ("scale", "mul (scalar)")):
    _register(f"elementwise.{_fn}", EagerRecipe(
        (AtenCall(f"aten::{_aten}"),),
        f"torch.{_aten.split()[0]} / F.{_fn}: one TensorIterator kernel "
        "(aten/src/ATen/native/cuda/*.cu vectorized_elementwise_kernel)"
        + ("; gelu is F.gelu(approximate='tanh'), HF's 'gelu_pytorch_tanh' (HF GPT-2's "
           "'gelu_new', NewGELUActivation, writes the same formula as 8 ops)"
           if _fn == "gelu" else "")))
_register("pool.max", EagerRecipe(
    (AtenCall("aten::max_pool2d_with_indices", outputs=2),),
    "F.max_pool2d -> aten::max_pool2d_with_indices on CUDA: one kernel writing the output "
    "and the argmax indices (aten/src/ATen/native/cuda/DilatedMaxPool2d.cu)"))
_register("pool", EagerRecipe(
    (AtenCall("aten::avg_pool2d"),),
    "F.avg_pool2d / adaptive_avg_pool2d: one kernel (aten/src/ATen/native/cuda/"
    "AveragePool2d.cu)"))
_register("memcpy", EagerRecipe(
    (AtenCall("aten::copy_ (cudaMemcpyAsync)"),),
    "tensor.copy_ / .to(device): one copy (aten/src/ATen/native/cuda/Copy.cu, "
    "cudaMemcpyAsync or a copy kernel)"))
_register("collective", EagerRecipe(
    (AtenCall("c10d all_reduce / all_gather / ... (NCCL)", outputs=0),),
    "torch.distributed collectives on ProcessGroupNCCL: one NCCL kernel per call, in place "
    "or into a caller's tensor (torch/csrc/distributed/c10d/ProcessGroupNCCL.cpp)"))
_register("op", EagerRecipe(
    (AtenCall("one ATen op"),),
    "an op class with no recipe of its own: one call, one kernel, one output"))

#: vLLM's eager ops where they differ from HF's (``params.eager_recipes: vllm``): each layer
#: calls one fused custom op, after allocating its output from Python where it has one
_VLLM_SRC = "vLLM (v0.4-v0.6, enforce_eager) vllm/model_executor/layers/"
_VLLM_RMS = EagerRecipe(
    (AtenCall("vllm::fused_add_rms_norm (_C custom op, in place)", outputs=0),),
    _VLLM_SRC + "layernorm.py RMSNorm.forward_cuda with a residual: "
    "ops.fused_add_rms_norm(x, residual, weight, eps) adds the residual and normalises in "
    "place: 1 call, 1 kernel, no output (the GEMM's residual-add epilogue before it is that "
    "add: no call of its own; a layer's first norm, without a residual, is empty_like + "
    "ops.rms_norm, one call more)")
VLLM_RECIPES: dict[str, EagerRecipe] = {
    "norm.rmsnorm": _VLLM_RMS,
    "norm.rmsnorm.fp32": _VLLM_RMS,
    "elementwise.rope": EagerRecipe((
        AtenCall("aten::to (cos_sin_cache, already there: no kernel)", kernels=0, outputs=0),
        AtenCall("vllm::rotary_embedding (_C custom op, in place)", outputs=0)),
        _VLLM_SRC + "rotary_embedding.py RotaryEmbedding.forward_cuda: self.cos_sin_cache = "
        "self.cos_sin_cache.to(positions.device, dtype=query.dtype); "
        "ops.rotary_embedding(positions, query, key, head_size, cos_sin_cache, is_neox) "
        "rotates q and k in place: 2 calls, 1 kernel"),
    "elementwise.swiglu": EagerRecipe((
        AtenCall("aten::empty (the output)", kernels=0),
        AtenCall("vllm::silu_and_mul (_C custom op, one fused kernel)", outputs=0)),
        _VLLM_SRC + "activation.py SiluAndMul.forward_cuda: out = torch.empty(...); "
        "ops.silu_and_mul(out, x): 2 calls, 1 kernel"),
    "attention": EagerRecipe((
        *(AtenCall(f"aten::{v} (a view)", kernels=0, outputs=0) for v in (
            "view (query)", "view (key)", "view (value)", "select (key_cache)",
            "select (value_cache)", "flatten (slot_mapping)")),
        AtenCall("vllm::reshape_and_cache_flash (_C cache op, in place)", outputs=0),
        AtenCall("aten::empty_like (the output)", kernels=0),
        *(AtenCall(f"aten::{v} (a view)", kernels=0, outputs=0) for v in (
            "slice (decode query)", "slice (prefill query)", "unsqueeze (decode query)")),
        AtenCall("vllm_flash_attn (flash_attn_with_kvcache / varlen_func)", outputs=2,
                 op_kernel=True),
        AtenCall("aten::squeeze (a view)", kernels=0, outputs=0),
        AtenCall("aten::copy_ (output[...] = ...)", outputs=0),
        AtenCall("aten::view (the output, a view)", kernels=0, outputs=0)),
        "vLLM (v0.4-v0.5) vllm/attention/backends/flash_attn.py FlashAttentionImpl.forward, "
        "decode: query/key/value.view, kv_cache[0]/[1], ops.reshape_and_cache_flash writes the "
        "new tokens' K and V into the paged cache, output = torch.empty_like(query), "
        "output[n:] = flash_attn_with_kvcache(decode_query.unsqueeze(1), ...).squeeze(1) (the "
        "flash call writes its output and its log-sum-exp; the assignment is a copy kernel), "
        "output.view: 15 calls, 3 kernels, the cache write and the copy costed on the "
        "device as kernels of their own (prefill runs flash_attn_varlen_func the same way; "
        "the attention op's own cost also writes the new K and V, so those few bytes are "
        "counted twice)",
        unfused=True),
}
#: epilogue functions vLLM's eager runs inside another op's kernel, not as a call of their own
_VLLM_FUSED_EPILOGUES = frozenset({"add"})  # the residual add: ops.fused_add_rms_norm
#: the recipe sets ``params.eager_recipes`` picks from (classes a set leaves out run as HF's)
RECIPE_SETS: dict[str, str] = {
    "hf": "HF transformers' Python modules (model.generate, a PyTorch training loop)",
    "vllm": "vLLM with enforce_eager: one fused custom op per RMSNorm (with the residual "
            "add before it), rotary and SwiGLU; attention as its cache write, its flash "
            "kernel and a copy into its output",
}


def recipe_set(device: Device | None) -> str:
    """The part's ``params.eager_recipes`` (``hf`` where unset or without a device)."""
    if device is None or device.family != "gpu":
        return "hf"
    return str(device.params.get("eager_recipes") or "hf")


def recipes(device: Device | None) -> dict[str, EagerRecipe]:
    """Every class's recipe under the part's recipe set (:func:`recipe_set`)."""
    return {**EAGER_RECIPES, **VLLM_RECIPES} if recipe_set(device) == "vllm" else EAGER_RECIPES


#: an epilogue function a compiler fuses into a GEMM, as eager runs it after the GEMM
_EPILOGUE_ATEN = {"relu": "aten::relu", "gelu": "aten::gelu", "silu": "aten::silu",
                  "scale": "aten::mul (scalar)", "dropout": "aten::native_dropout",
                  "add": "aten::add (residual)", "mul": "aten::mul",
                  "batchnorm": "aten::cudnn_batch_norm"}


def eager_class(op: Op) -> str:
    """The :data:`EAGER_RECIPES` key of ``op``: ``norm.rmsnorm``, ``elementwise.add``,
    ``linear``, ... (``op`` for a kind without a recipe).

    >>> from workloads.ops import Norm
    >>> eager_class(Norm(norm="rmsnorm", rows=1, cols=4096, dtype="bf16"))
    'norm.rmsnorm'
    >>> EAGER_RECIPES["norm.rmsnorm"].kernels, EAGER_RECIPES["norm.layernorm"].kernels
    (8, 1)
    """
    from workloads.ops import Conv2d, Elementwise, MatMul, Norm, Pool

    if isinstance(op, Norm):
        key = f"norm.{op.norm}"
        return f"{key}.fp32" if op.norm == "rmsnorm" and op.dtype.bytes >= 4 else key
    if isinstance(op, Elementwise):
        key = "elementwise.rope" if op.fn == "mul" and op.table is not None else \
            f"elementwise.{op.fn}"
    elif isinstance(op, MatMul):
        key = "linear" if op.weight else "matmul"
    elif isinstance(op, Conv2d):
        key = "conv2d.bias" if op.bias else "conv2d"
    elif isinstance(op, Pool):
        key = "pool.max" if op.mode == "max" else "pool"
    else:
        key = op.kind
    return key if key in EAGER_RECIPES else "op"


def kernels_of(cost: OpCost) -> int:
    """Kernels the mapper's cost of one op launches: ``details["kernels"]`` (split-K: the GEMM
    and its reduction) or ``details["launches"]`` (flash-decoding and its combine), else 1."""
    det = cost.details
    k = det.get("kernels", det.get("launches", 1))
    try:
        n = int(k)
    except (TypeError, ValueError):
        return 1
    return max(1, n)


def eager_recipe(op: Op, cost: OpCost | None = None, device: Device | None = None
                 ) -> tuple[str, tuple[AtenCall, ...], str]:
    """``(class, ATen calls, source)`` of ``op`` under ``eager``: its recipe in the part's
    recipe set (:func:`recipes`; HF's without a device), with the call that runs the op's own
    kernel (``AtenCall.op_kernel``, else the first that launches one) carrying at least the
    mapper's kernels (``cost``), and one more call per epilogue function of a matmul or conv
    that eager runs after the GEMM (:func:`_eager_epilogue`)."""
    name = eager_class(op)
    rec = recipes(device)[name]
    calls = list(rec.calls)
    if cost is not None:
        k = kernels_of(cost)
        i = next((j for j, c in enumerate(calls) if c.op_kernel),
                 next((j for j, c in enumerate(calls) if c.kernels > 0), None))
        if i is not None and k > calls[i].kernels:
            calls[i] = replace(calls[i], kernels=k)
    source = rec.source
    epi = _eager_epilogue(op, device)
    if epi:
        calls += [AtenCall(_EPILOGUE_ATEN.get(f, f"aten::{f}")) for f in epi]
        source += ("; each fused epilogue function runs as its own op after the GEMM in eager "
                   "PyTorch (" + ", ".join(epi) + ")")
    return name, tuple(calls), source


def _eager_epilogue(op: Op, device: Device | None) -> tuple[str, ...]:
    """The epilogue functions of ``op`` that eager runs as ops of their own after it: all of
    them in HF's recipes; under vLLM's, not the residual add (its next RMSNorm,
    ops.fused_add_rms_norm, adds it)."""
    epi = tuple(getattr(op, "epilogue", ()) or ())
    if recipe_set(device) == "vllm":
        epi = tuple(f for f in epi if f not in _VLLM_FUSED_EPILOGUES)
    return epi


def _host_costs(device: Device) -> tuple[float, float, float]:
    """``(eager_dispatch, eager_alloc, eager_launch)`` of ``device`` (0 where unset)."""
    return tuple(float(_time_param(device, n) or 0.0)  # type: ignore[return-value]
                 for n, _ in EAGER_HOST_PARAMS)


def _call_host_s(call: AtenCall, costs: tuple[float, float, float]) -> float:
    dispatch, alloc, launch = costs
    return (dispatch if call.python else 0.0) + alloc * call.outputs + launch * call.kernels


def eager_host_s(op: Op, cost: OpCost | None, device: Device) -> float:
    """Host time of ``op`` under ``eager`` on ``device``: per ATen call of its recipe
    ``eager_dispatch`` (from Python), ``eager_alloc`` per output, ``eager_launch`` per
    kernel; 0 on a CPU (its dispatch is inside the op's time)."""
    if device.family == "cpu":
        return 0.0
    costs = _host_costs(device)
    return sum(_call_host_s(c, costs) for c in eager_recipe(op, cost, device)[1])


def _pointwise(nbytes: float, op: Op) -> Op:
    """A one-input pointwise kernel in ``op``'s dtype that reads and writes ``nbytes`` in all:
    how an unfused ATen kernel (a cast, ``pow``, a broadcast ``mul``, a last-dim ``mean``:
    TensorIterator grid kernels, bandwidth- or latency-bound alike) is costed on the part."""
    from workloads.ops import Elementwise

    b = op.dtype.bytes
    return Elementwise(fn="scale", numel=max(1, math.ceil(nbytes / (2.0 * b))), dtype=op.dtype)


def _unfused_ops(op: Op, calls: tuple[AtenCall, ...], device: Device | None = None
                 ) -> list[Op | None]:
    """Per call of an unfused recipe, the op its kernel is costed as (None: no kernel, or the
    op itself without the epilogues eager runs after it, marked by ``op`` in that slot); the
    part's recipe set (``device``) says which epilogues those are."""
    from workloads.ops import EPILOGUE_FNS, Attention, Elementwise, MatMul, Norm

    out: list[Op | None] = []
    if isinstance(op, Norm) and op.norm == "rmsnorm":
        n, r, b = float(op.rows * op.cols), float(op.rows), float(op.dtype.bytes)
        f = 4.0  # float32
        moved = (n * b + n * f, 2 * n * f, n * f + r * f, 2 * r * f, 2 * r * f,
                 2 * n * f + r * f, n * f + n * b, 2 * n * b + op.cols * b)
        for c, nb in zip(calls, moved):
            out.append(_pointwise(nb, op) if c.kernels else None)
        return out
    if isinstance(op, Elementwise) and op.fn == "mul" and op.table is not None:
        # rotary: per tensor mul(x, cos) and mul(., sin) read x and a cos/sin row per token,
        # neg reads and writes half of x, cat all of x, add two x's into one; the graph's op
        # holds q and k together, so each gets half of its elements (the bytes are exact,
        # the split between q's and k's kernels is not for grouped KV heads)
        x, rows, b = op.numel / 2.0, float(-(-op.numel // (op.row or op.numel))), op.dtype.bytes
        tab = rows * op.table
        moved = {"aten::mul (x * cos)": 2 * x + tab, "aten::neg (-x2)": x,
                 "aten::cat (rotate_half)": 2 * x, "aten::mul (* sin)": 2 * x + tab,
                 "aten::add": 3 * x}
        return [_pointwise(moved[c.name] * b, op) if c.kernels else None for c in calls]
    if isinstance(op, Attention) and any(c.name.startswith("vllm::reshape_and") for c in calls):
        # the new tokens' K and V read and written into the cache, the attention kernel, then
        # its output copied into the preallocated output
        kv = 2.0 * op.batch * op.seq * int(op.kv_heads or op.heads) * op.head_dim
        cache = op.kv_dtype or op.dtype
        out_b = 2.0 * op.batch * op.seq * op.heads * op.head_dim * op.dtype.bytes
        return [None if not c.kernels else op if c.op_kernel
                else _pointwise(kv * (op.dtype.bytes + cache.bytes), op)
                if c.name.startswith("vllm::reshape_and") else _pointwise(out_b, op)
                for c in calls]
    if isinstance(op, Elementwise) and op.fn == "swiglu":
        return [Elementwise(fn="silu", numel=op.numel, dtype=op.dtype),
                Elementwise(fn="mul", numel=op.numel, dtype=op.dtype)]
    epi = _eager_epilogue(op, device)
    # the epilogues eager runs inside another kernel stay with the op's own
    base = replace(op, epilogue=tuple(f for f in (getattr(op, "epilogue", ()) or ())
                                      if f not in epi))
    out_elems = (op.batch * op.m * op.n if isinstance(op, MatMul)
                 else op.bytes_written() / op.dtype.bytes)
    out = [base] + [None] * (len(calls) - 1 - len(epi))
    for fn in epi:
        # batchnorm folded to scale + shift (EPILOGUE_FNS): a one-input pointwise pass
        name = fn if fn in EPILOGUE_FNS and fn != "batchnorm" else "scale"
        out.append(Elementwise(fn=name, numel=max(1, int(out_elems)), dtype=op.dtype))
    return out


def _merge(parts: list[dict[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for p in parts:
        for k, v in p.items():
            out[k] = out.get(k, 0.0) + float(v)
    return out


def _eager_cost(op: Op, cost: OpCost, device: Device,
                cost_of: Callable[[Op], OpCost] | None) -> OpCost:
    """``cost`` under ``eager`` (see the module docstring)."""
    from simulator.mapping.base import EnergyParts, MapOptions
    from simulator.mapping.registry import cost_op

    name, calls, _ = eager_recipe(op, cost, device)
    costs = _host_costs(device)
    hs = [_call_host_s(c, costs) for c in calls]
    det: dict[str, Any] = {**cost.details, "timing": "eager", "host_s": sum(hs),
                           "eager_class": name, "eager_calls": sum(c.python for c in calls),
                           "eager_kernels": sum(c.kernels for c in calls),
                           "eager_outputs": sum(c.outputs for c in calls)}
    epi = bool(_eager_epilogue(op, device))
    if device.family != "gpu" or not (recipes(device)[name].unfused or epi):
        return replace(cost, details=FrozenMap(det))
    run = cost_of or (lambda o: cost_op(o, device, MapOptions()))
    subs = [run(o) if o is not None else None for o in _unfused_ops(op, calls, device)]
    # the calls' kernels in a sub-pipeline: kernel j starts once its call is issued and the
    # previous kernel is done
    t_host, end, first = 0.0, 0.0, None
    for h, c in zip(hs, subs):
        t_host += h
        if c is not None:
            start = max(t_host, end)
            first = start if first is None else first
            end = start + c.latency_s
    done = [c for c in subs if c is not None]
    if first is None or not done:
        return replace(cost, details=FrozenMap(det))
    busy = sum(c.latency_s for c in done)
    span = end - first
    lat = max(cost.latency_s, span)
    energy = EnergyParts(sum(c.energy.compute_j for c in done),
                         FrozenMap(_merge([dict(c.energy.memory_j) for c in done])))
    overhead = sum(c.overhead_s for c in done) + (lat - busy)
    compute = sum(c.compute_s for c in done)
    memory = sum(c.memory_s for c in done)
    det.update({"host_lead_s": t_host - first, "eager_unfused_s": busy,
                "eager_span_s": span, "eager_fused_s": cost.latency_s,
                "launch_s": sum(float(c.details.get("launch_s", 0.0)) for c in done)})
    for key in ("startup_s", "fill_s", "wave_overhead_s", "reduce_s"):  # the kernels' own terms
        if any(key in c.details for c in done):
            det[key] = sum(float(c.details.get(key, 0.0)) for c in done)
    util = cost.utilization * cost.latency_s / lat if lat > 0 else cost.utilization
    bound = "latency" if overhead > max(compute, memory) else \
        ("compute" if compute >= memory else "memory")
    note = (f"eager: {len(done)} unfused kernel{'s' if len(done) > 1 else ''} "
            f"({recipes(device)[name].source if not epi else 'the GEMM, then its epilogue'}), "
            f"each reading and writing its own tensor with its own launch: "
            f"{busy * 1e6:.2f} us of kernels, a {span * 1e6:.2f} us span as the host issues "
            f"them, vs {cost.latency_s * 1e6:.2f} us for the fused kernel")
    return replace(cost, latency_s=lat, compute_s=compute, memory_s=memory,
                   overhead_s=overhead, bound=bound, utilization=min(1.0, util),
                   bytes_by_level=FrozenMap(_merge([dict(c.bytes_by_level) for c in done])),
                   energy=energy, details=FrozenMap(det), notes=(*cost.notes, note))


def _time_param(device: Device, name: str) -> float | None:
    """A time parameter of ``device`` (spec or family default), None where the family has
    none; a negative or non-finite value is a one-line error naming the part and field."""
    v = param(device, name, None)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        raise HwsimError(f"{device.name}: params.{name}: expected a time >= 0 like \"1 us\", "
                         f"got {v!r}")
    return float(v)


def check_timing(timing: str | None, device: Device) -> str:
    """``timing`` checked against ``device``'s family (None: the default, ``stream``).

    Raises
    ------
    HwsimError
        For an unknown mode, or one the part's family does not model (naming both), or a
        bad overhead parameter of the mode.
    """
    t = DEFAULT_TIMING if timing is None else timing
    if not isinstance(t, str) or t not in TIMINGS:
        raise HwsimError(f"--timing: expected one of {', '.join(TIMINGS)}, got {timing!r}")
    fam = device.family
    if t == "graph" and _time_param(device, "graph_launch_gap") is None:
        raise HwsimError(f"{device.name} ({fam} family): --timing graph is not modelled: hwsim "
                         "has no published per-node cost of a compiled graph runtime on this "
                         "family; set params.graph_launch_gap (--set params.graph_launch_gap="
                         "\"1 us\") or use kernel, stream or eager")
    if t == "eager" and fam != "cpu" and _time_param(device, "eager_dispatch") is None:
        raise HwsimError(f"{device.name} ({fam} family): --timing eager is not modelled: the "
                         "part runs a compiled program, with no framework dispatch per op; set "
                         "params.eager_dispatch (host time per call) or use kernel, graph or "
                         "stream")
    if t == "eager":
        _host_costs(device)  # each a time >= 0, or a one-line error
    _time_param(device, "launch_overhead")
    return t


def launch_part(op: Op, cost: OpCost, device: Device) -> float:
    """The share of ``cost.latency_s`` that is launch or dispatch (``launch_overhead``), not
    device time, for all of the op's kernels: a GPU mapper records it in
    ``details["launch_s"]`` (split-K: the GEMM's launch and the reduction's back-to-back
    gap; flash-decoding: two launches); the other families add ``launch_overhead`` to every
    op's fixed cost except collectives and host copies."""
    from workloads.ops import Collective, Memcpy

    det = cost.details
    if "launch_s" in det or device.family == "gpu":
        return float(det.get("launch_s", 0.0))
    if isinstance(op, Collective) or (isinstance(op, Memcpy) and op.src != op.dst):
        return 0.0
    return min(float(_time_param(device, "launch_overhead") or 0.0), max(cost.overhead_s, 0.0))


def apply_timing(op: Op, cost: OpCost, device: Device, timing: str, *,
                 cost_of: Callable[[Op], OpCost] | None = None) -> OpCost:
    """``cost`` as ``timing`` counts it (``timing`` already checked by :func:`check_timing`).

    ``stream`` returns ``cost`` itself. ``kernel`` drops the launch share, ``graph`` replaces
    it by one graph gap per kernel (:func:`kernels_of`; never more than the launch share),
    ``eager`` records the host's time in ``details["host_s"]`` (:func:`eager_host_s`, for
    the engine's host pipeline) and on a GPU costs an unfused recipe's kernels on the device
    (``cost_of``: the stream cost of an op on ``device``, default the part's mapper with
    default options).
    """
    if timing == "stream":
        return cost
    if timing == "eager":
        if device.family == "cpu":
            return replace(cost, details=FrozenMap({**cost.details, "timing": "eager",
                                                    "host_s": 0.0}))
        return _eager_cost(op, cost, device, cost_of)
    launch = launch_part(op, cost, device)
    k = kernels_of(cost)
    gap = 0.0 if timing == "kernel" else \
        min(k * float(_time_param(device, "graph_launch_gap") or 0.0), launch)
    lat = cost.latency_s - launch + gap
    if lat <= 0.0:  # a cost made only of its launch (never in practice): keep a tick
        lat = max(cost.latency_s - launch, 0.0) + gap
    util = cost.utilization * cost.latency_s / lat if lat > 0 else cost.utilization
    det = {**cost.details, "timing": timing, "launch_removed_s": launch, "graph_gap_s": gap}
    if "launch_s" in cost.details:
        det["launch_s"] = gap
    return replace(cost, latency_s=lat, overhead_s=max(0.0, cost.overhead_s - launch + gap),
                   utilization=util, details=FrozenMap(det))


def host_dispatch_s(device: Device, timing: str) -> float:
    """Host time of one ATen call from Python under ``eager`` (``eager_dispatch``) on a part
    driven from a separate host (not a CPU, whose dispatch is inside each op's time
    already); 0 otherwise. An op's whole host time is :func:`eager_host_s`."""
    if timing != "eager" or device.family == "cpu":
        return 0.0
    return float(_time_param(device, "eager_dispatch") or 0.0)


def timing_overheads(device: Device, timing: str) -> list[dict[str, Any]]:
    """The overheads ``timing`` applies on ``device``: ``{"name", "value_s", "source",
    "applies"}`` each (what ``--explain`` prints and ``meta["timing"]["overheads"]`` holds)."""
    rows: list[dict[str, Any]] = []

    def add(name: str, applies: str) -> None:
        v = _time_param(device, name)
        src = param_source_text(device, name)
        fam = FAMILY_DEFAULTS.get(device.family, {}).get(name)
        if name in device.params and fam is not None and fam.value is not None:
            src += (f" (as the {device.family} family default, simulator/arch/params.py: "
                    f"{fam.source})" if v is not None and math.isclose(v, fam.value)
                    else " (its source: the spec's header)")
        rows.append({"name": name, "value_s": v, "source": src, "applies": applies})

    if timing == "kernel":
        add("launch_overhead", "not counted: device time only")
    elif timing == "graph":
        add("launch_overhead", "replaced by the graph gaps where larger")
        add("graph_launch_gap", "per kernel launched (split-K's reduction and flash-decoding's "
                                "combine count), instead of launch_overhead")
    elif timing == "stream":
        add("launch_overhead", "per kernel (launch and inter-kernel gap)"
            if device.family == "gpu" else "per op (dispatch)")
    else:
        if device.family == "cpu":
            add("launch_overhead", "per op: PyTorch's dispatch, serial with the op on the "
                                   "host thread that runs it")
        else:
            add("launch_overhead", "per kernel on the device (launch and inter-kernel gap)")
            for name, unit in EAGER_HOST_PARAMS:
                add(name, f"on the host, {unit}, pipelined ahead of the device")
    return rows


def host_pipeline(timing: str, device: Device) -> bool:
    """Whether the engine runs a host that issues each op (``eager`` off a CPU, with a host
    cost)."""
    return timing == "eager" and device.family != "cpu" and sum(_host_costs(device)) > 0.0


def eager_recipe_rows(device: Device | None = None) -> list[dict[str, Any]]:
    """The part's recipe set as rows (``meta["timing"]["recipes"]``, ``--explain``)."""
    return [{"class": k, "aten": [c.name for c in r.calls], "python_calls": r.python_calls,
             "kernels": r.kernels, "outputs": r.outputs, "unfused_on_device": r.unfused,
             "source": r.source} for k, r in recipes(device).items()]


def timing_meta(device: Device, timing: str) -> dict[str, Any]:
    """``Result.meta["timing"]`` before the run's host figures are added: the mode, what it
    means on this family, its overheads, and under ``eager`` on a separate host the recipes
    (ATen calls per op class, with sources) the host costs follow from."""
    meaning = MEANINGS[timing]
    if timing == "eager" and device.family == "cpu":
        meaning = ("framework ops called from Python on the CPU: the host thread dispatches "
                   "and runs each op, so dispatch is serial with it (same as stream)")
    out: dict[str, Any] = {"mode": timing, "meaning": meaning, "family": device.family,
                           "overheads": timing_overheads(device, timing)}
    if timing == "eager" and device.family != "cpu":
        if device.family == "gpu":
            out["recipe_set"] = recipe_set(device)
            out["recipe_set_meaning"] = RECIPE_SETS[recipe_set(device)]
        out["recipes"] = eager_recipe_rows(device)
    return out
