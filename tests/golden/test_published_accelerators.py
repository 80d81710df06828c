"""Published accelerator measurements the systolic model must land near (issue 13).

Eyeriss (Chen et al., ISSCC 2016 / JSSC 2017, abstract and chip summary): the five AlexNet
convolution layers at batch 4 run at 34.7 frames/s (the paper rounds to 35) and 278 mW at
200 MHz, 666 M MACs per frame. The mapper runs Eyeriss's row-stationary dataflow as weight
stationary (the spec says so), so tolerances are wide: 25% on frame rate and power.
"""

from __future__ import annotations

import pytest

from simulator.api import simulate
from workloads.graph import WorkloadGraph
from workloads.ops import Conv2d

#: AlexNet (Krizhevsky et al. 2012) convolution layers with the original two-group split
ALEXNET_CONV = [
    ("conv1", dict(c=3, h=227, w=227, k=96, r=11, s=11, stride=4)),
    ("conv2", dict(c=96, h=27, w=27, k=256, r=5, s=5, pad=2, groups=2)),
    ("conv3", dict(c=256, h=13, w=13, k=384, r=3, s=3, pad=1)),
    ("conv4", dict(c=384, h=13, w=13, k=384, r=3, s=3, pad=1, groups=2)),
    ("conv5", dict(c=384, h=13, w=13, k=256, r=3, s=3, pad=1, groups=2)),
]


def alexnet_conv(batch: int) -> WorkloadGraph:
    g = WorkloadGraph("alexnet-conv", meta={"batch": batch, "samples": batch})
    prev: list[str] = []
    for name, kw in ALEXNET_CONV:
        prev = [g.add_op(name, Conv2d(n=batch, dtype="fp16", **kw), inputs=prev)]
    return g


def test_alexnet_conv_macs_match_the_paper():
    r = simulate(alexnet_conv(4), "eyeriss")
    assert r.flops / 2 / 4 == pytest.approx(666e6, rel=0.01)


def test_eyeriss_alexnet_conv_frame_rate_and_power():
    r = simulate(alexnet_conv(4), "eyeriss")
    fps = 4 / r.latency_s
    assert fps == pytest.approx(34.7, rel=0.25), fps
    assert r.avg_power_w == pytest.approx(0.278, rel=0.25), r.avg_power_w
