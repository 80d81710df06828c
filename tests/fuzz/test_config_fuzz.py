"""Fuzz: malformed model configs (shipped YAML, a user's HF ``config.json``) never give a
traceback, a hang or a wrong number.

Shipped configs (``workloads/zoo/configs/*.yaml``) are mutated deterministically (seeded) and
written back as YAML and as JSON. Each mutant either raises :class:`WorkloadError` (one line per
problem, naming the file) or parses to a model whose parameter count is finite and positive
and whose graph builds. A size field set to a value no size accepts must fail naming the field.
"""

from __future__ import annotations

import copy
import json
import math
import random
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from _timeouts import no_hang
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.cli import main
from workloads.errors import WorkloadError
from workloads.importers.hf_config import (
    FIELD_MAX,
    MAX_CONFIG_BYTES,
    MODEL_TYPES,
    parse_config,
    parse_config_text,
    read_config_file,
    strict_yaml_load,
)
from workloads.zoo import build, count_params

CONFIGS = {p.stem: p for p in sorted((Path(__file__).resolve().parents[2] / "workloads" / "zoo"
                                      / "configs").glob("*.yaml"))}

#: No size field accepts these (HF's null means "the default", so it is not among them).
BAD_SIZES: list[Any] = [math.nan, math.inf, -math.inf, -1, 2.5, 10**30, 1e300, True, "12", [],
                        {}, "x" * 10_000]
BAD_LISTS: list[Any] = [[-1], [10**30], [2.5], [True], [], "16", [16] * 5000, [math.nan]]
ANY_VALUES: list[Any] = [*BAD_SIZES, *BAD_LISTS, None, 0, 1, 3, 64, False, "", "relu", "silu",
                         "gelu_new", "bogus", [1, 2, 3], {"a": 1}, 10**6, 2**31]




def _raw(name: str) -> dict[str, Any]:
    return strict_yaml_load(CONFIGS[name].read_text(encoding="utf-8"))


def _write(tmp_path: Path, tag: str, cfg: Any, as_json: bool) -> Path:
    if as_json:
        p = tmp_path / tag / "config.json"
        p.parent.mkdir()
        p.write_text(json.dumps(cfg), encoding="utf-8")  # NaN/Infinity written as JSON cannot
    else:
        p = tmp_path / f"{tag}.yaml"
        p.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return p


def _check_error(e: WorkloadError, source: str) -> str:
    msg = str(e)
    lines = msg.splitlines()
    assert lines and all(line.startswith(f"{source}: ") for line in lines), msg
    assert all(len(line) < 600 for line in lines), msg
    return msg


def _load(path: Path) -> None:
    """Read, parse, count and build a mutant: a WorkloadError or sane numbers, nothing else."""
    with no_hang():
        try:
            cfg = read_config_file(path)
            spec = parse_config(cfg, str(path))
        except WorkloadError as e:
            _check_error(e, str(path))
            return
        n = count_params(cfg)
        assert math.isfinite(n) and n > 0, (cfg, n)
        try:
            graph = build(str(path))
        except WorkloadError as e:  # a shape the builder refuses (e.g. an image too small)
            assert "\n" not in str(e) or all(line.strip() for line in str(e).splitlines())
            return
        assert graph is not None and spec is not None


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_bad_size_fails_naming_the_field(tmp_path, name):
    rng = random.Random(f"size-{name}")
    raw0 = _raw(name)
    fields = [k for k in raw0 if k in FIELD_MAX]
    assert fields, name
    for i in range(16):
        field = rng.choice(fields)
        is_list = isinstance(raw0[field], list)
        bad = rng.choice(BAD_LISTS if is_list else BAD_SIZES)
        cfg = copy.deepcopy(raw0)
        cfg[field] = bad
        as_json = rng.random() < 0.5
        p = _write(tmp_path, f"{i}", cfg, as_json)
        with pytest.raises(WorkloadError) as e, no_hang():
            parse_config(read_config_file(p), str(p))
        msg = _check_error(e.value, str(p))
        nonfinite = isinstance(bad, float) and not math.isfinite(bad) or (
            is_list and isinstance(bad, list) and any(
                isinstance(x, float) and not math.isfinite(x) for x in bad))
        if as_json and nonfinite:  # json.dumps wrote NaN / Infinity: refused as not JSON
            assert "is not a number JSON allows" in msg, msg
        else:
            assert f"field {field!r}" in msg, (field, bad, msg)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_random_mutations_fail_cleanly_or_build(tmp_path, name):
    rng = random.Random(f"mutate-{name}")
    raw0 = _raw(name)
    for i in range(16):
        cfg = copy.deepcopy(raw0)
        for _ in range(rng.randint(1, 3)):
            key = rng.choice(list(cfg) or ["model_type"])
            op = rng.random()
            if op < 0.6:
                cfg[key] = rng.choice(ANY_VALUES)
            elif op < 0.8:
                cfg.pop(key, None)
            else:
                cfg[key] = None
        _load(_write(tmp_path, f"{i}", cfg, as_json=rng.random() < 0.5))


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_duplicate_key_is_an_error(tmp_path, name):
    text = CONFIGS[name].read_text(encoding="utf-8")
    line = next(ln for ln in text.splitlines() if re.match(r"^[a-z_]+:\s*\S", ln))
    p = tmp_path / "dup.yaml"
    p.write_text(text + line + "\n", encoding="utf-8")
    with pytest.raises(WorkloadError, match=r"malformed YAML at line \d+, column 1: duplicate key"):
        read_config_file(p)
    cfg = _raw(name)
    body = json.dumps(cfg)
    k = next(iter(cfg))
    p = tmp_path / "dup.json"
    p.write_text(body[:-1] + f", {json.dumps(k)}: {json.dumps(cfg[k])}}}", encoding="utf-8")
    with pytest.raises(WorkloadError, match=rf"malformed JSON: duplicate key '{k}'"):
        read_config_file(p)


# -- JSON and YAML that Python's parsers accept but a config may not hold ----------------------
@pytest.mark.parametrize("text, needle", [
    ('{"model_type": "llama", "hidden_size": Infinity}', "Infinity is not a number JSON allows"),
    ('{"model_type": "llama", "hidden_size": NaN}', "NaN is not a number JSON allows"),
    ('{"model_type": "llama", "hidden_size": -Infinity}', "-Infinity is not a number"),
    ('{"model_type": "llama", "hidden_size": ' + "9" * 5000 + "}",
     "an integer of thousands of digits"),
    ('{"model_type": "llama", "x": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
    ('{"model_type": "llama", "model_type": "gpt2"}', "duplicate key 'model_type'"),
    ("[1, 2]", "expected a mapping of config fields at the top level, got list"),
    ('{"model_type": "llama"', "malformed JSON at line 1"),
])
def test_hostile_json_is_a_one_line_workload_error(tmp_path, text, needle):
    p = tmp_path / "config.json"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(WorkloadError) as e, no_hang(5):
        read_config_file(p)
    msg = _check_error(e.value, str(p))
    assert needle in msg and len(msg.splitlines()) == 1, msg


@pytest.mark.parametrize("field, value, needle", [
    ("hidden_size", 10**30, "field 'hidden_size': expected an integer from 1 to 1,000,000"),
    ("num_hidden_layers", 1e300, "field 'num_hidden_layers': expected an integer from 1 to "
                                 "10,000, got 1e+300"),
    ("num_key_value_heads", math.nan, "field 'num_key_value_heads': expected a positive integer, "
                                      "got nan"),
    ("vocab_size", True, "field 'vocab_size': expected a positive integer, got True"),
    ("intermediate_size", 11008.5, "field 'intermediate_size': expected a positive integer"),
    ("num_attention_heads", "32", "field 'num_attention_heads': expected a positive integer"),
    ("max_position_embeddings", 10**10, "expected an integer from 1 to 1,000,000,000"),
])
def test_bad_llama_field_is_named(field, value, needle):
    cfg = _raw("llama2-7b")
    cfg[field] = value
    with pytest.raises(WorkloadError, match=re.escape(needle)):
        parse_config(cfg, "cfg.json")


def test_integral_float_size_is_accepted():
    cfg = _raw("llama2-7b")
    cfg["hidden_size"] = 4096.0
    assert parse_config(cfg, "cfg.json").d_model == 4096


@pytest.mark.parametrize("text, needle", [
    ('a: &a ["lol", "lol"]\nb: [*a, *a]\n', "YAML anchors (&a) are not allowed"),
    ("model_type: llama\nx: " + "[" * 10_000 + "]" * 10_000 + "\n", "nested deeper than"),
    ("model_type: llama\nhidden_size: 2001-13-45\n", "cannot read '2001-13-45' as timestamp"),
    ("model_type: llama\nhidden_size: !!python/name:os.system x\n", "could not determine"),
])
def test_hostile_yaml_is_a_one_line_workload_error(text, needle):
    with pytest.raises(WorkloadError) as e, no_hang(5):
        parse_config_text(text, "cfg.yaml")
    msg = _check_error(e.value, "cfg.yaml")
    assert needle in msg and len(msg.splitlines()) == 1, msg


def test_huge_config_is_refused_before_parsing(tmp_path):
    p = tmp_path / "config.json"
    with open(p, "wb") as f:
        f.truncate(50 * 2**20)  # 50 MiB, sparse
    with pytest.raises(WorkloadError) as e, no_hang(5):
        read_config_file(p)
    assert str(e.value) == (f"{p}: file is 52,428,800 bytes; config files are limited to "
                            f"{MAX_CONFIG_BYTES:,} bytes (1 MiB)")
    with pytest.raises(WorkloadError, match="limited to"):
        parse_config_text(" " * (MAX_CONFIG_BYTES + 1), "big.yaml")


def test_non_utf8_config_is_refused(tmp_path):
    p = tmp_path / "config.json"
    p.write_bytes(b'{"model_type": "\xff"}')
    with pytest.raises(WorkloadError, match="not UTF-8 text"):
        read_config_file(p)


def test_shipped_configs_use_no_anchors_or_duplicate_keys():
    for name in CONFIGS:
        assert isinstance(_raw(name), dict)


# -- any JSON object: WorkloadError or a sane model --------------------------------------------
_FIELDS = sorted({*FIELD_MAX, "model_type", "hidden_act", "activation", "layer_type",
                  "tie_word_embeddings", "attention_bias", "bias"})
_VALUES = st.one_of(st.integers(min_value=-5, max_value=10**40), st.floats(), st.booleans(),
                    st.none(), st.text(max_size=6), st.lists(st.integers(-2, 300), max_size=4))


@settings(max_examples=200, deadline=None, derandomize=True)
@given(model_type=st.sampled_from(sorted(MODEL_TYPES)),
       fields=st.dictionaries(st.sampled_from(_FIELDS), _VALUES, max_size=8))
def test_any_json_config_is_an_error_or_a_sane_model(model_type, fields):
    cfg = {**fields, "model_type": model_type}
    try:
        data = parse_config_text(json.dumps(cfg), "h.json", json_only=True)
        parse_config(data, "h.json")
    except WorkloadError as e:
        assert all(line.startswith("h.json: ") for line in str(e).splitlines())
        return
    n = count_params(data)
    assert math.isfinite(n) and n > 0


# -- the CLI prints error: ... and exits 2 -----------------------------------------------------
@pytest.mark.parametrize("text", [
    '{"model_type": "llama", "hidden_size": Infinity}',
    '{"model_type": "llama", "hidden_size": 1000000000000000000000000000000, '
    '"num_hidden_layers": 2.5, "num_attention_heads": true, "intermediate_size": -1, '
    '"vocab_size": "32000"}',
    "[" * 100_000 + "]" * 100_000,
])
def test_cli_bad_workload_is_error_exit_2(tmp_path, capsys, text):
    p = tmp_path / "config.json"
    p.write_text(text, encoding="utf-8")
    assert main(["run", "--workload", str(p)]) == 2
    err = capsys.readouterr().err
    lines = err.splitlines()
    # one line per problem, each naming the file (the CLI prefixes only the first with error:)
    assert lines and lines[0].startswith(f"error: {p}: "), err
    assert all(line.startswith((f"error: {p}: ", f"{p}: ")) for line in lines), err
    assert "Traceback" not in err
