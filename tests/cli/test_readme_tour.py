"""Every ``hwsim`` line of the README's "A 5-minute tour" runs as written.

The bash blocks of that section are parsed (comments dropped, ``\\`` continuations joined) and
each command goes through :func:`simulator.cli.main` from a temporary working directory, so
outputs the tour names with relative paths (``out.json``, ``roofline.png``, ``cpu.calib.yaml``,
``./hwsim-reports/``) land in ``tmp_path``; input paths the tour names in the repository
(``examples/kernels.jsonl``, ``experiments/validation/data/...``) are made absolute. Lines that
measure with torch (``hwsim validate``) are skipped.
"""

import re
import shlex
from pathlib import Path

import pytest

from simulator.cli import main

REPO = Path(__file__).resolve().parents[2]
NEEDS_MEASUREMENT = ("validate",)


def tour_commands() -> list[list[str]]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    m = re.search(r"^## A 5-minute tour\n(.*?)(?=^## )", text, re.S | re.M)
    assert m, "README has no '## A 5-minute tour' section"
    blocks = re.findall(r"^```bash\n(.*?)^```", m.group(1), re.S | re.M)
    assert blocks, "the tour has no bash block"
    cmds = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            argv = shlex.split(line, comments=True)
            if argv and argv[0] == "hwsim":
                cmds.append(argv[1:])
    return cmds


def repo_paths(argv: list[str]) -> list[str]:
    """Inputs that live in the repository become absolute; everything else stays as written."""
    return [str(REPO / a) if "/" in a and (REPO / a).exists() else a for a in argv]


def test_tour_is_found_and_names_the_shipped_kernels():
    cmds = tour_commands()
    assert len(cmds) >= 10
    ops = [c for c in cmds if c[0] == "ops"]
    assert ops and all((REPO / c[c.index("--input") + 1]).is_file() for c in ops)


def test_every_tour_command_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    ran = []
    for argv in tour_commands():
        if argv[0] in NEEDS_MEASUREMENT:
            continue
        code = main(repo_paths(argv))
        out, err = capsys.readouterr()
        assert code == 0, f"hwsim {' '.join(argv)}\n{err}"
        assert "Traceback" not in err and out.strip(), argv
        ran.append(argv[0])
    assert {"archs", "workloads", "run", "compare", "op", "ops", "roofline"} <= set(ran)
    assert (tmp_path / "out.json").is_file() and (tmp_path / "roofline.png").is_file()
    if "compare-measured" in ran:                      # the report lands under ./hwsim-reports
        assert list((tmp_path / "hwsim-reports").rglob("report.md"))


@pytest.mark.parametrize("argv", [a for a in tour_commands() if a[0] in NEEDS_MEASUREMENT],
                         ids=lambda a: " ".join(a[:3]))
def test_measurement_lines_parse(argv):
    """The lines skipped above still parse: their subcommand and options exist."""
    from simulator.cli import build_parser

    a = build_parser().parse_args(argv)
    assert a.command == argv[0]
