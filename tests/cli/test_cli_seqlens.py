"""``hwsim run --seq-lens``: variable-length samples run packed, from the CLI."""

from __future__ import annotations

import json

import pytest

from tests.cli._helpers import one_error_line, run_cli


def test_run_with_a_dataset_packs_the_batch(capsys):
    code, out, _ = run_cli(capsys, "run", "--workload", "bert-large", "--arch",
                           "jetson-agx-orin-64gb", "--batch", "256", "--dtype", "int8",
                           "--seq-lens", "squad-v1.1")
    assert code == 0
    head = out.splitlines()[0]
    # 256 samples at evenly spaced quantiles of SQuAD v1.1: 44,042 real tokens of 98,304
    assert "squad-v1.1 lengths packed: 44,042 tokens (max 384, 98,304 padded)" in head


def test_packed_run_is_faster_than_padded(capsys):
    args = ("run", "--workload", "bert-base", "--arch", "h100-sxm", "--batch", "16", "--json")
    code, out, _ = run_cli(capsys, *args, "--seq-lens", "squad-v1.1")
    packed = json.loads(out)
    code2, out2, _ = run_cli(capsys, *args, "--seq", "384")
    padded = json.loads(out2)
    assert code == code2 == 0 and packed["latency_s"] < padded["latency_s"]


def test_file_of_lengths(tmp_path, capsys):
    f = tmp_path / "lens.txt"
    f.write_text("# length count\n64 3\n128 1\n")
    code, out, _ = run_cli(capsys, "run", "--workload", "gpt2", "--arch", "h100-sxm",
                           "--phase", "prefill", "--batch", "4", "--seq-lens", str(f))
    assert code == 0 and "lengths packed: 320 tokens (max 128, 512 padded)" in out


@pytest.mark.parametrize("args,expected", [
    (("--seq-lens", "0,5"), "error: seq_lens[0] must be at least 1 token"),
    (("--seq-lens", "600"), "error: bert-base: seq_lens inline: length 600 is above the "
                            "model's 512 positions"),
    (("--seq-lens", "missing.txt"), "error: seq_lens: 'missing.txt' is neither a dataset"),
    (("--seq-lens", "128", "--seq", "128"), "error: bert-base: give seq"),
])
def test_errors_are_one_line(capsys, args, expected):
    code, _, err = run_cli(capsys, "run", "--workload", "bert-base", "--arch", "h100-sxm",
                           *args)
    assert one_error_line(code, err).startswith(expected)


def test_malformed_file_names_file_and_line(tmp_path, capsys):
    f = tmp_path / "bad.txt"
    f.write_text("128\n12x\n")
    code, _, err = run_cli(capsys, "run", "--workload", "bert-base", "--arch", "h100-sxm",
                           "--seq-lens", str(f))
    assert one_error_line(code, err) == (f"error: {f}: line 2: length must be a whole number, "
                                         f"got '12x'")
