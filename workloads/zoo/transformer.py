"""Transformer builders: GPT-2/GPT-3, BERT, Llama/Mistral and Mixtral from a TransformerSpec.

One layer is built once as a block graph and added with ``add_repeat``, so an 80-layer model
stores one block. Tokens are folded into the M dimension of linear layers
(``m = batch * seq``, or ``sum(seq_lens)`` for packed variable-length samples: no padding
token is computed); attention is the fused :class:`~workloads.ops.Attention` op, per sample on
its own length when ``seq_lens`` is given. The graph
is the unsharded model; each op is tagged with its tensor-parallel role (``tp:qkv``,
``tp:row_attn``, ...) and ``meta["tp_dims"]`` records the sizes a split divides, so
:func:`workloads.transforms.tensor_parallel.tensor_parallel` can shard it.

Projections are fused by default (``BuildOptions.fuse_projections``): Q, K and V as one
``qkv_proj`` GEMM (column-parallel under TP: each device holds its query heads and their
KV heads, ``(heads + 2 kv_heads) / tp * head_dim`` columns) and a gated MLP's gate and up as
one ``gate_up_proj`` GEMM (``2 d_ff / tp`` columns), as vLLM and Megatron-LM run them; unfused,
one GEMM per projection.

``weight_dtype`` (weights-only quantisation) applies to the linear layers inside the blocks;
embeddings, the LM head, the pooler and norms stay in ``dtype``, as in common int4/int8 recipes.
"""

from __future__ import annotations

import math

from workloads.graph import WorkloadGraph
from workloads.importers.hf_config import TransformerSpec
from workloads.memory import idle_params
from workloads.ops import Attention, Elementwise, Embedding, MatMul, Norm, Softmax
from workloads.transforms.tensor_parallel import TP_DIMS_KEY, allreduce_tag
from workloads.zoo.options import BuildOptions

__all__ = ["build_transformer", "transformer_params", "moe_active_experts"]


def moe_active_experts(tokens: int, n_experts: int, top_k: int) -> int:
    """Expected number of distinct experts hit by ``tokens`` tokens routing to ``top_k`` each.

    ``E * (1 - (1 - k/E)^T)`` for uniform routing, rounded up, between ``k`` and ``E``.

    >>> moe_active_experts(1, 8, 2), moe_active_experts(2, 8, 2), moe_active_experts(512, 8, 2)
    (2, 4, 8)
    """
    expected = n_experts * (1.0 - (1.0 - top_k / n_experts) ** tokens)
    return max(top_k, min(n_experts, math.ceil(expected - 1e-9)))


def transformer_params(spec: TransformerSpec, experts: int | None = None) -> float:
    """Analytic parameter count (HF checkpoint convention).

    ``experts`` counts only that many experts per MoE layer (``spec.top_k`` gives the params
    active per token); default all experts.
    """
    d, hd = spec.d_model, spec.head_dim
    q, kv = spec.heads * hd, spec.kv_heads * hd
    attn = d * (q + 2 * kv) + q * d
    attn += (q + 2 * kv if spec.qkv_bias else 0) + (d if spec.out_bias else 0)
    n_mats = 3 if spec.gated_mlp else 2
    mlp = n_mats * d * spec.d_ff
    if spec.mlp_bias:
        mlp += (n_mats - 1) * spec.d_ff + d
    if spec.is_moe:
        mlp = mlp * (spec.n_experts if experts is None else experts) + d * spec.n_experts
    norm = d if spec.norm == "rmsnorm" else 2 * d
    layer = attn + mlp + 2 * norm
    emb = spec.vocab * d
    if spec.learned_positions:
        emb += spec.max_positions * d
    emb += spec.type_vocab * d
    if spec.post_norm:
        emb += norm  # BERT's embedding LayerNorm
    head = 0 if spec.tied_embeddings or spec.family != "decoder" else spec.vocab * d
    extra = (norm if spec.final_norm else 0) + (d * d + d if spec.pooler else 0)
    return float(spec.layers * layer + emb + head + extra)


class _Block:
    """Adds ops to a graph, each fed by the previous op unless inputs are given."""

    def __init__(self, graph: WorkloadGraph):
        self.g = graph
        self.last: list[str] = []

    def add(self, name: str, op, inputs: list[str] | None = None, tags: tuple[str, ...] = ()
            ) -> str:
        self.g.add_op(name, op, self.last if inputs is None else inputs, tags=tags)
        self.last = [name]
        return name


def _linear(o: BuildOptions, m: int, n: int, k: int, bias: bool, batch: int = 1) -> MatMul:
    return MatMul(m=m, n=n, k=k, batch=batch, weight=True, bias=bias, dtype=o.dtype,
                  weight_dtype=o.weight_dtype)


def _attention(b: _Block, spec: TransformerSpec, o: BuildOptions, inp: list[str]) -> None:
    T, d, hd = o.tokens, spec.d_model, spec.head_dim
    q, kv = spec.heads * hd, spec.kv_heads * hd
    if spec.fused_qkv or o.fuse_projections:
        qkv = [b.add("qkv_proj", _linear(o, T, q + 2 * kv, d, spec.qkv_bias), inp,
                     ("tp:qkv",))]
    else:
        qkv = [b.add(f"{x}_proj", _linear(o, T, n, d, spec.qkv_bias), inp, (role,))
               for x, n, role in (("q", q, "tp:q"), ("k", kv, "tp:kv"), ("v", kv, "tp:kv"))]
    if not spec.learned_positions:
        # RoPE on q and k in place: x*cos + rotate(x)*sin, one pass; the cos/sin operand is
        # one cache row (head_dim) per token (vLLM csrc/pos_encoding_kernels.cu)
        b.add("rope", Elementwise(fn="mul", numel=T * (q + kv), row=q + kv, table=hd,
                                  dtype=o.dtype),
              qkv[:2], ("tp:rope",))
        qkv = [b.last[0], *qkv[2:]]
    context = o.context
    if o.phase == "decode" and spec.sliding_window:
        # Mistral-style rolling cache holds the last `sliding_window` tokens. (Prefill longer
        # than the window is modelled as full causal attention: an overestimate.)
        context = min(context, spec.sliding_window)
    b.add("attention", Attention(
        batch=o.batch, heads=spec.heads, kv_heads=spec.kv_heads, head_dim=hd, seq=o.seq,
        context=context, phase="decode" if o.phase == "decode" else "prefill",
        causal=spec.family == "decoder", dtype=o.dtype, kv_dtype=o.kv_dtype,
        seq_lens=o.seq_lens), qkv,
        ("tp:attention",))
    b.add("o_proj", _linear(o, T, d, q, spec.out_bias), None,
          ("tp:row_attn", allreduce_tag("attn_allreduce", T * d)))


def _mlp(b: _Block, spec: TransformerSpec, o: BuildOptions, inp: list[str]) -> None:
    T, d, f = o.tokens, spec.d_model, spec.d_ff
    reduce = allreduce_tag("mlp_allreduce", T * d)
    if spec.is_moe:
        b.add("router", MatMul(m=T, n=spec.n_experts, k=d, weight=True, dtype=o.dtype), inp)
        topk = b.add("router_topk", Softmax(rows=T, cols=spec.n_experts, dtype=o.dtype))
        active = moe_active_experts(T, spec.n_experts, spec.top_k)
        m = math.ceil(T * spec.top_k / active)  # tokens per active expert (balanced routing)
        # batch=active: each active expert has its own weights (MatMul with weight=True)
        ex = "moe:expert"
        if o.fuse_projections:  # vLLM's fused MoE runs w1 and w3 as one w13 GEMM
            gate_up = [b.add("experts.gate_up_proj",
                             _linear(o, m, 2 * f, d, spec.mlp_bias, active), [topk],
                             ("tp:gate_up", ex))]
        else:
            gate_up = [b.add(f"experts.{x}_proj", _linear(o, m, f, d, spec.mlp_bias, active),
                             [topk], ("tp:col_ff", ex)) for x in ("gate", "up")]
        b.add("experts.act", Elementwise(fn="swiglu", numel=active * m * f, row=f, dtype=o.dtype),
              gate_up, ("tp:act_ff", ex))
        b.add("experts.down_proj", _linear(o, m, d, f, spec.mlp_bias, active), None,
              ("tp:row_ff", ex))
        # weight each token's top-k expert outputs by the router probabilities and sum them
        b.add("experts.combine", Elementwise(fn="mul", numel=T * spec.top_k * d, dtype=o.dtype),
              None, (reduce,))
    elif spec.gated_mlp:
        if o.fuse_projections:
            gate_up = [b.add("gate_up_proj", _linear(o, T, 2 * f, d, spec.mlp_bias), inp,
                             ("tp:gate_up",))]
        else:
            gate_up = [b.add(f"{x}_proj", _linear(o, T, f, d, spec.mlp_bias), inp,
                             ("tp:col_ff",)) for x in ("gate", "up")]
        b.add("act", Elementwise(fn="swiglu", numel=T * f, row=f, dtype=o.dtype), gate_up,
              ("tp:act_ff",))
        b.add("down_proj", _linear(o, T, d, f, spec.mlp_bias), None, ("tp:row_ff", reduce))
    else:
        b.add("fc_in", _linear(o, T, f, d, spec.mlp_bias), inp, ("tp:col_ff",))
        b.add("act", Elementwise(fn=spec.act, numel=T * f, dtype=o.dtype), None,
              ("tp:act_ff",))
        b.add("fc_out", _linear(o, T, d, f, spec.mlp_bias), None, ("tp:row_ff", reduce))


def _layer(spec: TransformerSpec, o: BuildOptions) -> WorkloadGraph:
    """One transformer layer; its sources take the previous layer's output (the repeat entry)."""
    T, d = o.tokens, spec.d_model
    g = WorkloadGraph(f"{o.model}.layer", o.phase)
    b = _Block(g)

    def norm(name: str) -> str:
        return b.add(name, Norm(norm=spec.norm, rows=T, cols=d, dtype=o.dtype))

    def residual(name: str, skip: list[str]) -> str:
        return b.add(name, Elementwise(fn="add", numel=T * d, dtype=o.dtype), b.last + skip)

    if spec.post_norm:  # BERT: x = norm(x + attn(x)); x = norm(x + mlp(x))
        _attention(b, spec, o, [])
        residual("attn_residual", [])
        n1 = norm("attn_norm")
        _mlp(b, spec, o, [n1])
        residual("mlp_residual", [n1])
        norm("mlp_norm")
    else:  # pre-norm: x = x + attn(norm(x)); x = x + mlp(norm(x))
        n1 = norm("attn_norm")
        _attention(b, spec, o, [n1])
        r1 = residual("attn_residual", [])
        n2 = norm("mlp_norm")
        _mlp(b, spec, o, [n2])
        residual("mlp_residual", [r1])
    return g


def build_transformer(spec: TransformerSpec, o: BuildOptions) -> WorkloadGraph:
    """The unsharded forward / prefill / decode graph; meta gets the tied-weight facts,
    ``tp_dims``, ``params_per_device`` and ``weight_bytes`` (all experts resident for MoE)."""
    T, d, dt = o.tokens, spec.d_model, o.dtype
    g = WorkloadGraph(o.model, o.phase)
    b = _Block(g)
    # vocab-parallel embedding under TP: each device looks up its rows, then all-reduce
    tok = b.add("embed_tokens", Embedding(tokens=T, vocab=spec.vocab, dim=d, dtype=dt), [],
                ("tp:vocab", allreduce_tag("embed_allreduce", T * d)))
    extra = []
    if spec.learned_positions:
        extra.append(("embed_positions", spec.max_positions))
    if spec.type_vocab:
        extra.append(("embed_token_types", spec.type_vocab))
    x = tok
    for name, rows in extra:
        e = b.add(name, Embedding(tokens=T, vocab=rows, dim=d, dtype=dt), [])
        x = b.add(f"{name}_add", Elementwise(fn="add", numel=T * d, dtype=dt), [x, e])
    if spec.post_norm:
        x = b.add("embed_norm", Norm(norm=spec.norm, rows=T, cols=d, dtype=dt), [x])

    block = _layer(spec, o)
    x = g.add_repeat("layers", block, spec.layers, [x], tags=("layers",))
    if spec.final_norm:
        x = b.add("final_norm", Norm(norm=spec.norm, rows=T, cols=d, dtype=dt), [x])
    if spec.family == "decoder":
        # Prefill and decode only need the logits of each sequence's last position to sample
        # the next token, so the LM head runs on m=batch rows; forward/train on every token.
        rows = o.batch if o.phase in ("prefill", "decode") else T
        tied = ("tied:embed_tokens",) if spec.tied_embeddings else ()
        b.add("lm_head", MatMul(m=rows, n=spec.vocab, k=d, weight=True, dtype=dt), [x],
              ("tp:vocab_head", *tied))
        if spec.tied_embeddings:  # lm_head reuses embed_tokens' matrix: count it once
            g.meta["tied_params"] = float(spec.vocab * d)
            g.meta["tied_weight_bytes"] = spec.vocab * d * dt.bytes
    if spec.pooler:
        # BERT pooler: dense on the [CLS] token of each sequence (its tanh is not modelled).
        b.add("pooler", MatMul(m=o.batch, n=d, k=d, weight=True, bias=True, dtype=dt), [x])

    g.meta[TP_DIMS_KEY] = {"heads": spec.heads, "kv_heads": spec.kv_heads,
                           "head_dim": spec.head_dim, "d_ff": spec.d_ff, "vocab": spec.vocab,
                           "d_model": d, "embed_bytes": dt.bytes}
    if spec.is_moe:  # experts not hit this step are still resident in memory
        active = moe_active_experts(T, spec.n_experts, spec.top_k)
        g.meta["moe_dims"] = {"experts": spec.n_experts, "top_k": spec.top_k, "d_model": d,
                              "d_ff": spec.d_ff}
        g.meta["active_experts"] = active
    g.meta["params_per_device"] = g.params() + idle_params(g)
    g.meta["weight_bytes"] = g.weight_bytes() + idle_params(g, "weight_bytes")
    return g
