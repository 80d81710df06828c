"""``hwsim ui`` options and failures that need no browser: a missing UI extra, a taken or
impossible port, garbage for --port. Each is one ``error:`` line and exit status 2, never a
traceback, and no server is started."""

from __future__ import annotations

import socket
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.cli import build_parser, main


def test_missing_ui_extra_says_how_to_install(monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "panel", None)  # import panel raises ImportError
    assert main(["ui", "--no-browser"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: hwsim ui needs the UI extra: pip install 'hwsim[ui]'")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_options_parse() -> None:
    a = build_parser().parse_args(["ui", "--port", "8123", "--no-browser"])
    assert (a.port, a.no_browser, a.address) == (8123, True, "127.0.0.1")
    a = build_parser().parse_args(["ui"])
    assert (a.port, a.no_browser) == (5006, False)


def test_port_in_use_is_one_line(capsys) -> None:
    pytest.importorskip("panel")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["ui", "--port", str(port), "--no-browser"]) == 2
    err = capsys.readouterr().err
    assert f"error: --port {port}: cannot listen on 127.0.0.1:{port}" in err
    assert len(err.strip().splitlines()) == 1


def test_port_out_of_range(capsys) -> None:
    pytest.importorskip("panel")
    assert main(["ui", "--port", "70000", "--no-browser"]) == 2
    assert "error: --port 70000: expected a TCP port in [0, 65535]" in capsys.readouterr().err


def _is_valid_port(text: str) -> bool:
    try:
        return 0 <= int(text) <= 65535
    except ValueError:
        return False


@settings(max_examples=60, deadline=None)
@given(st.one_of(st.integers(65536, 10**30).map(str), st.integers(-10**9, -1).map(str),
                 st.text(max_size=20)).filter(lambda t: not _is_valid_port(t)))
def test_fuzz_port_never_starts_a_server_or_a_traceback(text) -> None:
    """Anything but a port number in [0, 65535] is refused before a server starts."""
    def serve(*_a, **_k):
        raise AssertionError(f"--port={text!r} started a server")

    with pytest.MonkeyPatch.context() as mp:
        if _has_panel():
            import panel

            mp.setattr(panel, "serve", serve)
        try:
            rc = main(["ui", f"--port={text}", "--no-browser"])
        except SystemExit as e:  # argparse usage error (status 2)
            rc = e.code
    assert rc == 2


def _has_panel() -> bool:
    import importlib.util

    return importlib.util.find_spec("panel") is not None
