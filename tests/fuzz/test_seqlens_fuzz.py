"""Fuzz of the sequence-length inputs: ``--seq-lens`` on ``hwsim run``, a file of lengths,
inline lengths and Python lists (:func:`workloads.seqlens.resolve_seq_lens`), and the
``seq_lens`` field of an attention op. Every value either works or fails with one clear line
naming the value (the file and line for a file): never a traceback, never NaN."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator import HwsimError, simulate
from tests.cli._helpers import run_cli
from tests.fuzz._timeouts import no_hang
from workloads.errors import WorkloadError
from workloads.ops import Attention
from workloads.seqlens import SeqLenDist, parse_lengths_text, resolve_seq_lens

fuzz = settings(max_examples=300, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

_line = st.one_of(
    st.integers(-5, 700).map(str),
    st.builds(lambda a, b: f"{a} {b}", st.integers(-3, 600), st.integers(-3, 50)),
    st.builds(lambda a, b: f"{a},{b}", st.integers(-3, 600), st.integers(-3, 50)),
    st.sampled_from(["# comment", "", "  ", ",", " , ", "1.5", "abc", "1 2 3", "9" * 40, "-0", "+7",
                     "１２", "nan", "inf", "\t12\t", "12 # trailing", "0x10"]),
    st.text(alphabet="0123456789 ,#.-+ex\t", max_size=10),
)
_text = st.lists(_line, max_size=8).map("\n".join)


def _check_dist(d: SeqLenDist) -> None:
    assert d.total >= 1 and 1 <= d.lengths[0] <= d.max_len
    assert d.lengths[0] <= d.mean <= d.max_len and math.isfinite(d.mean)
    for n in (1, 3, 16):
        lens = d.sample(n)
        assert len(lens) == n and all(d.lengths[0] <= x <= d.max_len for x in lens)


@fuzz
@given(text=_text)
def test_any_file_text(text):
    try:
        d = parse_lengths_text(text, "lens.txt")
    except WorkloadError as e:
        msg = str(e)
        assert msg.startswith("lens.txt: ") and "\n" not in msg and len(msg) < 300
        return
    _check_dist(d)


@fuzz
@given(value=st.one_of(
    st.text(max_size=12), st.text(alphabet="0123456789, ", max_size=16),
    st.lists(st.one_of(st.integers(-3, 10**6), st.booleans(), st.floats(), st.text(max_size=3)),
             max_size=6),
    st.integers(), st.floats(), st.none(), st.sampled_from(["squad-v1.1", "SQuAD-v1.1 "])))
def test_any_value(value):
    try:
        d = resolve_seq_lens(value)
    except WorkloadError as e:
        msg = str(e)
        assert "seq_lens" in msg and "\n" not in msg and len(msg) < 400
        return
    if d is not None:
        _check_dist(d)


@fuzz
@given(lens=st.lists(st.one_of(st.integers(-2, 300), st.booleans(), st.floats(0, 300)),
                     min_size=0, max_size=6),
       batch=st.integers(1, 6), seq=st.integers(1, 300), causal=st.booleans())
def test_attention_field(lens, batch, seq, causal):
    try:
        op = Attention(batch=batch, heads=4, head_dim=16, seq=seq, causal=causal,
                       seq_lens=lens)
    except ValueError as e:
        assert str(e).startswith("attention: ") and "\n" not in str(e)
        return
    padded = Attention(batch=batch, heads=4, head_dim=16, seq=seq, causal=causal)
    assert op.tokens == sum(lens) <= padded.tokens
    assert 0 < op.flops().matrix <= padded.flops().matrix
    assert 0 < op.min_bytes <= padded.min_bytes


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(text=_text, model=st.sampled_from(["bert-base", "gpt2", "resnet18"]),
       phase=st.sampled_from(["auto", "prefill", "decode", "train"]),
       batch=st.integers(1, 5))
def test_simulate_any_file(tmp_path_factory, text, model, phase, batch):
    f = tmp_path_factory.mktemp("lens") / "lens.txt"
    f.write_text(text)
    try:
        with no_hang(60):
            r = simulate(model, "h100-sxm", phase=phase, batch=batch, seq_lens=str(f))
    except HwsimError as e:  # WorkloadError is one
        msg = str(e)
        assert "\n" not in msg.strip() and len(msg) < 400
        return
    assert r.latency_s > 0 and math.isfinite(r.latency_s) and math.isfinite(r.energy_j)


@pytest.mark.parametrize("value", ["0", "0,5", "600", "abc", "1.5", "nofile.txt", "-3", "",
                                   "9" * 30, "squad-v2"])
def test_cli_bad_values_one_line(capsys, value):
    code, _, err = run_cli(capsys, "run", "--workload", "bert-base", "--arch", "h100-sxm",
                           f"--seq-lens={value}")
    assert code == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "seq_lens" in lines[0]
