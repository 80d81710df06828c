"""Fuzz of the sparsity inputs: ``--sparsity`` on ``hwsim run``/``compare``/``op``, the
``sparsity`` field of an op (Python and JSONL) and :func:`workloads.transforms.prune.prune`.
Every value either works (a valid N:M or fraction of weights pruned) or fails with one clear
line naming the flag (or field) and the value: never a traceback, never NaN."""

from __future__ import annotations

import json
import math
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator import HwsimError, simulate
from simulator.cli import main
from tests.fuzz._timeouts import no_hang
from workloads.ops import MatMul, Sparsity, parse_sparsity
from workloads.transforms.prune import prune
from workloads.zoo import build_model

fuzz = settings(max_examples=300, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])

BAD = ["5:4", "0:4", "1.5", "-0.1", "abc", "1", "2:0", "0:0", "4:2", "nan", "inf", "-inf",
       "1e999", "", " ", ":", "2:", ":4", "2:4:8", "2/4", "0x10", "1,5", "½",
       "70%%", "%", "101%", "-5%", "9" * 5000, "2:" + "9" * 50, "１:４", "0.7\x00"]
GOOD = {"2:4": 0.5, "1:4": 0.25, "4:8": 0.5, "1:2": 0.5, "0.7": 0.3, "0.5": 0.5, ".25": 0.75,
        "70%": 0.3, "3:16": 0.1875, "0.999": 0.001}

# an N:M pair, a number, or any short text (mostly near-misses of the two spellings)
_text = st.one_of(
    st.builds(lambda n, m: f"{n}:{m}", st.integers(-3, 2000), st.integers(-3, 2000)),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(BAD + list(GOOD)),
    st.text(alphabet="0123456789.:-+e%x ", max_size=12),
    st.text(max_size=8),
)


def _valid(text: str) -> bool:
    try:
        parse_sparsity(text)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("value", ["2:4 ", " 2 : 4", "2:4\n"])
def test_whitespace_around_a_spelling_is_the_same_spelling(value):
    assert parse_sparsity(value) == parse_sparsity("2:4")


@pytest.mark.parametrize("value", BAD)
def test_bad_values_name_the_flag_and_value(value, capsys):
    assert not _valid(value)
    with no_hang(30), pytest.raises(SystemExit) as e:  # an argparse usage error
        main(["run", "--workload", "gpt2", "--phase", "prefill", "--seq", "16",
              f"--sparsity={value}"])
    err = capsys.readouterr().err
    assert e.value.code == 2
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith("hwsim run: error: argument --sparsity: got ")
    assert repr(value)[:30] in line


def test_bad_values_exit_2_via_argparse():
    with pytest.raises(SystemExit) as e:
        main(["run", "--workload", "gpt2", "--sparsity", "5:4"])
    assert e.value.code == 2


@pytest.mark.parametrize("value,density", sorted(GOOD.items()))
def test_good_values(value, density):
    s = parse_sparsity(value)
    assert s.density == pytest.approx(density)


@fuzz
@given(text=_text)
def test_parse_sparsity_any_text(text):
    try:
        s = parse_sparsity(text, "--sparsity")
    except ValueError as e:
        msg = str(e)
        assert msg.startswith("--sparsity ") and "\n" not in msg.strip()
        assert len(msg) < 400
        return
    if s is None:
        return
    assert isinstance(s, Sparsity)
    assert 0 < s.density <= 1 and math.isfinite(s.metadata_bits) and s.metadata_bits >= 0
    for eb in (0.5, 1.0, 2.0, 4.0):
        assert 0 < s.stored_fraction(eb) <= 1


@fuzz
@given(value=st.one_of(_text, st.floats(), st.integers(), st.none(), st.booleans(),
                       st.dictionaries(st.sampled_from(["pattern", "n", "m", "density",
                                                        "metadata_bits", "x"]),
                                       st.one_of(st.integers(-2, 9), st.floats(-1, 2),
                                                 st.sampled_from(["n:m", "unstructured"])),
                                       max_size=4)),
       k=st.sampled_from([1, 4, 6, 8, 64, 4096]), weight=st.booleans())
def test_op_sparsity_field(value, k, weight):
    try:
        op = MatMul(m=2, n=16, k=k, weight=weight, sparsity=value)
    except ValueError as e:
        assert str(e).startswith("matmul: ") and "\n" not in str(e).strip()
        return
    assert op.b_bytes() <= op.dense_b_bytes()
    assert op.flops() == MatMul(m=2, n=16, k=k, weight=weight).flops()


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(text=_text, model=st.sampled_from(["gpt2", "resnet18", "mlp", "mixtral-8x7b"]),
       first=st.booleans(), head=st.booleans())
def test_prune_any_value(text, model, first, head):
    g = build_model(model, phase="forward", batch=1, seq=8)
    try:
        p = prune(g, text, prune_first_conv=first, prune_head=head)
    except ValueError as e:
        assert "\n" not in str(e).strip()
        return
    assert p.weight_bytes() <= g.weight_bytes()
    assert p.flops() == g.flops() and p.count_ops() == g.count_ops()


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(text=_text, arch=st.sampled_from(["h100-sxm", "tpu-v5e", "alveo-u280", "l4"]),
       phase=st.sampled_from(["prefill", "decode", "train"]))
def test_simulate_any_value(text, arch, phase):
    try:
        r = simulate("gpt2", arch, phase=phase, batch=1, seq=32, context=64, sparsity=text)
    except HwsimError as e:
        msg = str(e)
        assert "\n" not in msg.strip() or type(e).__name__ == "SpecError"
        assert "--sparsity" in msg or "train" in phase or "needs" in msg
        return
    assert math.isfinite(r.latency_s) and r.latency_s > 0 and r.energy_j > 0
    if "sparsity" in r.meta:
        assert 0 < r.meta["sparsity"]["density"] <= 1


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(text=_text)
def test_cli_op_any_value(text, capsys):
    capsys.readouterr()  # each example reads only its own output
    with no_hang(30):
        try:
            rc = main(["op", "matmul", "--m", "1", "--n", "256", "--k", "256", "--json",
                       f"--sparsity={text}"])
        except SystemExit as e:  # argparse: usage error
            rc = e.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    if rc == 0:
        d = json.loads(out)
        assert d["latency_s"] > 0 and d["bytes"] <= 2 * 256 * 2 + 256 * 256 * 2
    else:
        assert rc == 2 and re.search(r"--sparsity", err)


def test_jsonl_sparsity_field(tmp_path, capsys):
    f = tmp_path / "ops.jsonl"
    f.write_text('{"kind": "matmul", "m": 1, "n": 64, "k": 64, "weight": true, '
                 '"sparsity": "2:4"}\n{"kind": "matmul", "m": 1, "n": 64, "k": 64, '
                 '"weight": true, "sparsity": 0.7}\n')
    assert main(["ops", "--input", str(f), "--json"]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert ["sparsity=2:4" in r["op"] for r in rows] == [True, False]
    f.write_text('{"kind": "matmul", "m": 1, "n": 64, "k": 64, "weight": true, '
                 '"sparsity": "5:4"}\n')
    assert main(["ops", "--input", str(f)]) == 2
    err = capsys.readouterr().err
    assert "ops.jsonl:1: matmul: sparsity '5:4'" in err and "Traceback" not in err
