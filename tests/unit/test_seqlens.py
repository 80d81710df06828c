"""Variable-length (packed) sequences: the length distributions (workloads/seqlens.py), the
packed graph (token-wise layers on sum(l_i) tokens, attention per sample on l_i^2) and what the
mappers make of it."""

from __future__ import annotations

import math

import pytest

from simulator import predict_op, simulate
from workloads.errors import WorkloadError
from workloads.ops import Attention, MatMul
from workloads.seqlens import SeqLenDist, parse_lengths_text, resolve_seq_lens
from workloads.transforms.walk import ops_with_counts
from workloads.zoo import build, build_model

# -- the shipped SQuAD v1.1 distribution against its published source -------------------------
# Graphcore's squad_1_1_histogram (Krell et al. 2021, arXiv:2107.02027; graphcore/tutorials
# blogs_code/packedBERT/histograms.py), max_seq_len 384, doc stride 128: 88,641 sequences, the
# feature count BERT's run_squad makes of the 87,599 SQuAD v1.1 training questions at these
# settings. Mean, quantiles and padding below are derived from that histogram (arithmetic, so
# tight tolerances).
SQUAD = resolve_seq_lens("squad-v1.1")


def test_squad_histogram_matches_the_published_one():
    assert SQUAD.total == 88_641
    assert SQUAD.max_len == 384 and SQUAD.lengths[0] == 36  # shortest: 36 tokens (3 of them)
    assert SQUAD.counts[0] == 3 and SQUAD.counts[-1] == 1_054  # windows of long contexts


def test_squad_mean_and_percentiles():
    assert SQUAD.mean == pytest.approx(172.036, abs=1e-3)
    assert (SQUAD.percentile(0.5), SQUAD.percentile(0.9), SQUAD.percentile(0.99)) == (
        159, 260, 384)
    # Krell et al.'s "theoretical speed-up" of removing the padding: max / mean = 2.23
    assert 384 / SQUAD.mean == pytest.approx(2.232, abs=1e-3)
    assert SQUAD.padding_fraction() == pytest.approx(0.552, abs=1e-3)


def test_a_stratified_batch_matches_the_distribution():
    lens = SQUAD.sample(256)
    assert len(lens) == 256 and list(lens) == sorted(lens)
    # 256 evenly spaced quantiles: mean and mean square within 0.5% of the histogram's
    assert sum(lens) / 256 == pytest.approx(SQUAD.mean, rel=5e-3)
    assert sum(n * n for n in lens) / 256 == pytest.approx(SQUAD.mean_square, rel=5e-3)
    assert SQUAD.sample(1) == (SQUAD.percentile(0.5),)  # one sample: the median
    assert SQUAD.sample(256) == lens  # deterministic


def test_an_empirical_distribution_returns_its_samples():
    d = resolve_seq_lens([300, 20, 100, 20])
    assert d.sample(4) == (20, 20, 100, 300)
    assert d.sample(2) == (20, 100)  # quantiles 1/4 and 3/4


# -- files and inline lengths ------------------------------------------------------------------
def test_file_of_lengths_and_histogram(tmp_path):
    f = tmp_path / "lens.txt"
    f.write_text("# my dataset\n100\n200 3   # a histogram row\n100,2\n\n")
    d = resolve_seq_lens(str(f))
    assert (d.lengths, d.counts, d.name) == ((100, 200), (3, 3), str(f))
    assert resolve_seq_lens(" 128, 256 ,384 ").lengths == (128, 256, 384)


@pytest.mark.parametrize("text,expected", [
    ("100\nabc\n", "lens.txt: line 2: length must be a whole number, got 'abc'"),
    ("0\n", "lens.txt: line 1: length must be at least 1 token, got 0"),
    ("100 0\n", "lens.txt: line 1: count must be at least 1, got 0"),
    ("100 2 3\n", "lens.txt: line 1: expected a length or 'length count', got '100 2 3'"),
    ("# nothing\n\n", "lens.txt: no sequence lengths"),
    ("1.5\n", "lens.txt: line 1: length must be a whole number, got '1.5'"),
])
def test_malformed_file_names_file_line_and_value(text, expected):
    with pytest.raises(WorkloadError) as e:
        parse_lengths_text(text, "lens.txt")
    assert str(e.value).startswith(expected)


@pytest.mark.parametrize("value,expected", [
    ("0,5", "seq_lens[0] must be at least 1 token"),
    ([12, True], "seq_lens[1] must be a whole number of tokens, got True"),
    ([], "seq_lens: no lengths given"),
    ("nope.txt", "seq_lens: 'nope.txt' is neither a dataset (squad-v1.1)"),
    (3.5, "seq_lens must be a dataset name, a file, or a list of lengths, got 3.5"),
])
def test_bad_values(value, expected):
    with pytest.raises(WorkloadError) as e:
        resolve_seq_lens(value)
    assert str(e.value).startswith(expected)


def test_lengths_above_the_models_positions_are_refused():
    with pytest.raises(WorkloadError, match=r"bert-base: seq_lens inline: length 600 is above "
                                            r"the model's 512 positions"):
        build("bert-base", seq_lens=[100, 600])


def test_seq_lens_only_where_it_applies():
    with pytest.raises(WorkloadError, match="not both"):
        build("bert-base", seq=128, seq_lens="squad-v1.1")
    with pytest.raises(WorkloadError, match="not decode"):
        build("gpt2", phase="decode", seq_lens=[10, 20], batch=2)
    with pytest.raises(WorkloadError, match="transformer models, not cnn"):
        build("resnet18", seq_lens=[10])


# -- the packed graph --------------------------------------------------------------------------
def _ops(g, cls):
    return [(op, n) for op, n in ops_with_counts(g) if isinstance(op, cls)]


def test_token_wise_layers_run_on_the_sum_and_attention_per_sample():
    lens = (40, 100, 384)
    g = build("bert-base", seq_lens=list(lens), batch=3)
    assert g.meta["tokens"] == sum(lens) and g.meta["seq"] == 384
    # every layer GEMM has M = sum(l_i) tokens; the pooler runs once per sample
    ms = {op.m for op, _ in _ops(g, MatMul)}
    assert ms == {sum(lens), 3}
    (att, n), = _ops(g, Attention)
    assert att.seq_lens == lens and n == 12 and not att.causal
    padded = Attention(batch=3, heads=12, head_dim=64, seq=384, causal=False)
    per_sample = sum(Attention(batch=1, heads=12, head_dim=64, seq=s, causal=False).flops().matrix
                     for s in lens)
    assert att.flops().matrix == pytest.approx(per_sample, rel=1e-12)
    assert att.flops().matrix < padded.flops().matrix
    assert att.min_bytes == pytest.approx(sum(
        Attention(batch=1, heads=12, head_dim=64, seq=s, causal=False).min_bytes for s in lens))


def test_causal_prefill_per_sample():
    g = build("gpt2", phase="prefill", seq_lens=[10, 30], batch=2)
    (att, _), = _ops(g, Attention)
    assert att.causal and att.score_pairs == pytest.approx((10 * 11 / 2 + 30 * 31 / 2) / 2)


def test_all_lengths_at_the_max_is_the_padded_graph_exactly():
    packed = build("bert-base", seq_lens=[256, 256], batch=2)
    padded = build("bert-base", seq=256, batch=2)
    assert packed.flops() == padded.flops() and packed.meta["tokens"] == padded.meta["tokens"]
    assert "seq_lens" not in packed.meta
    a = simulate("bert-base", "h100-sxm", batch=2, seq_lens="256,256")
    b = simulate("bert-base", "h100-sxm", batch=2, seq=256)
    assert a.latency_s == b.latency_s and a.energy_j == b.energy_j


@pytest.mark.parametrize("arch", ["h100-sxm", "jetson-agx-orin-64gb", "tpu-v5e",
                                  "cpu-host"])
def test_packed_is_faster_than_padded_for_short_samples(arch):
    # the lengths 64..384 of a short-heavy batch: fewer tokens and fewer attention pairs
    kw = dict(batch=8, dtype="int8" if "orin" in arch else None)
    packed = simulate("bert-base", arch, seq_lens="64,64,64,96,96,128,200,384", **kw)
    padded = simulate("bert-base", arch, seq=384, **kw)
    assert packed.latency_s < padded.latency_s
    assert packed.energy_j < padded.energy_j
    assert packed.samples == padded.samples == 8


@pytest.mark.parametrize("arch", ["h100-sxm", "tpu-v5e", "cpu-host"])
def test_equal_lengths_given_per_sample_cost_the_same_op(arch):
    # an Attention with seq_lens all at seq is the padded op: same FLOPs, bytes and time
    kw = dict(batch=4, heads=16, head_dim=64, seq=256, causal=False)
    a = predict_op(Attention(**kw, seq_lens=(256,) * 4), arch)
    b = predict_op(Attention(**kw), arch)
    assert a.latency_s == pytest.approx(b.latency_s, rel=1e-12)
    assert a.flops == b.flops


def test_gpu_tiles_each_sample_on_its_own():
    # flash-attention tiles 128 query rows per (sample, head): 31 two-token samples and one of
    # 256 tokens pay 31 x 1 + 2 blocks per head, padded to 256 every sample pays 2
    lens = (2,) * 31 + (256,)
    op = Attention(batch=32, heads=16, head_dim=64, seq=256, seq_lens=lens, causal=False)
    c = predict_op(op, "h100-sxm")
    assert c.details["tiles"] == 16 * 33
    full = predict_op(Attention(batch=32, heads=16, head_dim=64, seq=256, causal=False),
                      "h100-sxm")
    assert full.details["tiles"] == 16 * 64  # 1,024 tiles: 8 waves over 132 SMs
    assert c.latency_s < full.latency_s and c.dram_bytes < full.dram_bytes


def test_attention_seq_lens_validation():
    kw = dict(batch=2, heads=4, head_dim=16, seq=100)
    for bad, msg in [((10,), "seq_lens has 1 lengths but batch is 2"),
                     ((10, 50), r"the longest of seq_lens \(50\) must equal seq \(100\)"),
                     ((0, 100), r"seq_lens\[0\] must be a whole number of tokens in \[1, "),
                     ((100, 101), r"seq_lens\[1\] must be a whole number"),
                     ("100,100", "seq_lens must be a list of lengths")]:
        with pytest.raises(ValueError, match=msg):
            Attention(**kw, seq_lens=bad)
    with pytest.raises(ValueError, match="applies to prefill, not decode"):
        Attention(**kw, seq_lens=(1, 100), phase="decode", context=10)
    op = Attention(**kw, seq_lens=[100, 7])  # a list is kept as a tuple (hashable)
    assert op.seq_lens == (100, 7) and hash(op) == hash(Attention(**kw, seq_lens=(100, 7)))


def test_training_and_data_parallel_take_packed_batches():
    t = simulate("bert-base", "h100-sxm", phase="train", batch=4, seq_lens="squad-v1.1")
    tp = simulate("bert-base", "h100-sxm", phase="train", batch=4, seq=384)
    assert 0 < t.latency_s < tp.latency_s
    # 8 GPUs, 16 samples: each replica draws its 2 lengths from the distribution
    r = simulate("bert-base", "dgx-h100", batch=16, seq_lens="squad-v1.1", tp=1)
    assert r.meta["dp"] == 8 and r.meta["seq_lens"] == "squad-v1.1"
    assert r.tokens == pytest.approx(8 * sum(SQUAD.sample(2)))


def test_graph_meta_and_distribution_are_hashable():
    g = build_model("bert-base", seq_lens=SQUAD, batch=32)
    assert g.meta["seq_lens"] == "squad-v1.1" and g.meta["tokens"] == sum(SQUAD.sample(32))
    assert hash(SQUAD) == hash(resolve_seq_lens("squad-v1.1"))
    with pytest.raises(WorkloadError):
        SeqLenDist("x", (5, 3), (1, 1))
    assert math.isclose(SQUAD.mean_square ** 0.5, 183.53, abs_tol=0.01)


def test_orin_bert_packing_gains_the_token_ratio():
    # MLPerf BERT Offline on Orin (tests/golden/test_published_edge.py): packing 256 SQuAD
    # samples runs 44,042 tokens instead of 98,304. Linear layers, norms and embeddings are
    # ~90% of the time and scale with the tokens; attention (l^2 per sample, 4.4x less work
    # than padded) is the rest: the rate rises by the token ratio, within 10%.
    kw = dict(batch=256, dtype="int8", timing="graph")
    packed = simulate("bert-large", "jetson-agx-orin-64gb", seq_lens="squad-v1.1", **kw)
    padded = simulate("bert-large", "jetson-agx-orin-64gb", seq=384, **kw)
    ratio = padded.latency_s / packed.latency_s
    assert packed.tokens == sum(SQUAD.sample(256)) == 44_042
    assert ratio == pytest.approx(256 * 384 / 44_042, rel=0.10)


def test_a_packed_batch_has_a_size_limit():
    # each sample is one length in the attention op: a runaway batch is an error, not a
    # million-entry tuple per op
    with pytest.raises(WorkloadError, match=r"a batch of 2,097,152 samples is more than the "
                                            r"1,048,576 lengths"):
        build("bert-base", seq_lens="squad-v1.1", batch=2**21)
    assert SQUAD.describe() == ("squad-v1.1: 88,641 samples, mean 172.0 tokens, p50 159, "
                                "p90 260, max 384")
