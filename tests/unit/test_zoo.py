"""Model zoo: parameter counts, FLOPs, phases, tensor parallelism, training and config errors."""

from __future__ import annotations

import json
import math

import pytest

from simulator.errors import WorkloadError
from workloads.ops import Attention, Collective, Elementwise, MatMul
from workloads.transforms.walk import ops_with_counts
from workloads.zoo import build, count_params, list_models, load_config

MODELS = {m.name: m for m in list_models()}
SHIPPED = ["mlp", "resnet18", "resnet50", "bert-base", "bert-large", "gpt2", "gpt2-medium",
           "gpt2-large", "gpt2-xl", "gpt3-175b", "llama2-7b", "llama2-13b", "llama2-70b",
           "llama3-8b", "mixtral-8x7b"]
META_KEYS = {"model", "family", "phase", "batch", "seq", "context", "tokens", "samples",
             "params", "weight_bytes", "kv_cache_bytes", "activation_bytes", "tp"}


def _ops(graph, cls):
    return [(op, n) for op, n in ops_with_counts(graph) if isinstance(op, cls)]


def _layer_block(graph):
    return graph.g.nodes["layers"]["item"].block


# -- catalogue and parameter counts -------------------------------------------------------------

def test_list_models_ships_every_model_with_provenance():
    assert set(SHIPPED) <= set(MODELS)
    fam = {"mlp": "mlp", "resnet50": "cnn", "bert-base": "encoder", "llama2-7b": "decoder"}
    for name, family in fam.items():
        assert MODELS[name].family == family
    for m in MODELS.values():
        assert m.description and m.source and m.published_params


@pytest.mark.parametrize("name", SHIPPED)
def test_params_match_published_figures(name):
    # Published figures are rounded (e.g. "110M" for BERT-Base's 109.48M, "175B" for GPT-3's
    # 174.6B), so 1% is the tolerance; the graph must agree with the analytic count exactly,
    # since the two are computed by independent code. seq=512 routes enough tokens that all 8
    # Mixtral experts are active (8 * (1 - 0.75^512) -> 8), so the graph holds every expert.
    info = MODELS[name]
    analytic = count_params(load_config(name))
    assert analytic == info.params
    assert analytic == pytest.approx(info.published_params, rel=0.01)
    g = build(name, seq=512)
    assert g.params() == pytest.approx(analytic, rel=1e-9)
    assert g.meta["params"] == analytic


def test_mixtral_active_params_and_resident_experts():
    g = build("mixtral-8x7b", phase="decode", batch=1, context=512)
    assert g.meta["active_params"] == pytest.approx(12.9e9, rel=0.01)  # paper: 12.9B active
    # one token, top-2 routing: exactly 2 experts run, each on one token
    experts = [op for op in _layer_block(g).unique_ops() if isinstance(op, MatMul) and op.batch > 1]
    assert {op.batch for op in experts} == {2} and {op.m for op in experts} == {1}
    # ... but all 8 experts stay resident: weight_bytes covers the full 46.7B params in bf16
    assert g.meta["weight_bytes"] == pytest.approx(2 * g.meta["params"], rel=1e-9)
    assert g.params() < 0.3 * g.meta["params"]


# -- FLOPs ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["gpt2", "llama2-7b", "llama3-8b", "llama2-70b"])
def test_decoder_prefill_flops_are_2_params_per_token_plus_attention(name):
    cfg = load_config(name)
    batch, seq = 2, 512
    g = build(name, phase="prefill", batch=batch, seq=seq)
    d = cfg.get("hidden_size") or cfg["n_embd"]
    layers = cfg.get("num_hidden_layers") or cfg["n_layer"]
    vocab = cfg["vocab_size"]
    embed = vocab * d + (cfg.get("n_positions", 0) * d)
    head = 0 if cfg["model_type"] == "gpt2" else vocab * d  # gpt2 ties the LM head
    body = count_params(cfg) - embed - head  # norms (~0.01%) are counted but are not GEMMs
    attention = 4 * batch * d * (seq * (seq + 1) / 2) * layers  # QK^T and PV, causal
    lm_head = 2 * batch * vocab * d  # prefill: logits of the last position only
    expected = 2 * body * batch * seq + attention + lm_head
    assert g.flops().matrix == pytest.approx(expected, rel=0.005)
    # and the familiar rule of thumb: within 10% of 2 * params * tokens at this length
    assert g.flops().matrix == pytest.approx(2 * body * batch * seq, rel=0.10)


@pytest.mark.parametrize("name", ["resnet50", "resnet18"])
def test_resnet_macs_at_224(name):
    # torchvision: ResNet-50 4.09 GMACs, ResNet-18 1.81 GMACs at 224x224 ("GFLOPS" there = MACs)
    g = build(name, image_size=224)
    assert g.flops().matrix / 2 == pytest.approx(load_config(name)["published_macs"], rel=0.05)
    assert g.meta["tokens"] == g.meta["samples"] == 1


def test_lm_head_runs_on_last_token_in_prefill_and_on_all_tokens_in_forward():
    def head(g):
        return g.g.nodes["lm_head"]["item"]
    assert head(build("llama2-7b", phase="prefill", batch=3, seq=100)).m == 3
    assert head(build("llama2-7b", phase="forward", batch=3, seq=100)).m == 300


# -- phases -------------------------------------------------------------------------------------

def test_decode_attends_to_context_plus_one():
    g = build("llama2-7b", phase="decode", batch=4, context=1000)
    (att, n), = _ops(g, Attention)
    assert (att.phase, att.seq, att.kv_len, n) == ("decode", 1, 1001, 32)
    assert g.meta["tokens"] == 4 and g.meta["context"] == 1000
    # K and V, 4 sequences x 1001 positions x 32 heads x 128 x 2 bytes, 32 layers
    assert g.meta["kv_cache_bytes"] == 2 * 4 * 1001 * 32 * 128 * 2 * 32
    assert all(op.m == 4 for op in g.unique_ops() if isinstance(op, MatMul))


def test_gqa_kv_heads():
    g = build("llama2-70b", phase="decode", context=4096)
    (att, _), = _ops(g, Attention)
    assert (att.heads, att.kv_heads, att.head_dim) == (64, 8, 128)
    # the KV cache is 8x smaller than multi-head attention's would be
    assert g.meta["kv_cache_bytes"] == 2 * 4097 * 8 * 128 * 2 * 80
    assert _ops(build("llama3-8b"), Attention)[0][0].kv_heads == 8


def test_bert_is_non_causal_forward():
    g = build("bert-base")
    (att, _), = _ops(g, Attention)
    assert not att.causal and att.seq == 128 and g.meta["phase"] == "forward"
    assert g.meta["tokens"] == 128


@pytest.mark.parametrize("name,phase", [("gpt2", "prefill"), ("gpt2", "decode"),
                                        ("gpt2", "train"), ("bert-base", "forward"),
                                        ("resnet18", "train"), ("mlp", "forward")])
def test_meta_has_the_documented_keys(name, phase):
    g = build(name, phase=phase, batch=2)
    assert META_KEYS <= set(g.meta)
    assert g.meta["phase"] == g.phase == phase and g.meta["samples"] == 2
    assert g.meta["activation_bytes"] > 0 and g.meta["weight_bytes"] > 0


def test_tied_embeddings_counted_once():
    g = build("gpt2")
    assert g.meta["tied_params"] == 50257 * 768
    # bf16: 2 bytes per parameter, biases included, tied embedding counted once
    assert g.weight_bytes() == pytest.approx(2 * g.params(), rel=1e-9)


# -- repeats --------------------------------------------------------------------------------------

def test_80_layers_are_one_repeated_block():
    g = build("llama2-70b")
    assert len(g.g) <= 6  # embed, layers (a repeat), final norm, lm head
    assert g.count_ops() >= 80 * 11  # QKV and gate/up fused (one GEMM each)
    assert len(g.unique_ops()) <= 16
    assert sum(1 for _ in g.flat()) == g.count_ops()


# -- tensor parallelism ---------------------------------------------------------------------------

def test_tp8_shards_llama2_70b():
    g = build("llama2-70b", tp=8, seq=256)
    # everything but the norms (0.002%) is split 8 ways
    assert g.params() == pytest.approx(g.meta["params"] / 8, rel=0.01)
    assert g.meta["weight_bytes"] == pytest.approx(2 * g.meta["params"] / 8, rel=0.01)
    block = _layer_block(g)
    ars = [op for op, _ in ops_with_counts(block) if isinstance(op, Collective)]
    assert len(ars) == 2  # after the attention out-projection and after the MLP down-projection
    assert all(op.collective == "allreduce" and op.devices == 8 and op.bytes == 256 * 8192 * 2
               for op in ars)
    att = next(op for op in block.unique_ops() if isinstance(op, Attention))
    assert (att.heads, att.kv_heads) == (8, 1)
    # plus one for the vocabulary-parallel embedding
    assert sum(n for _, n in _ops(g, Collective)) == 2 * 80 + 1


def test_tp_that_does_not_divide_heads_is_an_error():
    with pytest.raises(WorkloadError, match=r"tp=3 .*num_attention_heads=32"):
        build("llama2-7b", tp=3)
    # fewer KV heads than devices: KV heads are replicated, one per device
    att = _ops(build("llama2-70b", tp=16), Attention)[0][0]
    assert (att.heads, att.kv_heads) == (4, 1)


# -- training -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["gpt2", "llama2-7b", "bert-base", "resnet50", "mixtral-8x7b"])
def test_train_step_is_about_3x_forward(name):
    # backward = dgrad + wgrad per GEMM/conv (2x) and 2.5x for attention, whose share at
    # seq 256 is a few % of the FLOPs, so train/forward lands within 5% of 3.
    fwd = build(name, phase="forward", batch=2, seq=256)
    train = build(name, phase="train", batch=2, seq=256)
    assert train.flops().matrix == pytest.approx(3 * fwd.flops().matrix, rel=0.05)
    assert train.params() == pytest.approx(fwd.params(), rel=1e-9)  # each weight counted once
    assert train.weight_bytes() == pytest.approx(fwd.weight_bytes(), rel=1e-9)
    adam = [op for op, _ in ops_with_counts(train)
            if isinstance(op, Elementwise) and op.fn == "adam"]
    assert len(adam) == 1 and adam[0].numel == round(fwd.meta["params_per_device"])
    assert train.meta["activation_bytes"] > fwd.meta["activation_bytes"]
    assert sum(1 for _ in train.flat()) == train.count_ops()


# -- errors and user configs ----------------------------------------------------------------------

def test_unknown_model():
    with pytest.raises(WorkloadError, match="unknown model 'gpt5'.*llama2-7b"):
        build("gpt5")


def test_bad_phase_names_phase_and_choices():
    with pytest.raises(WorkloadError, match="resnet50: phase 'decode'.*forward, train"):
        build("resnet50", phase="decode")
    with pytest.raises(WorkloadError, match="phase 'sample'"):
        build("gpt2", phase="sample")


def test_config_missing_hidden_size_names_file_and_field(tmp_path):
    cfg = dict(load_config("llama2-7b"))
    del cfg["hidden_size"]
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    with pytest.raises(WorkloadError, match=r"config\.json: field 'hidden_size' is missing"):
        load_config(str(path))
    with pytest.raises(WorkloadError, match="hidden_size"):
        count_params(cfg)


def test_bad_field_value_is_reported_with_the_value(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("model_type: gpt2\nn_embd: big\nn_layer: 2\nn_head: 2\nvocab_size: 10\n")
    with pytest.raises(WorkloadError, match=r"m\.yaml: field 'n_embd': expected a positive "
                                            r"integer, got 'big'"):
        build(str(path))


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("model_type: llama\nhidden_size: [4096, \n")
    with pytest.raises(WorkloadError, match=r"broken\.yaml: malformed YAML at line \d+"):
        load_config(str(path))


def test_unsupported_model_type(tmp_path):
    path = tmp_path / "t5.json"
    path.write_text(json.dumps({"model_type": "t5", "d_model": 512}))
    with pytest.raises(WorkloadError, match="model_type': unsupported value 't5'"):
        build(str(path))


def test_user_hf_config_json_builds(tmp_path):
    # TinyLlama-1.1B's HF config.json (fields a real checkpoint carries, extras ignored)
    cfg = {"_name_or_path": "TinyLlama/TinyLlama-1.1B", "architectures": ["LlamaForCausalLM"],
           "model_type": "llama", "hidden_size": 2048, "intermediate_size": 5632,
           "num_hidden_layers": 22, "num_attention_heads": 32, "num_key_value_heads": 4,
           "vocab_size": 32000, "max_position_embeddings": 2048, "rms_norm_eps": 1e-5,
           "hidden_act": "silu", "tie_word_embeddings": False, "torch_dtype": "bfloat16"}
    model_dir = tmp_path / "tinyllama"
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps(cfg))
    g = build(str(model_dir / "config.json"), phase="decode", batch=2, context=100)
    assert g.meta["model"] == "TinyLlama-1.1B"
    assert g.meta["params"] == pytest.approx(1.1e9, rel=0.01)  # model card: 1.1B
    assert math.isclose(g.params(), count_params(cfg))
    assert build(str(model_dir)).meta["phase"] == "prefill"  # a directory holding config.json


def test_bad_build_arguments():
    with pytest.raises(WorkloadError, match="batch must be a positive integer, got 0"):
        build("gpt2", batch=0)
    with pytest.raises(WorkloadError, match="unknown dtype 'fp7'"):
        build("gpt2", dtype="fp7")
    with pytest.raises(WorkloadError, match="transformer models only"):
        build("resnet18", tp=2)
