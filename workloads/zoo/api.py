"""Model zoo API: shipped configs, parameter counts and graph building."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from typing import Any

from workloads.dtypes import DType, get_dtype
from workloads.errors import WorkloadError
from workloads.graph import WorkloadGraph
from workloads.importers.hf_config import (
    LeNetSpec,
    MBConvSpec,
    MLPSpec,
    ModelSpec,
    ResNetSpec,
    TransformerSpec,
    YoloSpec,
    parse_config,
    parse_config_text,
    read_config_file,
)
from workloads.memory import footprint_by_device
from workloads.seqlens import SeqLenDist, check_max, resolve_seq_lens
from workloads.transforms.tensor_parallel import tensor_parallel
from workloads.transforms.training import training_step
from workloads.zoo.cnn import (
    build_mbconv,
    build_resnet,
    build_yolo,
    mbconv_params,
    resnet_params,
    yolo_params,
)
from workloads.zoo.lenet import build_lenet, lenet_params
from workloads.zoo.mlp import build_mlp, mlp_params
from workloads.zoo.options import BuildOptions
from workloads.zoo.transformer import build_transformer, transformer_params

__all__ = ["ModelInfo", "PHASES", "list_models", "load_config", "build", "build_model",
           "count_params"]

#: Phases each family supports; the first is the default for ``phase="auto"``.
PHASES: dict[str, tuple[str, ...]] = {
    "decoder": ("prefill", "decode", "forward", "train"),
    "encoder": ("forward", "train"),
    "cnn": ("forward", "train"),
    "mlp": ("forward", "train"),
}
_DEFAULT_SEQ = {"decoder": 512, "encoder": 128}
_DEFAULT_CONTEXT = 2048
#: Most samples one packed batch takes from a seq_lens distribution (each is one length in the
#: graph's attention op; MLPerf Offline batches are hundreds to a few thousand).
MAX_PACKED_SAMPLES = 2**20
_DEFAULT_IMAGE = 224

_BUILDERS: dict[type, tuple[Callable[[Any, BuildOptions], WorkloadGraph], Callable[[Any], float]]]
_BUILDERS = {
    TransformerSpec: (build_transformer, transformer_params),
    ResNetSpec: (build_resnet, resnet_params),
    LeNetSpec: (build_lenet, lenet_params),
    MLPSpec: (build_mlp, mlp_params),
    MBConvSpec: (build_mbconv, mbconv_params),
    YoloSpec: (build_yolo, yolo_params),
}
_META_FIELDS = ("published_params", "published_active_params", "published_macs", "source",
                "description")


@dataclass(frozen=True)
class ModelInfo:
    """A shipped model: ``params`` is the analytic count, ``published_params`` the paper or
    model-card figure recorded in its YAML."""

    name: str
    family: str
    params: float
    description: str
    published_params: float | None
    source: str


@cache
def _shipped_text(name: str) -> str:
    """A shipped config's text (read once per process: sweeps build thousands of graphs)."""
    return _configs()[name].read_text(encoding="utf-8")


@lru_cache(maxsize=256)
def _parsed(text: str, source: str) -> dict[str, Any]:
    return parse_config_text(text, source)


@lru_cache(maxsize=1)
def _configs() -> dict[str, Traversable]:
    root = resources.files("workloads.zoo").joinpath("configs")
    return {p.name[: -len(".yaml")]: p for p in root.iterdir() if p.name.endswith(".yaml")}


def _resolve(name_or_path: str) -> tuple[dict[str, Any], str, str]:
    """(config, source for messages, model name) for a shipped name or a config path."""
    if not isinstance(name_or_path, (str, Path)) or not str(name_or_path).strip():
        raise WorkloadError(f"expected a model name or config path, got {name_or_path!r}")
    key = str(name_or_path).strip()
    shipped = _configs()
    if key.lower() in shipped:
        name = key.lower()
        source = f"workloads/zoo/configs/{name}.yaml"
        return copy.deepcopy(_parsed(_shipped_text(name), source)), source, name
    path = Path(key).expanduser()
    if path.exists() or path.suffix.lower() in (".json", ".yaml", ".yml"):
        cfg = read_config_file(path)
        if cfg.get("_name_or_path"):  # HF: the hub id or the directory it was saved from
            name = Path(str(cfg["_name_or_path"]).rstrip("/")).name
        elif path.is_dir() or path.stem == "config":
            name = (path if path.is_dir() else path.parent).resolve().name
        else:
            name = path.stem
        return cfg, str(path), str(cfg.get("name") or name)
    raise WorkloadError(f"unknown model {key!r}; shipped models: {', '.join(sorted(shipped))} "
                        f"(or give the path of a .yaml/.json config)")


def load_config(name_or_path: str) -> dict[str, Any]:
    """The config dict of a shipped model name or of a ``.yaml``/``.json`` file (HF format).

    Raises
    ------
    WorkloadError
        For an unknown model, an unreadable or malformed file, or missing or invalid fields
        (the message names the file, the field and the value).

    Examples
    --------
    >>> load_config("llama2-7b")["hidden_size"]
    4096
    """
    cfg, source, _ = _resolve(name_or_path)
    parse_config(cfg, source)
    return cfg


def _params(spec: ModelSpec) -> float:
    return _BUILDERS[type(spec)][1](spec)


def count_params(config: Mapping[str, Any]) -> float:
    """Analytic parameter count of a config (all experts of a mixture-of-experts model).

    >>> round(count_params(load_config("resnet50")))
    25557032
    """
    return _params(parse_config(config))


def list_models() -> list[ModelInfo]:
    """The shipped models: MLP, CNNs, encoders, then decoders, each by parameter count."""
    out = []
    for name in _configs():
        cfg, source, _ = _resolve(name)
        spec = parse_config(cfg, source)
        pub = cfg.get("published_params")
        out.append(ModelInfo(name=name, family=spec.family, params=_params(spec),
                             description=str(cfg.get("description", "")),
                             published_params=float(pub) if pub is not None else None,
                             source=str(cfg.get("source", ""))))
    order = ["mlp", "cnn", "encoder", "decoder"]
    return sorted(out, key=lambda m: (order.index(m.family), m.params, m.name))


def _positive_int(model: str, name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise WorkloadError(f"{model}: {name} must be a positive integer, got {v!r}")
    return v


def _dtype(model: str, name: str, v: str | DType | None) -> DType | None:
    if v is None:
        return None
    try:
        return get_dtype(v)
    except ValueError as e:
        raise WorkloadError(f"{model}: {name}: {e}") from None


def _options(name: str, spec: ModelSpec, phase: str, batch: int, seq: int | None,
             context: int | None, dtype: str, weight_dtype: str | None, kv_dtype: str | None,
             tp: int, image_size: int | None, fuse_projections: bool = True,
             seq_lens: SeqLenDist | None = None) -> BuildOptions:
    family = spec.family
    if phase == "auto":
        phase = PHASES[family][0]
    if phase not in PHASES[family]:
        raise WorkloadError(f"{name}: phase {phase!r} is not available for {family} models; "
                            f"choose one of: {', '.join(PHASES[family])}")
    _positive_int(name, "batch", batch)
    _positive_int(name, "tp", tp)
    for field, v in (("seq", seq), ("context", context), ("image_size", image_size)):
        if v is not None:
            _positive_int(name, field, v)
    if tp > 1 and family in ("cnn", "mlp"):
        raise WorkloadError(f"{name}: tensor parallelism (tp={tp}) is supported for "
                            f"transformer models only")
    if context is not None and family in ("decoder", "encoder") and phase in ("forward", "train"):
        raise WorkloadError(f"{name}: context applies to prefill and decode only, "
                            f"not phase {phase!r}")
    if family in ("cnn", "mlp"):
        new, ctx = 1, 0  # one sample per batch element
    elif phase == "decode":
        new, ctx = 1, context if context is not None else (seq or _DEFAULT_CONTEXT)
    else:
        new, ctx = seq or _DEFAULT_SEQ[family], context or 0
    lens = _seq_lens(name, spec, phase, batch, seq, seq_lens)
    if lens is not None:
        new = max(lens)
        if min(lens) == new:  # all samples equally long: the padded graph, exactly
            lens = None
    return BuildOptions(
        model=name, phase="forward" if phase == "train" else phase, batch=batch, seq=new,
        context=ctx, dtype=_dtype(name, "dtype", dtype) or get_dtype("bf16"),
        weight_dtype=_dtype(name, "weight_dtype", weight_dtype),
        kv_dtype=_dtype(name, "kv_dtype", kv_dtype),
        image_size=image_size or getattr(spec, "image_size", None) or _DEFAULT_IMAGE,
        fuse_projections=fuse_projections, seq_lens=lens)


def _seq_lens(name: str, spec: ModelSpec, phase: str, batch: int, seq: int | None,
              dist: SeqLenDist | None) -> tuple[int, ...] | None:
    """The ``batch`` per-sample lengths drawn from ``dist`` (see :mod:`workloads.seqlens`),
    checked against the model; ``None`` without a distribution."""
    if dist is None:
        return None
    if not isinstance(spec, TransformerSpec):
        raise WorkloadError(f"{name}: seq_lens (variable-length samples) applies to "
                            f"transformer models, not {spec.family} models")
    if phase == "decode":
        raise WorkloadError(f"{name}: seq_lens applies to forward, prefill and train, not "
                            f"decode (one new token per sequence; set the cache with context)")
    if seq is not None:
        raise WorkloadError(f"{name}: give seq (every sample {seq} tokens) or seq_lens "
                            f"(a length per sample), not both")
    check_max(dist, spec.max_positions, name)
    if batch > MAX_PACKED_SAMPLES:
        raise WorkloadError(f"{name}: seq_lens: a batch of {batch:,} samples is more than the "
                            f"{MAX_PACKED_SAMPLES:,} lengths one packed batch holds")
    return dist.sample(batch)


def build(name_or_path: str, *, phase: str = "auto", batch: int = 1, seq: int | None = None,
          context: int | None = None, dtype: str = "bf16", weight_dtype: str | None = None,
          kv_dtype: str | None = None, tp: int = 1, image_size: int | None = None,
          recompute: str = "none", fuse_projections: bool = True,
          seq_lens: str | SeqLenDist | list[int] | None = None) -> WorkloadGraph:
    """Build the workload graph of a shipped model or a config file.

    The builder makes the unsharded model; ``tp`` and ``phase="train"`` are applied as the
    graph transforms :func:`~workloads.transforms.tensor_parallel.tensor_parallel` and
    :func:`~workloads.transforms.training.training_step` (a convenience: the simulator's
    planner applies the same transforms itself).

    Parameters
    ----------
    phase:
        ``auto`` (prefill for decoders, forward otherwise), ``forward``, ``prefill``,
        ``decode`` (one new token per sequence against a KV cache of ``context`` tokens) or
        ``train`` (forward + backward + Adam update).
    seq:
        Tokens per sequence (default 512 for decoders, 128 for encoders). For decode, the
        default for ``context``.
    context:
        Cached tokens before this step: the KV cache for decode (default ``seq`` or 2048), a
        cached prefix for prefill (default 0).
    dtype, weight_dtype, kv_dtype:
        Activation/compute precision, weights-only quantisation of linear layers, KV cache.
    tp:
        Tensor-parallel degree: the graph's ops are one device's shard, run by each of the
        ``tp`` devices, with all-reduces.
    recompute:
        Training only: ``none`` or ``full`` activation recomputation.
    image_size:
        Input resolution for CNNs (default: the config's ``image_size``, else 224).
    fuse_projections:
        Transformers: Q/K/V as one GEMM and gate/up as one GEMM (default, as vLLM and
        Megatron-LM run them); ``False``: one GEMM per projection.
    seq_lens:
        Transformers, forward/prefill/train: variable-length samples instead of ``seq``
        (a dataset name such as ``squad-v1.1``, a file of lengths, ``"128,256"``, a list or a
        :class:`~workloads.seqlens.SeqLenDist`). The batch takes ``batch`` lengths at evenly
        spaced quantiles and runs packed: token-wise layers on their sum, attention per
        sample (no padding), as TensorRT's variable-length BERT and FlashAttention's varlen
        kernels do.

    Raises
    ------
    WorkloadError
        Unknown model, bad config, a phase the family does not have, bad sizes or a ``tp``
        that does not divide the heads or MLP width.

    Examples
    --------
    >>> g = build("llama2-7b", phase="decode", batch=8, context=1024)
    >>> g.meta["tokens"], g.meta["context"]
    (8, 1024)
    """
    if phase == "train" and recompute not in ("none", "full"):
        raise WorkloadError(f"recompute must be none or full, got {recompute!r}")
    if recompute != "none" and phase != "train":
        raise WorkloadError(f"{name_or_path}: recompute applies to phase 'train' only, not "
                            f"{phase!r}")
    forward = build_model(name_or_path, phase=phase, batch=batch, seq=seq, context=context,
                          dtype=dtype, weight_dtype=weight_dtype, kv_dtype=kv_dtype, tp=tp,
                          image_size=image_size, fuse_projections=fuse_projections,
                          seq_lens=seq_lens)
    try:
        graph = tensor_parallel(forward, tp)
        if phase == "train":
            graph = training_step(graph, params=graph.meta["params_per_device"],
                                  recompute=recompute)
    except ValueError as e:  # an op rejected a shape
        raise WorkloadError(f"{forward.name}: {e}") from None
    fp = footprint_by_device(graph)[0]
    graph.meta.update({"weight_bytes": fp.weights, "kv_cache_bytes": fp.kv_cache,
                       "activation_bytes": fp.activations})
    if phase == "train":
        graph.meta["gradient_bytes"] = fp.gradients
        graph.meta["optimizer_state_bytes"] = fp.optimizer_state
    return graph


def build_model(name_or_path: str, *, phase: str = "auto", batch: int = 1,
                seq: int | None = None, context: int | None = None, dtype: str = "bf16",
                weight_dtype: str | None = None, kv_dtype: str | None = None, tp: int = 1,
                image_size: int | None = None, fuse_projections: bool = True,
                seq_lens: str | SeqLenDist | list[int] | None = None) -> WorkloadGraph:
    """The unsharded model graph the zoo builds (``phase="train"``: the forward pass of a
    training step), with the model's facts in ``meta``. Transforms do the rest.

    ``tp`` is only checked here (a tensor-parallel degree a CNN or MLP cannot take is an
    error); :func:`~workloads.transforms.tensor_parallel.tensor_parallel` applies it.
    """
    cfg, source, name = _resolve(name_or_path)
    spec = parse_config(cfg, source)
    dist = resolve_seq_lens(seq_lens)
    o = _options(name, spec, phase, batch, seq, context, dtype, weight_dtype, kv_dtype, tp,
                 image_size, fuse_projections, dist)
    builder, params_fn = _BUILDERS[type(spec)]
    try:
        graph = builder(spec, o)
    except ValueError as e:  # an op rejected a shape (e.g. an image too small for the net)
        raise WorkloadError(f"{name}: {e}") from None
    graph.phase = o.phase
    graph.meta.update({
        "model": name, "family": spec.family, "phase": o.phase, "batch": o.batch,
        "seq": o.seq, "context": o.context, "tokens": o.tokens, "samples": o.batch,
        "params": params_fn(spec), "tp": 1,
        "dtype": o.dtype.name, "weight_dtype": (o.weight_dtype or o.dtype).name,
        "kv_dtype": (o.kv_dtype or o.dtype).name, "config_source": source,
    })
    if isinstance(spec, (ResNetSpec, LeNetSpec, MBConvSpec, YoloSpec)):
        graph.meta["image_size"] = o.image_size
    if o.seq_lens is not None:  # packed variable-length samples: where they came from
        graph.meta["seq_lens"] = dist.name  # type: ignore[union-attr]
    if isinstance(spec, TransformerSpec) and spec.is_moe:
        graph.meta["active_params"] = transformer_params(spec, experts=spec.top_k)
    for key in _META_FIELDS:
        if key in cfg:
            graph.meta[key] = cfg[key]
    return graph
