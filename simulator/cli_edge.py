"""``hwsim edge-vs-cloud``: run a request on the edge part or send it to a cloud part.

Thin: :mod:`simulator.edge_cloud` holds the model; this module parses the options and prints
one row per option (latency, device energy, cloud energy, $ per million inferences).
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from simulator.cli_format import dumps
from simulator.cli_format import table as _table
from simulator.units import format_quantity as fq

__all__ = ["add_edge_parser", "cmd_edge_vs_cloud"]


def _quantity(kind: str, scale: float = 1.0):
    """argparse type: a quantity of ``kind`` ("bandwidth" -> bits/s, "time" -> s) > 0."""
    def parse(text: str) -> float:
        from simulator.units import UnitError, parse_quantity

        try:
            v = parse_quantity(text, kind) * scale
        except (UnitError, ValueError, TypeError) as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        if not (math.isfinite(v) and v >= 0) or (kind == "bandwidth" and v <= 0):
            raise argparse.ArgumentTypeError(f"expected a positive {kind}, got {text!r}")
        return v
    parse.__name__ = kind
    return parse


def _fraction(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}") from None
    if not (math.isfinite(v) and 0 < v <= 1):
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")
    return v


def _networks(text: str) -> list[str]:
    from simulator.edge_cloud import PRESETS

    names = [x.strip().lower() for x in text.split(",") if x.strip()]
    bad = [n for n in names if n not in PRESETS]
    if not names or bad:
        raise argparse.ArgumentTypeError(
            f"expected one or more of {', '.join(PRESETS)} (comma-separated), got {text!r}")
    return names


def add_edge_parser(sub: Any, pos_int) -> None:
    """Register ``edge-vs-cloud`` on the CLI's subparsers."""
    p = sub.add_parser(
        "edge-vs-cloud", help="one request on an edge part, or over a network to a cloud part",
        description="Per option (the edge part at batch 1; the cloud part over each network "
                    "at --batch-cloud): end-to-end latency, device energy per inference "
                    "(battery: the run, or radio + idle while waiting), cloud energy per "
                    "inference, and $ per million inferences. Queueing is left aside.")
    p.add_argument("--workload", default="resnet50",
                   help="cnn (an image is sent), encoder or decoder LLM (a prompt is sent, "
                        "generated tokens come back); default resnet50")
    p.add_argument("--edge", default="jetson-orin-nano-8gb", help="edge part (default "
                   "jetson-orin-nano-8gb)")
    p.add_argument("--cloud", default="l4", help="cloud part with a $/hour (default l4)")
    p.add_argument("--network", type=_networks, default=["wifi"],
                   help="wifi, lte, 5g or a comma-separated list (default wifi)")
    p.add_argument("--uplink", type=_quantity("bandwidth", 8.0), default=None, metavar="RATE",
                   help="override the uplink, e.g. 20Mbps")
    p.add_argument("--downlink", type=_quantity("bandwidth", 8.0), default=None,
                   metavar="RATE", help="override the downlink, e.g. 50Mbps")
    p.add_argument("--rtt", type=_quantity("time"), default=None, metavar="TIME",
                   help="override the round-trip time, e.g. 30ms")
    p.add_argument("--batch-cloud", dest="batch_cloud", type=pos_int, default=1,
                   help="requests the cloud part runs together (default 1)")
    p.add_argument("--edge-utilization", dest="edge_util", type=_fraction, default=0.1,
                   help="fraction of the edge device's life spent on inference, for its "
                        "amortised price (default 0.1)")
    p.add_argument("--cloud-utilization", dest="cloud_util", type=_fraction, default=0.5,
                   help="fraction of billed cloud hours spent running (default 0.5)")
    p.add_argument("--prompt-tokens", dest="prompt_tokens", type=pos_int, default=128)
    p.add_argument("--gen-tokens", dest="gen_tokens", type=pos_int, default=128)
    p.add_argument("--image-compression", dest="image_compression", type=_positive,
                   default=10.0, help="raw image bytes / bytes sent (default 10, JPEG-like; "
                                      "1 = raw)")
    p.add_argument("--dtype", default=None, help="precision on both parts (default: each "
                   "part's natural one)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(fn=cmd_edge_vs_cloud)


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return v


def cmd_edge_vs_cloud(a: argparse.Namespace) -> int:
    from simulator.edge_cloud import edge_vs_cloud, get_network, with_rates

    nets = [with_rates(get_network(n), uplink_bps=a.uplink, downlink_bps=a.downlink,
                       rtt_s=a.rtt) for n in a.network]
    kw = {"dtype": a.dtype} if a.dtype else {}
    opts = edge_vs_cloud(a.workload, a.edge, a.cloud, nets, cloud_batch=a.batch_cloud,
                         edge_utilization=a.edge_util, cloud_utilization=a.cloud_util,
                         prompt_tokens=a.prompt_tokens, gen_tokens=a.gen_tokens,
                         image_compression=a.image_compression, **kw)
    if a.json:
        print(dumps({"workload": a.workload,
                     "networks": [{k: v for k, v in vars(n).items()} for n in nets],
                     "options": [o.to_dict() for o in opts]}))
        return 0
    rows = []
    for o in opts:
        if o.error:
            rows.append([o.name, "does not run: " + o.error[:90], "", "", ""])
            continue
        rows.append([o.name, fq(o.latency_s, "s"), fq(o.device_energy_j, "J"),
                     fq(o.cloud_energy_j, "J") if o.cloud_energy_j else "0 J",
                     f"${o.usd_per_million:,.4g}"])
    print(_table(rows, ["option", "latency", "device energy", "cloud energy",
                        "$ / 1M inferences"]))
    return 0
