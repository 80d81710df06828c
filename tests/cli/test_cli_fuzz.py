"""Fuzzing the command line: a few hundred seeded malformed command lines (random subcommands,
bad numbers, unknown parts and models, missing values, conflicting flags, bad paths).

Each must end in exit status 0 or 2 (argparse usage errors exit 2 through SystemExit), never
another exception and never a traceback on stderr; whatever ``--json`` prints must be strict
JSON. Measurement (``hwsim validate``) and fitting (``hwsim calibrate``) are replaced by stubs so
the test stays fast and never runs torch; small models and single parts keep it under ~30 s.
"""

import json
import random

import pytest

from simulator.cli import main
from simulator.errors import HwsimError

SEED, CASES = 20240601, 300

BAD_NUMS = ["-1", "0", "1e400", "nan", "inf", "-inf", "abc", "", " ", "1.5", "0x10", "-0",
            "99999999999999999999999", "9" * 5000, str(2**53 + 1), "1e3", "--", "٣"]
OK_NUMS = ["1", "2", "8", "64", "128", "1_000", str(2**53)]
ARCHS = ["h100-sxm", "cpu-host", "tpu-v4", "systolic-32x32", "eyeriss", "alveo-u280",
         "dgx-a100", "l4"]
BAD_ARCHS = ["h999", "", "../../etc/passwd", "README.md", "nan", "h100-sxm,", ",", "a" * 300,
             "/nonexistent/spec.yaml", "cpu-host,h999"]
WORKLOADS = ["gpt2", "mlp", "resnet18", "bert-base"]
BAD_WORKLOADS = ["no-such-model", "", "README.md", "/nonexistent/config.json", "llama2-70b",
                 "pyproject.toml"]
PHASES = ["auto", "forward", "prefill", "decode", "train", "sideways", ""]
DTYPES = ["bf16", "fp32", "int8", "int4", "fp8", "fp16", "zz", "", "nan"]
SETS = ["memory.hbm.bandwidth=fast", "a.b=c", "compute=1", "=", "noequals",
        "memory.hbm.bandwidth=-1 TB/s", "memory.hbm.bandwidth=nan TB/s", "power.tdp=1e400 W",
        "clock=0", "memory.hbm.bandwidth=4 TB/s", "name=", "compute.tensor_core.count=-3"]
OP_KINDS = ["matmul", "conv2d", "attention", "softmax", "layernorm", "rmsnorm", "gelu", "add",
            "memcpy", "allreduce", "embedding", "warp", "MATMUL", ""]
OP_FLAGS = ["--m", "--n", "--k", "--batch", "--c", "--h", "--w", "--r", "--s", "--stride",
            "--pad", "--groups", "--heads", "--kv-heads", "--head-dim", "--seq", "--context",
            "--rows", "--cols", "--numel", "--bytes", "--devices", "--tokens", "--vocab", "--dim"]
WORKLOAD_NUM_FLAGS = ["--batch", "--seq", "--context", "--tp", "--image-size"]


OP_SHAPES = {   # a valid flag set per op kind; mutations break it
    "matmul": ["--m", "--n", "--k"], "conv2d": ["--batch", "--c", "--h", "--w", "--k"],
    "attention": ["--heads", "--head-dim", "--seq"], "softmax": ["--rows", "--cols"],
    "layernorm": ["--rows", "--cols"], "rmsnorm": ["--rows", "--cols"], "gelu": ["--numel"],
    "add": ["--numel"], "memcpy": ["--bytes"], "allreduce": ["--bytes", "--devices"],
    "embedding": ["--tokens", "--vocab", "--dim"],
}
NUMERIC = set(OP_FLAGS) | set(WORKLOAD_NUM_FLAGS) | {"--top", "--reps", "--warmup", "--passes",
                                                     "--threads", "--holdout", "--seed", "--prior"}


BAD_JSONL = {   # --input files the mutations point at
    "bad.jsonl": '{"kind": "matmul", "m": 8}\n[1, 2]\n',
    "number.jsonl": "42\n",
    "deep.jsonl": "[" * 50_000 + "]" * 50_000 + "\n",
    "inf.jsonl": '{"kind": "matmul", "m": 1e999, "n": 2, "k": 2}\n',
    "nan.jsonl": '{"kind": "matmul", "m": NaN, "n": 2, "k": 2}\n',
    "huge.jsonl": '{"kind": "matmul", "m": 1' + "0" * 40 + ', "n": 2, "k": 2}\n',
    "float.jsonl": '{"kind": "conv2d", "n": 1.5, "c": 3, "h": 8, "w": 8, "k": 4, "r": 1, "s": 1}\n',
}


def _base(rng: random.Random, tmp: str) -> list[str]:
    """A valid command line (small models, one part); the mutations make it malformed."""
    cmd = rng.choice(["run", "run", "run", "compare", "op", "op", "op", "ops", "roofline",
                      "archs", "workloads", "compare-measured", "calibrate", "validate"])
    ok = OK_NUMS[:5] + [str(2**53)] * (rng.random() < 0.1)   # sometimes as large as allowed
    if cmd in ("run", "compare", "roofline"):
        argv = [cmd, "--workload", rng.choice(WORKLOADS), "--arch", rng.choice(ARCHS)]
        for flag in rng.sample(WORKLOAD_NUM_FLAGS, rng.randint(0, 2)):
            argv += [flag, rng.choice(ok)]
        if rng.random() < 0.4:
            argv += ["--phase", rng.choice(PHASES[:5])]
        if rng.random() < 0.3:
            argv += ["--dtype", rng.choice(DTYPES[:6])]
        if cmd == "run":
            argv += [f for f in ("--json", "--explain", "--breakdown") if rng.random() < 0.3]
            if rng.random() < 0.3:
                argv += ["--trace", f"{tmp}/t.json"]
        if cmd == "compare" and rng.random() < 0.5:
            argv[3] += "," + rng.choice(ARCHS)
        if cmd == "roofline":
            argv += ["--out", f"{tmp}/r.png"]
        argv += ["--json"] * (cmd == "compare" and rng.random() < 0.5)
    elif cmd == "op":
        kind = rng.choice(list(OP_SHAPES))
        argv = ["op", kind, "--arch", rng.choice(ARCHS)]
        for flag in OP_SHAPES[kind]:
            argv += [flag, rng.choice(ok)]
        argv += [f for f in ("--json", "--explain") if rng.random() < 0.3]
    elif cmd == "ops":
        argv = ["ops", "--input", f"{tmp}/" + rng.choice(["good.jsonl", *BAD_JSONL]),
                "--arch", rng.choice(ARCHS)]
        argv += ["--json"] * (rng.random() < 0.5)
    elif cmd in ("archs", "workloads"):
        argv = [cmd] + ["--json"] * (rng.random() < 0.5)
    elif cmd in ("compare-measured", "calibrate"):     # no real dataset: fast failures only
        argv = [cmd, rng.choice([f"{tmp}/none", tmp, f"{tmp}/good.jsonl"]),
                "--arch", rng.choice(ARCHS), "--out", f"{tmp}/out"]
        if cmd == "calibrate":
            argv += ["--holdout", rng.choice(["0", "0.3", "0.5"])]
    else:
        argv = ["validate", "--suite", rng.choice(["smoke", "ops"]), "--out", f"{tmp}/v",
                "--reps", rng.choice(ok), "--passes", "1"]
    return argv


def _mutate(rng: random.Random, argv: list[str], tmp: str) -> list[str]:
    argv = list(argv)
    m = rng.choice(["num", "num", "num", "arch", "workload", "stray", "drop", "unknown", "set",
                    "phase", "dtype", "path", "path", "kind", "conflict", "dup", "subcommand",
                    "omit", "omit"])
    nums = [i + 1 for i, a in enumerate(argv[:-1]) if a in NUMERIC]
    if m == "num" and nums:
        argv[rng.choice(nums)] = rng.choice(BAD_NUMS)
    elif m == "arch" and "--arch" in argv:
        argv[argv.index("--arch") + 1] = rng.choice(BAD_ARCHS)
    elif m == "workload" and "--workload" in argv:
        argv[argv.index("--workload") + 1] = rng.choice(BAD_WORKLOADS)
    elif m == "stray":
        argv += [rng.choice(OP_FLAGS), rng.choice(OK_NUMS[:5])]
    elif m == "drop" and len(argv) > 1:
        argv.pop()                           # a flag may lose its value
    elif m == "omit":                        # leave out an option and its value
        present = [i for i, a in enumerate(argv[:-1]) if a in ("--arch", "--phase", "--workload",
                                                               "--input", "--out", "--trace")]
        if present:
            i = rng.choice(present)
            del argv[i:i + 2]
    elif m == "unknown":
        argv.insert(rng.randint(1, len(argv)), rng.choice(["--frobnicate", "-x", "--jsonn"]))
    elif m == "set":
        argv += ["--set", rng.choice(SETS)]
    elif m == "phase":
        argv += ["--phase", rng.choice(PHASES)]
    elif m == "dtype":
        argv += ["--dtype", rng.choice(DTYPES)]
    elif m == "path":
        flag = rng.choice(["--trace", "--out", "--input"])
        argv += [flag, rng.choice([f"{tmp}/no/x.json", tmp, "/proc/x.json", "", "README.md",
                                   *(f"{tmp}/{name}" for name in BAD_JSONL)])]
    elif m == "kind" and argv[0] == "op":
        argv[1] = rng.choice(["warp", "MATMUL", "", "pool", "elementwise", "swiglu"])
    elif m == "conflict":
        argv += rng.choice([["--n", "3", "--batch", "4"], ["--json", "--explain"],
                            ["--phase", "decode", "--context", "0"], ["--tp", "3"],
                            ["--dataflow", "ws", "--dataflow", "xx"], ["--causal"]])
    elif m == "dup" and len(argv) > 2:
        argv += argv[1:3]                    # an option given twice
    elif m == "subcommand":
        argv[0] = rng.choice(["nope", "", "RUN", "-h" if rng.random() < 0.1 else "op"])
    return argv


def _case(rng: random.Random, tmp: str) -> list[str]:
    argv = _base(rng, tmp)
    for _ in range(rng.choice([0, 1, 1, 1, 2, 2, 3])):
        argv = _mutate(rng, argv, tmp)
    return argv


def _cases() -> list[list[str]]:
    rng = random.Random(SEED)
    return [_case(rng, "@TMP@") for _ in range(CASES)]


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A working directory with good and bad JSONL inputs; validate/fit stubbed out."""
    import simulator.validate.calibrate as calibrate
    import simulator.validate.run as vrun

    def stub(*a, **k):
        raise HwsimError("stub: the fuzz test does not measure or fit")

    monkeypatch.setattr(vrun, "validate", stub)
    monkeypatch.setattr(calibrate, "fit", stub)
    (tmp_path / "good.jsonl").write_text(
        '{"kind": "matmul", "m": 8, "n": 4096, "k": 4096}\n{"kind": "gelu", "numel": 4096}\n')
    for name, text in BAD_JSONL.items():
        (tmp_path / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("i", range(CASES))
def test_fuzzed_command_line_ends_cleanly(sandbox, capsys, i):
    argv = [a.replace("@TMP@", str(sandbox)) for a in _cases()[i]]
    try:
        code = main(argv)
    except SystemExit as e:          # argparse: usage errors exit 2, --help exits 0
        code = e.code
    out, err = capsys.readouterr()
    assert code in (0, 2), (argv, code, err)
    assert "Traceback" not in err, (argv, err)
    if code == 2:
        assert err.strip(), argv     # a failure always says why
    if code == 0 and "--json" in argv:
        docs = out.splitlines() if argv[:1] == ["ops"] else [out]

        def no_constant(name):
            raise AssertionError(f"{argv}: invalid JSON token {name}")

        for doc in docs:
            json.loads(doc, parse_constant=no_constant)


def test_the_fuzz_covers_every_subcommand_and_bad_numbers():
    cases = _cases()
    firsts = {c[0] for c in cases if c}
    assert {"run", "compare", "op", "ops", "roofline", "archs", "workloads", "compare-measured",
            "calibrate", "validate"} <= firsts
    flat = [a for c in cases for a in c]
    assert {"-1", "0", "1e400", "nan", "abc"} <= set(flat)


CONV_SMALL = ["--c", "3", "--h", "8", "--w", "8", "--k", "4", "--r", "1", "--s", "1"]


@pytest.mark.parametrize("argv,needle", [
    (["run", "--batch", "-1"], "--batch: expected a positive whole number, got -1"),
    (["run", "--batch", "0"], "--batch: expected a positive whole number, got 0"),
    (["run", "--batch", "1e400"], "--batch: expected a whole number, got '1e400'"),
    (["run", "--seq", "nan"], "--seq: expected a whole number"),
    (["run", "--context", "-5"], "--context: expected a >= 0 whole number"),
    (["run", "--batch", "99999999999999999999999"], "too large"),
    (["compare", "--tp", "0"], "--tp: expected a positive"),
    (["op", "matmul", "--m", "-1", "--n", "2", "--k", "2"], "m must be a positive number"),
    (["op", "matmul", "--m", "0", "--n", "2", "--k", "2"], "m must be a positive number"),
    (["op", "matmul", "--m", "1e400", "--n", "2", "--k", "2"], "--m: expected a whole number"),
    (["op", "matmul", "--m", str(10**20), "--n", "2", "--k", "2"], "--m: .* too large"),
    (["op", "conv2d", "--batch", "0", *CONV_SMALL],
     "n must be a positive number"),
    (["op", "conv2d", "--pad", "-1", *CONV_SMALL],
     "pad must be >= 0"),
    (["op", "memcpy", "--bytes", "inf"], "--bytes: expected a finite number"),
    (["op", "memcpy", "--bytes", "0"], "--bytes: expected a finite number"),
    (["validate", "--reps", "0"], "--reps: expected a positive"),
    (["validate", "--min-time", "nan"], "--min-time: expected a finite number"),
    (["calibrate", "d", "--arch", "x", "--holdout", "1"], r"--holdout: expected a finite number"),
    (["calibrate", "d", "--arch", "x", "--prior", "-1"], "--prior: expected a finite number"),
])
def test_bad_numbers_are_clear_errors_not_results(capsys, argv, needle):
    """A usage error (SystemExit 2) or a one-line ``error:`` (status 2): never a number."""
    import re

    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and "Traceback" not in err, err
    assert re.search(needle, err.strip().splitlines()[-1]), err
