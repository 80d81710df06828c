"""Edge vs cloud (simulator.edge_cloud): payloads, network arithmetic, the options' sums, the
laws the model obeys, and the CLI's rows and errors."""

from __future__ import annotations

import json
import math

import pytest

from simulator.api import simulate
from simulator.arch.loader import load_arch
from simulator.cli import main
from simulator.edge_cloud import (
    PRESETS,
    RESULT_BYTES,
    Network,
    edge_vs_cloud,
    get_network,
    network_time_s,
    payload_for,
    with_rates,
)
from simulator.errors import HwsimError

EDGE, CLOUD = "jetson-orin-nano-8gb", "l4"


def test_network_time_is_bytes_over_rate_plus_rtt():
    n = Network("t", uplink_bps=8e6, downlink_bps=16e6, rtt_s=0.05)
    # 1 MB up at 8 Mbit/s = 1 s; 2 MB down at 16 Mbit/s = 1 s; + 50 ms
    assert network_time_s(n, 1e6, 2e6) == pytest.approx(2.05, rel=1e-12)
    assert network_time_s(n, 0, 0) == 0.05


def test_image_payload_is_raw_over_compression():
    p = payload_for("resnet50", image_compression=10)
    assert p.up_bytes == pytest.approx(224 * 224 * 3 / 10)
    assert p.down_bytes == RESULT_BYTES
    assert payload_for("resnet50", image_compression=1).up_bytes == 150_528


def test_text_payload_is_tokens_times_bytes():
    p = payload_for("llama3.2-1b", prompt_tokens=100, gen_tokens=50, bytes_per_token=4)
    assert (p.up_bytes, p.down_bytes, p.family) == (400, 200, "decoder")


def test_unknown_family_and_bad_values_are_one_line_errors():
    with pytest.raises(HwsimError, match="no payload model"):
        payload_for("mlp")
    with pytest.raises(HwsimError, match="cloud_batch"):
        edge_vs_cloud("resnet18", EDGE, CLOUD, PRESETS["wifi"], cloud_batch=0)
    with pytest.raises(HwsimError, match="edge_utilization"):
        edge_vs_cloud("resnet18", EDGE, CLOUD, PRESETS["wifi"], edge_utilization=0)
    with pytest.raises(HwsimError, match="no \\$/hour"):
        edge_vs_cloud("resnet18", EDGE, EDGE, PRESETS["wifi"])
    with pytest.raises(HwsimError, match="uplink_bps"):
        Network(uplink_bps=0)
    with pytest.raises(HwsimError, match="unknown network"):
        get_network("carrier-pigeon")


def test_options_are_the_sum_of_their_parts():
    net = Network("t", uplink_bps=10e6, downlink_bps=20e6, rtt_s=0.04,
                  radio_energy_j_per_byte=1e-6, radio_rx_energy_j_per_byte=5e-7,
                  radio_active_power_w=0.5, radio_tail_j=0.1)
    edge, cloud = load_arch(EDGE), load_arch(CLOUD)
    e, c = edge_vs_cloud("resnet18", edge, cloud, net, cloud_batch=4, edge_utilization=0.25,
                         cloud_utilization=0.5)
    re = simulate("resnet18", edge, batch=1)
    rc = simulate("resnet18", cloud, batch=4)
    # edge: the run's latency and energy; price over lifetime at 25% + electricity at PUE 1
    assert e.latency_s == pytest.approx(re.latency_s)
    assert e.device_energy_j == pytest.approx(re.energy_j) and e.cloud_energy_j == 0
    p = edge.device.pricing
    usd = p.price_usd / (p.lifetime_s * 0.25) * re.latency_s + re.energy_j / 3.6e6 * 0.10
    assert e.usd_per_million == pytest.approx(usd * 1e6, rel=1e-9)
    # cloud: wire time + the batch's run; radio energy + (radio + idle power) x wait + tail
    up = 224 * 224 * 3 / 10
    wire = up * 8 / 10e6 + 0.04 + RESULT_BYTES * 8 / 20e6
    assert c.network_s == pytest.approx(wire, rel=1e-12)
    assert c.latency_s == pytest.approx(wire + rc.latency_s, rel=1e-12)
    idle = edge.device.power.static_w
    dev = up * 1e-6 + RESULT_BYTES * 5e-7 + (0.5 + idle) * c.latency_s + 0.1
    assert c.device_energy_j == pytest.approx(dev, rel=1e-12)
    assert c.cloud_energy_j == pytest.approx(rc.energy_j / 4, rel=1e-12)
    hourly = cloud.device.pricing.usd_per_hour * 3600
    assert c.usd_per_million == pytest.approx(hourly / 3600 * rc.latency_s / 4 / 0.5 * 1e6,
                                              rel=1e-9)


def test_llm_is_prefill_plus_decode_at_mean_context():
    net = PRESETS["wifi"]
    _, c = edge_vs_cloud("llama3.2-1b", EDGE, CLOUD, net, prompt_tokens=64, gen_tokens=32)
    pre = simulate("llama3.2-1b", CLOUD, phase="prefill", batch=1, seq=64)
    dec = simulate("llama3.2-1b", CLOUD, phase="decode", batch=1, context=64 + 16)
    assert c.compute_s == pytest.approx(pre.latency_s + 32 * dec.latency_s, rel=1e-12)
    assert c.cloud_energy_j == pytest.approx(pre.energy_j + 32 * dec.energy_j, rel=1e-12)


def test_a_faster_network_never_makes_the_cloud_slower():
    base = PRESETS["lte"]
    last = math.inf
    for mbps in (1, 2, 5, 10, 50, 100, 1000):
        net = with_rates(base, uplink_bps=mbps * 1e6, downlink_bps=mbps * 2e6)
        c = edge_vs_cloud("resnet18", EDGE, CLOUD, net)[1]
        assert c.latency_s <= last and c.device_energy_j > 0
        last = c.latency_s


def test_batching_amortises_the_weights_of_an_llm():
    """More cloud batch lowers cloud energy and cost per inference for a decoder (weights are
    read once per step for the whole batch). Not a law for every model: MobileNet v2 on the L4
    uses more energy per image at batch 16 than at 8 (activations outgrow the L2)."""
    last_j = last_usd = math.inf
    for b in (1, 2, 4, 8, 16):
        c = edge_vs_cloud("llama3.2-1b", EDGE, CLOUD, PRESETS["wifi"], cloud_batch=b,
                          prompt_tokens=32, gen_tokens=8)[1]
        assert c.cloud_energy_j < last_j and c.usd_per_million < last_usd
        last_j, last_usd = c.cloud_energy_j, c.usd_per_million


def test_a_part_that_cannot_run_gives_an_error_row():
    opts = edge_vs_cloud("llama3-8b", EDGE, CLOUD, PRESETS["wifi"], gen_tokens=4)
    assert opts[0].error and math.isnan(opts[0].latency_s)
    assert opts[1].error is None and opts[1].latency_s > 0
    assert opts[0].to_dict()["latency_s"] is None


def test_presets_have_sources():
    for name, n in PRESETS.items():
        assert n.name == name and n.source
    assert "ESTIMATE" in PRESETS["5g"].source


def test_cli_rows_and_json(capsys):
    assert main(["edge-vs-cloud", "--workload", "resnet18", "--network", "wifi,lte",
                 "--uplink", "20Mbps", "--rtt", "30ms", "--batch-cloud", "8"]) == 0
    out = capsys.readouterr().out
    assert "edge: jetson-orin-nano-8gb" in out and "cloud: l4 over lte*" in out
    assert main(["edge-vs-cloud", "--workload", "resnet18", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert [o["where"] for o in d["options"]] == ["edge", "cloud"]
    assert d["networks"][0]["rtt_s"] == 0.02


@pytest.mark.parametrize("argv, needle", [
    (["--uplink", "fast"], "--uplink"),
    (["--rtt=-3ms"], "--rtt"),
    (["--network", "dialup"], "--network"),
    (["--batch-cloud", "0"], "--batch-cloud"),
    (["--edge-utilization", "2"], "--edge-utilization"),
])
def test_cli_bad_flags_are_usage_errors(argv, needle, capsys):
    with pytest.raises(SystemExit) as e:
        main(["edge-vs-cloud", *argv])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_cli_bad_part_is_one_line(capsys):
    assert main(["edge-vs-cloud", "--cloud", EDGE]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cloud part")
