"""What the CLI tests share: run ``hwsim ARGV`` in-process and read a one-line error."""

from __future__ import annotations

from simulator.cli import main


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """``hwsim ARGV``: (exit status, stdout, stderr); argparse usage errors exit through
    SystemExit, counted the same."""
    try:
        code = main(list(argv))
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(code: int, err: str) -> str:
    """The single ``error: ...`` line of a failed command (exit 2, no traceback)."""
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]
