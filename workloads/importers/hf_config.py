"""HuggingFace-style model configs -> normalised model specs the zoo builders consume.

A config is a plain dict with HF field names (``model_type``, ``hidden_size``, ...), read from a
shipped YAML in ``workloads/zoo/configs/`` or from a user's ``config.json``. :func:`parse_config`
maps ``model_type`` to a parser that checks every field it needs and returns a frozen spec:

===========================  =================  ============================================
model_type                   spec               builder
===========================  =================  ============================================
gpt2 (also GPT-3 shapes)     TransformerSpec    decoder, learned positions, tied LM head
bert                         TransformerSpec    encoder, post-LN, token-type embeddings
llama, mistral               TransformerSpec    decoder, RMSNorm, SwiGLU, GQA
mixtral                      TransformerSpec    decoder with a top-k mixture of experts
resnet                       ResNetSpec         CNN (basic or bottleneck blocks; ImageNet or
                                                CIFAR stem)
lenet                        LeNetSpec          LeNet-5-style CNN (hwsim's own format)
mbconv                       MBConvSpec         inverted-residual CNN: MobileNetV2/V3,
                                                EfficientNet (hwsim's own block table)
yolov8                       YoloSpec           YOLOv8 detector (Ultralytics scales)
mlp                          MLPSpec            stack of linear layers (hwsim's own format)
===========================  =================  ============================================

All problems of a config are collected and raised together in one :class:`WorkloadError`, each
naming the file, the field and the value found. Every size field is bounded
(:data:`FIELD_MAX`); files over :data:`MAX_CONFIG_BYTES` are refused before parsing; JSON
``NaN``/``Infinity`` and duplicate keys are errors. YAML is read with :class:`StrictYAMLLoader`
(no anchors or aliases, no duplicate keys, bounded nesting), which the arch-spec loader shares.

Examples
--------
>>> spec = parse_config({"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2,
...                      "num_attention_heads": 4, "intermediate_size": 128,
...                      "vocab_size": 100}, "toy.json")
>>> spec.family, spec.head_dim, spec.kv_heads
('decoder', 16, 4)
"""

from __future__ import annotations

import json
import math
import os
import reprlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from workloads.errors import WorkloadError

__all__ = ["TransformerSpec", "ResNetSpec", "LeNetSpec", "MLPSpec", "MBBlock", "MBConvSpec",
           "YoloSpec", "ModelSpec", "MODEL_TYPES", "MB_ACTS", "SE_GATES",
           "parse_config", "parse_config_text", "read_config_file", "StrictYAMLLoader",
           "strict_yaml_load", "MAX_CONFIG_BYTES", "MAX_YAML_DEPTH", "FIELD_MAX"]

#: Largest config file (or text) read; a real HF config.json is a few KiB.
MAX_CONFIG_BYTES = 1 << 20
#: Deepest nesting of mappings and lists a YAML input may have.
MAX_YAML_DEPTH = 32

_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60


def _show(value: Any) -> str:
    """``repr(value)``, shortened for one-line messages."""
    return _REPR.repr(value)


class StrictYAMLLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` for untrusted input files.

    Refuses anchors and aliases (so an alias bomb, "billion laughs", fails at its first anchor
    instead of expanding), duplicate mapping keys (the second would silently win) and nesting
    deeper than :data:`MAX_YAML_DEPTH`. Each refusal is a ``yaml.YAMLError`` with the line and
    column, like any other YAML syntax error.
    """

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            kind = "aliases (*" if isinstance(event, yaml.AliasEvent) else "anchors (&"
            raise yaml.composer.ComposerError(
                None, None, f"YAML {kind}{event.anchor}) are not allowed", event.start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nested deeper than {MAX_YAML_DEPTH} levels", event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            self.flatten_mapping(node)
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"a mapping key must be a plain value, got {_show(key)}",
                        key_node.start_mark) from None
                if first is not None:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {_show(key)} (first given on line {first})",
                        key_node.start_mark)
                seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        # PyYAML raises plain ValueError & co for a bad typed scalar (a 5,000-digit int, the
        # date 2001-13-45, `!!float x`); make each a YAMLError with its line and column.
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, AttributeError, OverflowError) as e:
            tag = str(node.tag).rsplit(":", 1)[-1]
            what = _show(node.value) if isinstance(node, yaml.ScalarNode) else "value"
            reason = (str(e).splitlines() or [type(e).__name__])[0][:120]
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {what} as {tag} ({reason})", node.start_mark) from None


def strict_yaml_load(text: str) -> Any:
    """Parse one YAML document with :class:`StrictYAMLLoader` (raises ``yaml.YAMLError``)."""
    try:
        return yaml.load(text, Loader=StrictYAMLLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError:
        raise
    except (ValueError, TypeError, AttributeError, OverflowError, RecursionError) as e:
        reason = (str(e).splitlines() or [type(e).__name__])[0][:120]
        raise yaml.YAMLError(f"cannot read a value ({reason})") from None


@dataclass(frozen=True)
class TransformerSpec:
    """A decoder or encoder transformer, normalised from any supported ``model_type``."""

    model_type: str
    family: str            # "decoder" | "encoder"
    d_model: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    d_ff: int              # per expert for mixture-of-experts models
    vocab: int
    max_positions: int
    norm: str              # "layernorm" | "rmsnorm"
    act: str               # "gelu" | "silu" | "relu"
    gated_mlp: bool        # SwiGLU-style gate and up projections
    qkv_bias: bool
    out_bias: bool
    mlp_bias: bool
    fused_qkv: bool        # one QKV GEMM (GPT-2 c_attn) instead of three
    post_norm: bool        # BERT: norm after each residual add
    learned_positions: bool
    type_vocab: int        # BERT token-type embeddings (0: none)
    tied_embeddings: bool  # LM head shares the token-embedding matrix
    final_norm: bool
    pooler: bool           # BERT pooler (dense d x d on the [CLS] token)
    n_experts: int = 0     # 0: dense MLP
    top_k: int = 0
    sliding_window: int | None = None

    @property
    def is_moe(self) -> bool:
        return self.n_experts > 0


@dataclass(frozen=True)
class ResNetSpec:
    """A ResNet (He et al. 2015, v1.5 strides: the 3x3 conv of a bottleneck downsamples).

    ``stem_type`` is ``imagenet`` (7x7/2 conv + 3x3/2 max-pool, every HF/torchvision ResNet) or
    ``cifar`` (one 3x3/1 conv, no pool: He et al. sec. 4.2 and the kuangliu ResNet-18 for 32x32
    inputs). ``shortcut`` is ``projection`` (1x1 conv + batchnorm where the shape changes,
    option B) or ``zero_pad`` (strided identity padded with zero channels, option A: no
    parameters, as in He et al.'s CIFAR nets). ``image_size`` is the default input resolution.
    """

    model_type: str
    family: str
    channels: int
    stem: int              # stem output channels (HF embedding_size)
    widths: tuple[int, ...]
    depths: tuple[int, ...]
    block: str             # "basic" | "bottleneck"
    num_labels: int
    downsample_in_first_stage: bool
    stem_type: str = "imagenet"   # "imagenet" | "cifar"
    shortcut: str = "projection"  # "projection" | "zero_pad"
    image_size: int = 224


@dataclass(frozen=True)
class LeNetSpec:
    """A LeNet-5-style CNN: ``conv(k x k) -> relu -> 2x2/2 pool`` per entry of
    ``conv_channels`` (padding ``conv_padding[i]``), flatten, then fully connected layers
    ``fc_sizes`` with ReLU and a ``num_labels`` classifier. All layers have a bias. The first
    fully connected layer is sized for ``image_size``, so the input resolution is fixed."""

    model_type: str
    family: str
    channels: int
    image_size: int
    conv_channels: tuple[int, ...]
    conv_padding: tuple[int, ...]
    kernel_size: int
    pool: str              # "max" | "avg"
    fc_sizes: tuple[int, ...]
    num_labels: int


@dataclass(frozen=True)
class MLPSpec:
    """Fully connected layers ``sizes[0] -> sizes[1] -> ... -> sizes[-1]``."""

    model_type: str
    family: str
    sizes: tuple[int, ...]
    act: str
    bias: bool


#: Activations of inverted-residual blocks: relu, relu6 (MobileNetV2), hswish (hard swish,
#: MobileNetV3) and silu (swish, EfficientNet).
MB_ACTS = ("relu", "relu6", "hswish", "silu")
#: Squeeze-and-excitation gates: sigmoid (EfficientNet) and hsigmoid (hard sigmoid, MobileNetV3).
SE_GATES = ("sigmoid", "hsigmoid")


@dataclass(frozen=True)
class MBBlock:
    """One inverted-residual block: a 1x1 expansion to ``expanded`` channels (left out when
    ``expanded`` equals the block's input channels), a ``kernel x kernel`` depthwise conv with
    ``stride``, a squeeze-and-excitation of ``se`` channels (0: none), a 1x1 projection to
    ``out`` channels; ``act`` after the expansion and the depthwise conv."""

    kernel: int
    expanded: int
    out: int
    stride: int
    se: int
    act: str


@dataclass(frozen=True)
class MBConvSpec:
    """An inverted-residual CNN (MobileNetV2 and V3, EfficientNet), hwsim's own format.

    A ``3x3/2`` stem conv to ``stem`` channels, the ``blocks`` in order (each row of the config
    is one block, so the table reads as the papers' tables expanded), a 1x1 head conv to
    ``head`` channels, global average pooling, fully connected layers ``classifier`` (MobileNetV3:
    one of 1280 with ``classifier_act``) and a ``num_labels`` classifier with bias. Every conv
    is followed by batchnorm; a residual add joins a block whose stride is 1 and whose input
    and output widths match. The squeeze-and-excitation is pool -> fc (``se_act``) -> fc
    (``se_gate``) -> channel-wise multiply, its fcs with bias.
    """

    model_type: str
    family: str
    channels: int
    stem: int
    stem_act: str
    blocks: tuple[MBBlock, ...]
    head: int
    head_act: str
    classifier: tuple[int, ...]
    classifier_act: str
    se_act: str
    se_gate: str
    num_labels: int
    image_size: int = 224


@dataclass(frozen=True)
class YoloSpec:
    """A YOLOv8 detector (Ultralytics ``yolov8.yaml``: CSP-Darknet backbone with C2f blocks,
    SPPF, a PAN neck and the anchor-free decoupled head over strides 8, 16 and 32), scaled by
    ``depth_multiple`` (repeats of the C2f blocks), ``width_multiple`` and ``max_channels``
    (channel widths) as Ultralytics' ``scales`` do; ``num_labels`` classes (``nc``), ``reg_max``
    distribution bins per box side. ``image_size`` (a multiple of 32) is the default input."""

    model_type: str
    family: str
    channels: int
    depth_multiple: float
    width_multiple: float
    max_channels: int
    num_labels: int
    reg_max: int
    image_size: int = 640


ModelSpec = TransformerSpec | ResNetSpec | LeNetSpec | MLPSpec | MBConvSpec | YoloSpec

_ACTS = {"gelu": "gelu", "gelu_new": "gelu", "gelu_fast": "gelu", "gelu_pytorch_tanh": "gelu",
         "quick_gelu": "gelu", "silu": "silu", "swish": "silu", "relu": "relu"}
_REQUIRED = object()

#: Largest value accepted for each size field: sane bounds, far above any real model (the
#: largest shipped hidden_size is 12,288, vocab 128k, context 128k), so a typo such as
#: ``hidden_size: 10**30`` is an error naming the field instead of a model of 1e60 FLOP.
#: Fields not listed are bounded by 2**31 - 1; list fields hold at most 1,000 entries.
FIELD_MAX: dict[str, int] = {
    "hidden_size": 1_000_000, "n_embd": 1_000_000, "embedding_size": 1_000_000,
    "num_hidden_layers": 10_000, "n_layer": 10_000, "depths": 10_000,
    "num_attention_heads": 100_000, "n_head": 100_000, "num_key_value_heads": 100_000,
    "head_dim": 100_000, "intermediate_size": 10_000_000, "n_inner": 10_000_000,
    "vocab_size": 100_000_000, "type_vocab_size": 1_000_000,
    "max_position_embeddings": 1_000_000_000, "n_positions": 1_000_000_000,
    "n_ctx": 1_000_000_000, "sliding_window": 1_000_000_000,
    "num_local_experts": 100_000, "num_experts_per_tok": 100_000,
    "num_channels": 100_000, "num_labels": 100_000_000, "image_size": 100_000,
    "kernel_size": 1_000, "hidden_sizes": 1_000_000, "conv_channels": 1_000_000,
    "fc_sizes": 10_000_000, "layer_sizes": 10_000_000,
    "stem_channels": 1_000_000, "head_channels": 1_000_000, "classifier_sizes": 10_000_000,
    "max_channels": 1_000_000, "reg_max": 1_000,
}
_DEFAULT_MAX = 2**31 - 1
_MAX_LIST = 1_000


def _clip(problem: str, limit: int = 300) -> str:
    """One short line: newlines escaped, a huge value cut in the middle."""
    problem = problem.replace("\r", "\\r").replace("\n", "\\n")
    if len(problem) <= limit:
        return problem
    return f"{problem[:limit - 120]} ...({len(problem) - limit + 20:,} characters)... " \
           f"{problem[-100:]}"


def _is_whole(v: Any) -> bool:
    """An int, or a finite float with no fractional part (not a bool, NaN or infinity)."""
    if isinstance(v, bool):
        return False
    return isinstance(v, int) or (isinstance(v, float) and math.isfinite(v) and v.is_integer())


class _Fields:
    """Reads typed fields from a config, collecting every problem instead of stopping."""

    def __init__(self, cfg: Mapping[str, Any], source: str, model_type: str):
        self.cfg, self.source, self.model_type = cfg, source, model_type
        self.problems: list[str] = []

    def _get(self, names: tuple[str, ...], default: Any) -> tuple[str, Any]:
        for n in names:
            if n in self.cfg and self.cfg[n] is not None:
                return n, self.cfg[n]
        if default is _REQUIRED:
            alts = " (or " + ", ".join(repr(n) for n in names[1:]) + ")" if len(names) > 1 else ""
            self.problems.append(f"field {names[0]!r}{alts} is missing "
                                 f"(required for model_type {self.model_type!r})")
        return names[0], default

    def int(self, *names: str, default: Any = _REQUIRED, minimum: int = 1) -> Any:
        name, v = self._get(names, default)
        if v is _REQUIRED or (v is default and v is None):
            return v
        hi = FIELD_MAX.get(name, _DEFAULT_MAX)
        if not _is_whole(v) or v < minimum:
            what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
            self.problems.append(f"field {name!r}: expected {what}, got {_show(v)}")
            return _REQUIRED
        if v > hi:
            self.problems.append(f"field {name!r}: expected an integer from {minimum} to {hi:,}, "
                                 f"got {_show(v)}")
            return _REQUIRED
        return int(v)

    def ints(self, name: str) -> Any:
        _, v = self._get((name,), _REQUIRED)
        if v is _REQUIRED:
            return v
        hi = FIELD_MAX.get(name, _DEFAULT_MAX)
        if (not isinstance(v, (list, tuple)) or not v or len(v) > _MAX_LIST
                or any(isinstance(x, bool) or not isinstance(x, int) or not 1 <= x <= hi
                       for x in v)):
            self.problems.append(f"field {name!r}: expected a list of 1 to {_MAX_LIST} integers "
                                 f"from 1 to {hi:,}, got {_show(v)}")
            return _REQUIRED
        return tuple(int(x) for x in v)

    def bool(self, name: str, default: bool) -> bool:
        _, v = self._get((name,), default)
        if not isinstance(v, bool):
            self.problems.append(f"field {name!r}: expected true or false, got {_show(v)}")
            return default
        return v

    def act(self, name: str, default: str) -> str:
        _, v = self._get((name,), default)
        if str(v).lower() not in _ACTS:
            self.problems.append(f"field {name!r}: unsupported activation {_show(v)}; "
                                 f"known: {', '.join(sorted(_ACTS))}")
            return default
        return _ACTS[str(v).lower()]

    def check(self, ok: bool, message: str) -> None:
        if not ok:
            self.problems.append(message)

    def finish(self) -> None:
        if self.problems:
            raise WorkloadError("\n".join(f"{self.source}: {_clip(p)}" for p in self.problems))


def _ok(*values: Any) -> bool:
    """True when none of ``values`` failed to parse (so cross-field checks make sense)."""
    return all(v is not _REQUIRED and v is not None for v in values)


def _heads_and_dim(f: _Fields, d: Any, heads: Any, kv: Any) -> tuple[Any, Any]:
    head_dim = f.int("head_dim", default=None)
    if head_dim is None and _ok(d, heads):
        f.check(d % heads == 0, f"field 'num_attention_heads': {heads} does not divide "
                                f"hidden_size {d} (give head_dim)")
        head_dim = d // heads
    if _ok(heads, kv):
        f.check(heads % kv == 0, f"field 'num_key_value_heads': {kv} must divide "
                                 f"num_attention_heads {heads}")
    return head_dim, kv


def _gpt2(f: _Fields) -> TransformerSpec:
    d = f.int("n_embd", "hidden_size")
    heads = f.int("n_head", "num_attention_heads")
    head_dim, _ = _heads_and_dim(f, d, heads, heads)
    inner = f.int("n_inner", "intermediate_size", default=None)
    spec = dict(
        model_type=f.model_type, family="decoder", d_model=d,
        layers=f.int("n_layer", "num_hidden_layers"), heads=heads, kv_heads=heads,
        head_dim=head_dim, d_ff=inner if inner is not None else (4 * d if _ok(d) else d),
        vocab=f.int("vocab_size"), max_positions=f.int("n_positions", "n_ctx", default=1024),
        norm="layernorm", act=f.act("activation_function", "gelu"), gated_mlp=False,
        qkv_bias=True, out_bias=True, mlp_bias=True, fused_qkv=True, post_norm=False,
        learned_positions=True, type_vocab=0,
        tied_embeddings=f.bool("tie_word_embeddings", True), final_norm=True, pooler=False)
    f.finish()
    return TransformerSpec(**spec)


def _bert(f: _Fields) -> TransformerSpec:
    d = f.int("hidden_size")
    heads = f.int("num_attention_heads")
    head_dim, _ = _heads_and_dim(f, d, heads, heads)
    spec = dict(
        model_type=f.model_type, family="encoder", d_model=d,
        layers=f.int("num_hidden_layers"), heads=heads, kv_heads=heads, head_dim=head_dim,
        d_ff=f.int("intermediate_size"), vocab=f.int("vocab_size"),
        max_positions=f.int("max_position_embeddings", default=512), norm="layernorm",
        act=f.act("hidden_act", "gelu"), gated_mlp=False, qkv_bias=True, out_bias=True,
        mlp_bias=True, fused_qkv=False, post_norm=True, learned_positions=True,
        type_vocab=f.int("type_vocab_size", default=2, minimum=0), tied_embeddings=False,
        final_norm=False, pooler=f.bool("add_pooling_layer", True))
    f.finish()
    return TransformerSpec(**spec)


def _llama(f: _Fields) -> TransformerSpec:
    d = f.int("hidden_size")
    heads = f.int("num_attention_heads")
    kv = f.int("num_key_value_heads", default=heads if _ok(heads) else None)
    head_dim, kv = _heads_and_dim(f, d, heads, kv)
    moe = f.model_type == "mixtral"
    n_experts = f.int("num_local_experts") if moe else 0
    top_k = f.int("num_experts_per_tok", default=2) if moe else 0
    if moe and _ok(n_experts, top_k):
        f.check(top_k <= n_experts, f"field 'num_experts_per_tok': {top_k} is more than "
                                    f"num_local_experts {n_experts}")
    mlp_bias = f.bool("mlp_bias", False)
    spec = dict(
        model_type=f.model_type, family="decoder", d_model=d,
        layers=f.int("num_hidden_layers"), heads=heads, kv_heads=kv, head_dim=head_dim,
        d_ff=f.int("intermediate_size"), vocab=f.int("vocab_size"),
        max_positions=f.int("max_position_embeddings", default=4096), norm="rmsnorm",
        act=f.act("hidden_act", "silu"), gated_mlp=True,
        qkv_bias=f.bool("attention_bias", False), out_bias=f.bool("attention_bias", False),
        mlp_bias=mlp_bias, fused_qkv=False, post_norm=False, learned_positions=False,
        type_vocab=0, tied_embeddings=f.bool("tie_word_embeddings", False), final_norm=True,
        pooler=False, n_experts=n_experts, top_k=top_k,
        sliding_window=f.int("sliding_window", default=None))
    f.finish()
    return TransformerSpec(**spec)


def _resnet(f: _Fields) -> ResNetSpec:
    widths = f.ints("hidden_sizes")
    depths = f.ints("depths")
    if _ok(widths, depths):
        f.check(len(widths) == len(depths), f"fields 'hidden_sizes' and 'depths': lengths differ "
                                            f"({len(widths)} vs {len(depths)})")
    block = f.cfg.get("layer_type", "bottleneck")
    f.check(block in ("basic", "bottleneck"),
            f"field 'layer_type': expected 'basic' or 'bottleneck', got {block!r}")
    if block == "bottleneck" and _ok(widths):
        f.check(all(w % 4 == 0 for w in widths),
                f"field 'hidden_sizes': bottleneck widths must be multiples of 4, got {widths}")
    f.check(f.cfg.get("hidden_act", "relu") == "relu",
            f"field 'hidden_act': only 'relu' is supported for resnet, got "
            f"{f.cfg.get('hidden_act')!r}")
    stem_type = f.cfg.get("stem_type", "imagenet")
    f.check(stem_type in ("imagenet", "cifar"),
            f"field 'stem_type': expected 'imagenet' or 'cifar', got {stem_type!r}")
    shortcut = f.cfg.get("shortcut", "projection")
    f.check(shortcut in ("projection", "zero_pad"),
            f"field 'shortcut': expected 'projection' or 'zero_pad', got {shortcut!r}")
    if shortcut == "zero_pad":
        f.check(block == "basic", f"field 'shortcut': 'zero_pad' needs layer_type 'basic', "
                                  f"got {block!r}")
    spec = dict(model_type=f.model_type, family="cnn", channels=f.int("num_channels", default=3),
                stem=f.int("embedding_size", default=64), widths=widths, depths=depths,
                block=block, num_labels=f.int("num_labels", default=1000),
                downsample_in_first_stage=f.bool("downsample_in_first_stage", False),
                stem_type=stem_type, shortcut=shortcut,
                image_size=f.int("image_size", default=224))
    f.finish()
    return ResNetSpec(**spec)


def _lenet(f: _Fields) -> LeNetSpec:
    convs = f.ints("conv_channels")
    pads = f.cfg.get("conv_padding", [0] * len(convs) if _ok(convs) else [])
    if (not isinstance(pads, (list, tuple))
            or any(isinstance(x, bool) or not isinstance(x, int) or x < 0 for x in pads)):
        f.check(False, f"field 'conv_padding': expected a list of integers >= 0, got {pads!r}")
        pads = _REQUIRED
    elif _ok(convs):
        f.check(len(pads) == len(convs), f"fields 'conv_channels' and 'conv_padding': lengths "
                                         f"differ ({len(convs)} vs {len(pads)})")
    pool = f.cfg.get("pool", "max")
    f.check(pool in ("max", "avg"), f"field 'pool': expected 'max' or 'avg', got {pool!r}")
    f.check(f.cfg.get("activation", "relu") == "relu",
            f"field 'activation': only 'relu' is supported for lenet, got "
            f"{f.cfg.get('activation')!r}")
    spec = dict(model_type=f.model_type, family="cnn", channels=f.int("num_channels", default=1),
                image_size=f.int("image_size", default=32), conv_channels=convs,
                conv_padding=tuple(pads) if _ok(pads) else pads,
                kernel_size=f.int("kernel_size", default=5), pool=pool,
                fc_sizes=f.ints("fc_sizes"), num_labels=f.int("num_labels", default=10))
    size, k, pads = spec["image_size"], spec["kernel_size"], spec["conv_padding"]
    if _ok(size, k, pads, convs) and len(pads) == len(convs):
        for pad in pads:
            size = size + 2 * pad - k + 1
            if size < 2:
                f.check(False, f"field 'image_size': {spec['image_size']} is too small for "
                               f"{len(convs)} convolutions of {k}x{k} and 2x2 pooling")
                break
            size //= 2
    f.finish()
    return LeNetSpec(**spec)


def _mlp(f: _Fields) -> MLPSpec:
    sizes = f.ints("layer_sizes")
    if _ok(sizes):
        f.check(len(sizes) >= 2, f"field 'layer_sizes': need at least 2 sizes, got {list(sizes)}")
    spec = dict(model_type=f.model_type, family="mlp", sizes=sizes,
                act=f.act("activation", "relu"), bias=f.bool("bias", True))
    f.finish()
    return MLPSpec(**spec)


def _choice(f: _Fields, name: str, default: str, allowed: tuple[str, ...]) -> str:
    v = f.cfg.get(name, default)
    if not isinstance(v, str) or v.lower() not in allowed:
        f.check(False, f"field {name!r}: expected one of {', '.join(allowed)}, got {_show(v)}")
        return default
    return v.lower()


def _fraction(f: _Fields, name: str) -> Any:
    """A number in (0, 16] (a YOLO depth or width multiple)."""
    _, v = f._get((name,), _REQUIRED)
    if v is _REQUIRED:
        return v
    if (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
            or not 0 < v <= 16):
        f.check(False, f"field {name!r}: expected a number in (0, 16], got {_show(v)}")
        return _REQUIRED
    return float(v)


_MB_COLUMNS = "[kernel, expanded, out, stride, se, act]"


def _mb_blocks(f: _Fields) -> Any:
    rows = f.cfg.get("blocks")
    if not isinstance(rows, (list, tuple)) or not rows or len(rows) > _MAX_LIST:
        f.check(False, f"field 'blocks': expected a list of 1 to {_MAX_LIST} rows "
                       f"{_MB_COLUMNS}, got {_show(rows)}")
        return _REQUIRED
    out = []
    for i, row in enumerate(rows):
        where = f"field 'blocks' row {i + 1}"
        if not isinstance(row, (list, tuple)) or len(row) != 6:
            f.check(False, f"{where}: expected {_MB_COLUMNS}, got {_show(row)}")
            continue
        k, exp, o, stride, se, act = row
        nums = {"kernel": k, "expanded": exp, "out": o, "se": se}
        bad = [n for n, v in nums.items()
               if isinstance(v, bool) or not isinstance(v, int)
               or not (0 if n == "se" else 1) <= v <= FIELD_MAX["hidden_size"]]
        if bad:
            f.check(False, f"{where}: {', '.join(bad)} must be "
                           f"{'integers' if len(bad) > 1 else 'an integer'} in range, "
                           f"got {_show(row)}")
            continue
        if k % 2 == 0 or k > FIELD_MAX["kernel_size"]:
            f.check(False, f"{where}: kernel must be odd (a centred depthwise filter), got {k}")
            continue
        if stride not in (1, 2) or isinstance(stride, bool):
            f.check(False, f"{where}: stride must be 1 or 2, got {_show(stride)}")
            continue
        if not isinstance(act, str) or act.lower() not in MB_ACTS:
            f.check(False, f"{where}: act must be one of {', '.join(MB_ACTS)}, got {_show(act)}")
            continue
        out.append(MBBlock(kernel=k, expanded=exp, out=o, stride=stride, se=se,
                           act=act.lower()))
    return tuple(out) if len(out) == len(rows) else _REQUIRED


def _mbconv(f: _Fields) -> MBConvSpec:
    hidden = f.cfg.get("classifier_sizes", [])
    if hidden:
        hidden = f.ints("classifier_sizes")
    spec = dict(model_type=f.model_type, family="cnn", channels=f.int("num_channels", default=3),
                stem=f.int("stem_channels"),
                stem_act=_choice(f, "stem_act", "relu", MB_ACTS),
                blocks=_mb_blocks(f), head=f.int("head_channels"),
                head_act=_choice(f, "head_act", "relu", MB_ACTS),
                classifier=tuple(hidden) if _ok(hidden) else hidden,
                classifier_act=_choice(f, "classifier_act", "relu", MB_ACTS),
                se_act=_choice(f, "se_act", "relu", MB_ACTS),
                se_gate=_choice(f, "se_gate", "sigmoid", SE_GATES),
                num_labels=f.int("num_labels", default=1000),
                image_size=f.int("image_size", default=224))
    f.finish()
    return MBConvSpec(**spec)


def _yolov8(f: _Fields) -> YoloSpec:
    spec = dict(model_type=f.model_type, family="cnn", channels=f.int("num_channels", default=3),
                depth_multiple=_fraction(f, "depth_multiple"),
                width_multiple=_fraction(f, "width_multiple"),
                max_channels=f.int("max_channels", default=1024),
                num_labels=f.int("num_labels", "nc", default=80),
                reg_max=f.int("reg_max", default=16),
                image_size=f.int("image_size", default=640))
    if _ok(spec["image_size"]):
        f.check(spec["image_size"] % 32 == 0, f"field 'image_size': a YOLOv8 input must be a "
                                              f"multiple of 32 (its coarsest stride), got "
                                              f"{spec['image_size']}")
    f.finish()
    return YoloSpec(**spec)


#: model_type -> parser. The spec type a parser returns selects the zoo builder.
MODEL_TYPES: dict[str, Callable[[_Fields], ModelSpec]] = {
    "gpt2": _gpt2, "bert": _bert, "llama": _llama, "mistral": _llama, "mixtral": _llama,
    "resnet": _resnet, "lenet": _lenet, "mlp": _mlp, "mbconv": _mbconv, "yolov8": _yolov8,
}


def parse_config(cfg: Mapping[str, Any], source: str = "<config>") -> ModelSpec:
    """Check an HF-style config and return its normalised spec.

    Raises
    ------
    WorkloadError
        Naming ``source``, each bad or missing field and the value found.
    """
    if not isinstance(cfg, Mapping):
        raise WorkloadError(f"{source}: expected a mapping of config fields, "
                            f"got {type(cfg).__name__}")
    mt = cfg.get("model_type")
    if mt is None:
        raise WorkloadError(f"{source}: field 'model_type' is missing; supported: "
                            f"{', '.join(MODEL_TYPES)}")
    key = str(mt).lower()
    if key not in MODEL_TYPES:
        raise WorkloadError(f"{source}: field 'model_type': unsupported value {_show(mt)}; "
                            f"supported: {', '.join(MODEL_TYPES)}")
    return MODEL_TYPES[key](_Fields(cfg, source, key))


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a ``.yaml``/``.yml``/``.json`` config (or a directory holding ``config.json``).

    Raises
    ------
    WorkloadError
        If the file is missing, larger than :data:`MAX_CONFIG_BYTES` (checked before it is
        read), not UTF-8, cannot be parsed (with the line), or is not a mapping.
    """
    p = Path(path)
    try:
        if p.is_dir():
            p = p / "config.json"
        is_file = p.is_file()
    except (OSError, ValueError):  # a name too long for the OS, or with a NUL byte
        is_file = False
    if not is_file:
        raise WorkloadError(f"{_show(str(p))}: no such config file")
    try:
        with open(p, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            data = f.read(MAX_CONFIG_BYTES + 1) if size <= MAX_CONFIG_BYTES else b""
        if size > MAX_CONFIG_BYTES or len(data) > MAX_CONFIG_BYTES:
            raise WorkloadError(f"{p}: file is {max(size, len(data)):,} bytes; config files are "
                                f"limited to {MAX_CONFIG_BYTES:,} bytes (1 MiB)")
        text = data.decode("utf-8")
    except OSError as e:
        raise WorkloadError(f"{p}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise WorkloadError(f"{p}: not UTF-8 text (byte {e.start}: {e.reason})") from None
    return parse_config_text(text, str(p), json_only=p.suffix.lower() == ".json")


class _JSONRefused(ValueError):
    """Valid JSON to Python's parser that a config may not contain."""


def _json_constant(name: str) -> Any:
    raise _JSONRefused(f"malformed JSON: {name} is not a number JSON allows")


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _JSONRefused(f"malformed JSON: duplicate key {_show(k)}")
        out[k] = v
    return out


def parse_config_text(text: str, source: str, json_only: bool = False) -> dict[str, Any]:
    """Parse YAML (or, with ``json_only``, strict JSON) text into a config mapping.

    Raises
    ------
    WorkloadError
        Naming ``source`` and the line of a syntax error, or if the top level is not a mapping.
        Also for text over :data:`MAX_CONFIG_BYTES`, JSON ``NaN``/``Infinity``, an integer of
        thousands of digits, duplicate keys, nesting too deep, and YAML anchors or aliases.
    """
    if len(text) > MAX_CONFIG_BYTES:
        raise WorkloadError(f"{source}: config is {len(text):,} characters; config files are "
                            f"limited to {MAX_CONFIG_BYTES:,} bytes (1 MiB)")
    if json_only:
        try:
            data = json.loads(text, parse_constant=_json_constant, object_pairs_hook=_json_object)
        except json.JSONDecodeError as e:
            raise WorkloadError(f"{source}: malformed JSON at line {e.lineno}, "
                                f"column {e.colno}: {e.msg}") from None
        except _JSONRefused as e:
            raise WorkloadError(f"{source}: {e}") from None
        except RecursionError:
            raise WorkloadError(f"{source}: malformed JSON: nested too deeply") from None
        except ValueError:  # int(): an integer literal over Python's 4,300-digit limit
            raise WorkloadError(f"{source}: malformed JSON: an integer of thousands of "
                                f"digits") from None
    else:
        try:
            data = strict_yaml_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise WorkloadError(f"{source}: malformed YAML{where}: {problem}") from None
    if not isinstance(data, dict):
        raise WorkloadError(f"{source}: expected a mapping of config fields at the top level, "
                            f"got {type(data).__name__}")
    return data
