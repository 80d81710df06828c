"""Edge or cloud? One inference run on the device, or sent over a network to a cloud part.

``edge_vs_cloud(workload, edge_arch, cloud_arch, network)`` returns one :class:`Option` per
choice: the edge part running the request at batch 1, and the cloud part reached over each
:class:`Network`. Queueing is left aside: a cloud request is assumed to find its batch ready
(no wait to fill it, no wait behind other batches).

Model (every quantity in SI units; bytes and bits/s)
----------------------------------------------------
Edge option
    latency = the edge run's latency; device energy = the edge run's energy (what the battery
    pays); cloud energy = 0; cost = the device price spread over its lifetime at
    ``edge_utilization`` (the fraction of its life spent on inference) + electricity at PUE 1
    (:func:`simulator.cost.dollars.run_cost`, ``tco`` mode).
Cloud option
    latency = uplink_bytes x 8 / uplink_bps + rtt_s + cloud run of a batch of ``cloud_batch``
    + downlink_bytes x 8 / downlink_bps.
    device energy = uplink_bytes x ``radio_energy_j_per_byte`` + downlink_bytes x
    ``radio_rx_energy_j_per_byte`` + (``radio_active_power_w`` + the edge part's idle power,
    its spec's ``power.static``) x latency + ``radio_tail_j``.
    cloud energy = the cloud run's energy (devices + the system's overhead, if the spec has
    one) / ``cloud_batch``.
    cost = $/hour x (batch run time / ``cloud_batch``) / ``cloud_utilization`` (the provider
    bills idle hours too; electricity is in the price).

Payloads (estimates; each overridable)
--------------------------------------
Image (CNN): ``image_size^2 x channels`` uint8 bytes / ``image_compression`` (default 10, a
JPEG of a natural photo at quality ~90 is roughly 10:1; ``image_compression=1`` sends it raw);
answer ``RESULT_BYTES`` (top-5 labels and scores as JSON). Text (decoder): ``prompt_tokens x
bytes_per_token`` up (4 B/token: about 4 characters of English text per token, UTF-8),
``gen_tokens x bytes_per_token`` down. Encoder: ``seq x bytes_per_token`` up, ``RESULT_BYTES``
down. Protocol headers, TLS and retransmissions are not counted.

An LLM request is a prefill of ``prompt_tokens`` plus ``gen_tokens`` decode steps, each costed
as the step at the mean context ``prompt_tokens + gen_tokens / 2`` (decode time is close to
linear in context, so this equals the sum to first order). The answer is sent after the last
token (no streaming).

Network figures: see :data:`PRESETS` and the sources in their ``source`` fields.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from simulator.arch.spec import System
from simulator.cost.dollars import CostOptions, run_cost, system_hourly_rate
from simulator.errors import CapacityError, HwsimError

__all__ = ["Network", "Option", "Payload", "PRESETS", "edge_vs_cloud", "payload_for",
           "network_time_s", "get_network", "with_rates"]

#: bytes of a classification answer: top-5 labels and scores as JSON (estimate)
RESULT_BYTES = 256

_HUANG = ("Huang et al., 'A Close Examination of Performance and Power Characteristics of 4G "
          "LTE Networks', MobiSys 2012, Table 4 power model P = a_u*t_u + a_d*t_d + beta "
          "(mW, Mbps)")


@dataclass(frozen=True)
class Network:
    """A link between the device and the cloud.

    ``uplink_bps``/``downlink_bps`` in bits/s; ``rtt_s`` the round trip (request out, answer
    back) in seconds; ``radio_energy_j_per_byte`` the device's marginal transmit energy per
    byte sent, ``radio_rx_energy_j_per_byte`` per byte received; ``radio_active_power_w`` the
    radio's base power while connected and active (beta in Huang et al.);
    ``radio_tail_j`` energy of the radio's tail after the exchange (0: requests back to back,
    the tail is shared; an isolated LTE request pays ~1.06 W x 11.6 s = 12 J, Huang et al.).
    """

    name: str = "custom"
    uplink_bps: float = 20e6
    downlink_bps: float = 50e6
    rtt_s: float = 0.02
    radio_energy_j_per_byte: float = 283.17e-3 / 1e6 * 8  # Wi-Fi uplink, Huang et al. 2012
    radio_rx_energy_j_per_byte: float = 137.01e-3 / 1e6 * 8
    radio_active_power_w: float = 0.13286
    radio_tail_j: float = 0.0
    source: str = ""

    def __post_init__(self) -> None:
        for f in ("uplink_bps", "downlink_bps"):
            v = getattr(self, f)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise HwsimError(f"network {self.name}: {f} must be a positive finite number "
                                 f"of bits/s, got {v!r}")
        for f in ("rtt_s", "radio_energy_j_per_byte", "radio_rx_energy_j_per_byte",
                  "radio_active_power_w", "radio_tail_j"):
            v = getattr(self, f)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise HwsimError(f"network {self.name}: {f} must be a finite number >= 0, "
                                 f"got {v!r}")


def _mw_per_mbps(mw: float) -> float:
    """J per byte from a power model slope in mW per Mbps: mW/Mbps = nJ/bit."""
    return mw * 1e-3 / 1e6 * 8


#: Named networks. Energy slopes from Huang et al. (MobiSys 2012) for Wi-Fi and LTE; the 5G
#: figures are estimates (see ``source``).
PRESETS: dict[str, Network] = {
    "wifi": Network(
        "wifi", uplink_bps=20e6, downlink_bps=50e6, rtt_s=0.020,
        radio_energy_j_per_byte=_mw_per_mbps(283.17), radio_rx_energy_j_per_byte=_mw_per_mbps(
            137.01), radio_active_power_w=0.13286,
        source=f"energy: {_HUANG}, Wi-Fi a_u 283.17, a_d 137.01 mW/Mbps, beta 132.86 mW; "
               "rates 20 Mbit/s up, 50 down and RTT 20 ms: estimates of a home Wi-Fi link"),
    "lte": Network(
        "lte", uplink_bps=6e6, downlink_bps=13e6, rtt_s=0.070,
        radio_energy_j_per_byte=_mw_per_mbps(438.39), radio_rx_energy_j_per_byte=_mw_per_mbps(
            51.97), radio_active_power_w=1.28804,
        source=f"energy: {_HUANG}, LTE a_u 438.39, a_d 51.97 mW/Mbps, beta 1288.04 mW; "
               "rates: the paper's median LTE throughput, 6 Mbit/s up and 13 down; RTT 70 ms "
               "(estimate, the paper's LTE RTTs are 60-80 ms)"),
    "5g": Network(
        "5g", uplink_bps=50e6, downlink_bps=200e6, rtt_s=0.030,
        radio_energy_j_per_byte=_mw_per_mbps(438.39) / 2,
        radio_rx_energy_j_per_byte=_mw_per_mbps(51.97) / 2, radio_active_power_w=2.0,
        source="ESTIMATE (sub-6 GHz 5G): energy per bit half of LTE's and a base power of "
               "2 W, after Narayanan et al., 'A Variegated Look at 5G in the Wild', SIGCOMM "
               "2021 (5G more energy-efficient per bit than LTE at high rates, higher base "
               "power) and Signals Research Group's 2019 5G NR energy study; rates 50 up, "
               "200 down, RTT 30 ms: estimates"),
}


def get_network(name: str) -> Network:
    try:
        return PRESETS[name.strip().lower()]
    except KeyError:
        raise HwsimError(f"unknown network {name!r}; expected one of "
                         f"{', '.join(PRESETS)}") from None


def network_time_s(network: Network, up_bytes: float, down_bytes: float) -> float:
    """Seconds on the wire: ``up x 8 / uplink_bps + rtt + down x 8 / downlink_bps``."""
    return (up_bytes * 8 / network.uplink_bps + network.rtt_s
            + down_bytes * 8 / network.downlink_bps)


@dataclass(frozen=True)
class Payload:
    """What one request sends and receives, in bytes, and what the model runs on."""

    up_bytes: float
    down_bytes: float
    family: str
    prompt_tokens: int = 0
    gen_tokens: int = 0
    note: str = ""


def payload_for(workload: str, *, prompt_tokens: int = 128, gen_tokens: int = 128,
                bytes_per_token: float = 4.0, image_compression: float = 10.0,
                image_size: int | None = None, seq: int | None = None) -> Payload:
    """The request's payload for a shipped model name or config path (module docstring)."""
    from workloads.zoo.api import load_config, parse_config

    for name, v in (("prompt_tokens", prompt_tokens), ("gen_tokens", gen_tokens)):
        if not isinstance(v, int) or v < 1:
            raise HwsimError(f"{name}: expected a positive whole number, got {v!r}")
    for name, v in (("bytes_per_token", bytes_per_token),
                    ("image_compression", image_compression)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise HwsimError(f"{name}: expected a positive finite number, got {v!r}")
    spec = parse_config(load_config(workload), str(workload))
    family = getattr(spec, "family", "")
    if family == "cnn":
        size = image_size or getattr(spec, "image_size", 224)
        raw = size * size * getattr(spec, "channels", 3)
        return Payload(raw / image_compression, RESULT_BYTES, family,
                       note=f"{size}x{size}x{getattr(spec, 'channels', 3)} uint8 image "
                            f"({raw:,} B) / {image_compression:g} compression up, "
                            f"{RESULT_BYTES} B answer down")
    if family == "decoder":
        return Payload(prompt_tokens * bytes_per_token, gen_tokens * bytes_per_token, family,
                       prompt_tokens, gen_tokens,
                       note=f"{prompt_tokens} prompt tokens up, {gen_tokens} generated down, "
                            f"{bytes_per_token:g} B/token")
    if family == "encoder":
        n = seq or 128
        return Payload(n * bytes_per_token, RESULT_BYTES, family, prompt_tokens=n,
                       note=f"{n} tokens x {bytes_per_token:g} B up, {RESULT_BYTES} B down")
    raise HwsimError(f"{workload}: no payload model for a {family or 'this'} model "
                     "(edge-vs-cloud knows cnn, encoder and decoder models)")


@dataclass(frozen=True)
class Option:
    """One way to serve a request; ``error`` says why it cannot (then the numbers are NaN)."""

    where: str  # "edge" | "cloud"
    arch: str
    network: str | None
    latency_s: float
    device_energy_j: float
    cloud_energy_j: float
    usd_per_million: float
    compute_s: float = math.nan
    network_s: float = 0.0
    up_bytes: float = 0.0
    down_bytes: float = 0.0
    batch: int = 1
    utilization: float = 1.0
    error: str | None = None

    @property
    def name(self) -> str:
        return f"{self.where}: {self.arch}" + (f" over {self.network}" if self.network else "")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["name"] = self.name
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in d.items()}


@dataclass(frozen=True)
class _Run:
    latency_s: float  # one batch
    energy_j: float  # one batch


def _run(workload: str, system: System, payload: Payload, batch: int, kw: dict) -> _Run:
    from simulator.api import simulate

    if payload.family != "decoder":
        if payload.family == "encoder":
            kw = {**kw, "seq": payload.prompt_tokens}
        r = simulate(workload, system, batch=batch, **kw)
        return _Run(r.latency_s, r.energy_j)
    pre = simulate(workload, system, phase="prefill", batch=batch, seq=payload.prompt_tokens,
                   **kw)
    ctx = payload.prompt_tokens + payload.gen_tokens // 2
    dec = simulate(workload, system, phase="decode", batch=batch, context=ctx, **kw)
    n = payload.gen_tokens
    return _Run(pre.latency_s + n * dec.latency_s, pre.energy_j + n * dec.energy_j)


def _nan_option(where: str, arch: str, network: str | None, err: str, batch: int,
                util: float) -> Option:
    nan = math.nan
    return Option(where, arch, network, nan, nan, nan, nan, batch=batch, utilization=util,
                  error=err)


def edge_vs_cloud(workload: str, edge_arch: str | System, cloud_arch: str | System,
                  network: Network | Sequence[Network], *, cloud_batch: int = 1,
                  edge_utilization: float = 0.1, cloud_utilization: float = 0.5,
                  prompt_tokens: int = 128, gen_tokens: int = 128,
                  bytes_per_token: float = 4.0, image_compression: float = 10.0,
                  usd_per_kwh: float = 0.10, **run_options: Any) -> list[Option]:
    """The edge option, then one cloud option per network (module docstring for the model).

    ``run_options`` are :class:`~simulator.api.RunOptions` fields (``dtype``, ``image_size``,
    ``seq`` for encoders...) applied to both runs; each part picks its natural precision
    unless ``dtype`` is given. A part that cannot run the model (capacity, precision) gives an
    option with ``error`` set, not an exception.

    ``edge_utilization``: fraction of the device's lifetime spent on inference (default 0.1,
    an estimate: the device is bought for this job and is busy a tenth of its life).
    ``cloud_utilization``: fraction of billed hours the cloud part runs batches (default 0.5).

    Raises
    ------
    HwsimError
        For a bad value (the message names it), an unknown part or model.
    """
    from simulator.api import resolve_system

    if not isinstance(cloud_batch, int) or isinstance(cloud_batch, bool) or cloud_batch < 1:
        raise HwsimError(f"cloud_batch: expected a positive whole number, got {cloud_batch!r}")
    for name, v in (("edge_utilization", edge_utilization),
                    ("cloud_utilization", cloud_utilization)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and 0 < v <= 1):
            raise HwsimError(f"{name}: expected a fraction in (0, 1], got {v!r}")
    if not (isinstance(usd_per_kwh, (int, float)) and math.isfinite(usd_per_kwh)
            and usd_per_kwh >= 0):
        raise HwsimError(f"usd_per_kwh: expected a finite number >= 0, got {usd_per_kwh!r}")
    networks = [network] if isinstance(network, Network) else list(network)
    if not networks or not all(isinstance(n, Network) for n in networks):
        raise HwsimError(f"network: expected a Network or a list of them, got {network!r}")
    payload = payload_for(workload, prompt_tokens=prompt_tokens, gen_tokens=gen_tokens,
                          bytes_per_token=bytes_per_token, image_compression=image_compression,
                          image_size=run_options.get("image_size"), seq=run_options.get("seq"))
    kw = {k: v for k, v in run_options.items() if k != "seq" or payload.family != "encoder"}
    edge = resolve_system(edge_arch)
    cloud = resolve_system(cloud_arch)
    if not system_hourly_rate(cloud):
        raise HwsimError(f"cloud part {cloud.name}: no $/hour (cost.hourly) in its spec; "
                         "choose a part with a cloud price, e.g. l4 or a100-sxm-80gb")
    out: list[Option] = []

    # -- edge: batch 1 on the device ---------------------------------------------------------
    try:
        r = _run(workload, edge, payload, 1, kw)
        c = run_cost(edge, r.latency_s, r.energy_j,
                     CostOptions(mode="tco", usd_per_kwh=usd_per_kwh, pue=1.0,
                                 utilization=edge_utilization))
        out.append(Option("edge", edge.name, None, r.latency_s, r.energy_j, 0.0, c.usd * 1e6,
                          compute_s=r.latency_s, utilization=edge_utilization))
    except (CapacityError, HwsimError, ValueError) as e:
        out.append(_nan_option("edge", edge.name, None, str(e).splitlines()[0], 1,
                               edge_utilization))

    # -- cloud: a batch on the cloud part, behind each network -------------------------------
    try:
        rc = _run(workload, cloud, payload, cloud_batch, kw)
    except (CapacityError, HwsimError, ValueError) as e:
        err = str(e).splitlines()[0]
        return out + [_nan_option("cloud", cloud.name, n.name, err, cloud_batch,
                                  cloud_utilization) for n in networks]
    per_s = rc.latency_s / cloud_batch / cloud_utilization  # billed seconds per inference
    cost = run_cost(cloud, per_s, rc.energy_j / cloud_batch, CostOptions(mode="cloud"))
    idle_w = edge.device.power.static_w * edge.count
    for n in networks:
        net_s = network_time_s(n, payload.up_bytes, payload.down_bytes)
        latency = net_s + rc.latency_s
        device_j = (payload.up_bytes * n.radio_energy_j_per_byte
                    + payload.down_bytes * n.radio_rx_energy_j_per_byte
                    + (n.radio_active_power_w + idle_w) * latency + n.radio_tail_j)
        out.append(Option("cloud", cloud.name, n.name, latency, device_j,
                          rc.energy_j / cloud_batch, cost.usd * 1e6, compute_s=rc.latency_s,
                          network_s=net_s, up_bytes=payload.up_bytes,
                          down_bytes=payload.down_bytes, batch=cloud_batch,
                          utilization=cloud_utilization))
    return out


def with_rates(network: Network, *, uplink_bps: float | None = None,
               downlink_bps: float | None = None, rtt_s: float | None = None) -> Network:
    """``network`` with some rates replaced (None keeps the preset's), its name marked ``*``."""
    changes = {k: v for k, v in (("uplink_bps", uplink_bps), ("downlink_bps", downlink_bps),
                                 ("rtt_s", rtt_s)) if v is not None}
    if not changes:
        return network
    return replace(network, name=f"{network.name}*", **changes)
