"""``hwsim ui``: an interactive what-if page over the Python API.

:mod:`simulator.ui.model` is the compute layer (a scenario in; numbers, tables and plot data
out; no UI framework imported). :mod:`simulator.ui.app` lays it out as a Panel page; Panel and
Bokeh come with the optional extra, ``pip install 'hwsim[ui]'``.
"""

from __future__ import annotations

__all__ = ["INSTALL_HINT"]

#: what to do when the page's framework is missing
INSTALL_HINT = "hwsim ui needs the UI extra: pip install 'hwsim[ui]'"
