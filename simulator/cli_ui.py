"""``hwsim ui``: serve the interactive what-if page (:mod:`simulator.ui.app`) locally.

Thin: checks the optional UI dependency and the port, then hands the page to Panel's server.
"""

from __future__ import annotations

import argparse
import socket
from typing import Any

from simulator.errors import HwsimError
from simulator.ui import INSTALL_HINT

__all__ = ["add_ui_parser", "cmd_ui"]


def _require_panel() -> Any:
    """The ``panel`` module, or a one-line error saying how to install it."""
    try:
        import panel
    except ImportError as e:
        raise HwsimError(f"{INSTALL_HINT} (import failed: {e})") from None
    return panel


def _check_port(address: str, port: int) -> None:
    """Fail in one line, before Panel starts, if ``port`` is taken on ``address``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((address, port))
        except OSError as e:
            raise HwsimError(f"--port {port}: cannot listen on {address}:{port} "
                             f"({e.strerror or e}); pick another port") from None


def cmd_ui(a: argparse.Namespace) -> int:
    try:
        return _serve(a)
    except KeyboardInterrupt:  # Ctrl-C, while Panel loads or while it serves: no traceback
        print("hwsim ui: stopped", flush=True)
        return 130


def _serve(a: argparse.Namespace) -> int:
    pn = _require_panel()
    from simulator.ui.app import create_app

    if not 0 <= a.port <= 65535:
        raise HwsimError(f"--port {a.port}: expected a TCP port in [0, 65535]")
    if a.port == 0:  # a free port chosen now, so the address printed is the real one
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((a.address, 0))
            a.port = s.getsockname()[1]
    else:
        _check_port(a.address, a.port)
    origins = [f"{h}:{a.port}" for h in ("localhost", "127.0.0.1", a.address)]
    print(f"hwsim ui: http://localhost:{a.port}/ (Ctrl-C to stop)", flush=True)
    pn.serve({"/": create_app}, port=a.port, address=a.address, websocket_origin=origins,
             show=not a.no_browser, title="hwsim what-if", threaded=False, verbose=False)
    return 0


def add_ui_parser(sub: Any, port_type: Any) -> None:
    """Register ``ui`` on the CLI's subparsers (``port_type``: the CLI's non-negative int)."""
    p = sub.add_parser("ui", help="interactive what-if page in the browser (needs "
                       "pip install 'hwsim[ui]')")
    p.add_argument("--port", type=port_type, default=5006,
                   help="TCP port to serve on (default 5006)")
    p.add_argument("--address", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--no-browser", dest="no_browser", action="store_true",
                   help="do not open a browser tab")
    p.set_defaults(fn=cmd_ui)
