"""Small-image CNNs: CIFAR ResNets (3x3 stem, no max-pool) and LeNet-5 for MNIST."""

from __future__ import annotations

import math

import pytest
import yaml

from simulator import simulate
from simulator.cli import main
from workloads.errors import WorkloadError
from workloads.importers.hf_config import LeNetSpec, ResNetSpec, parse_config
from workloads.ops import Conv2d, MatMul, Pool
from workloads.transforms.walk import ops_with_counts
from workloads.zoo import build, count_params, list_models, load_config

SMALL = ["resnet56", "resnet18-cifar", "lenet5"]

# Tolerances against the YAMLs' published figures. Params: He et al. round ResNet-56 to "0.85M"
# (2 significant figures, +-0.6%); the other two are exact counts of reference code. MACs: the
# 0.56G of ResNet-18-CIFAR is rounded to 2 significant figures and comes from profilers
# (thop/ptflops) that also count batchnorm/ReLU (~0.2%), so 2% covers both; ours counts the
# conv and fc multiply-accumulates only.
PARAMS_REL = 0.01
MACS_REL = 0.02


def _macs(graph) -> float:
    return graph.flops().matrix / 2


def _cfg(name: str, **changes) -> dict:
    return {**load_config(name), **changes}


@pytest.mark.parametrize("name", SMALL)
def test_params_match_published(name):
    cfg = load_config(name)
    analytic = count_params(cfg)
    assert analytic == pytest.approx(cfg["published_params"], rel=PARAMS_REL)
    g = build(name)
    assert g.params() == pytest.approx(analytic, rel=1e-12)  # graph and analytic code agree
    assert g.meta["params"] == analytic


def test_exact_counts_of_the_reference_networks():
    assert count_params(load_config("resnet56")) == 853_018       # option-A shortcuts
    assert count_params(load_config("resnet18-cifar")) == 11_173_962
    assert count_params(load_config("lenet5")) == 61_706


@pytest.mark.parametrize("name", SMALL)
def test_macs_match_published_at_the_native_size(name):
    cfg = load_config(name)
    g = build(name)
    assert g.meta["image_size"] == cfg["image_size"] == 32
    assert _macs(g) == pytest.approx(cfg["published_macs"], rel=MACS_REL)


def test_lenet_macs_by_layer():
    g = build("lenet5", batch=3)
    macs = {name: _macs_of(op) for name, op in _named(g)}
    assert macs["conv1"] == 3 * 28 * 28 * 6 * 25
    assert macs["conv2"] == 3 * 10 * 10 * 16 * 6 * 25
    assert (macs["fc1"], macs["fc2"], macs["fc3"]) == (3 * 400 * 120, 3 * 120 * 84, 3 * 84 * 10)


def _named(graph):
    return [(n, d["item"]) for n, d in graph.g.nodes(data=True)]


def _macs_of(op) -> float:
    return op.flops().matrix / 2


def test_cifar_stem_keeps_32x32_and_does_over_10x_the_work_of_the_imagenet_stem(tmp_path):
    cifar = build("resnet18-cifar")
    imagenet = build(_write_cfg(tmp_path, _cfg("resnet18-cifar", stem_type="imagenet")))
    assert _macs(cifar) > 10 * _macs(imagenet)
    # the ImageNet stem: 7x7/2 conv and a 3x3/2 max-pool leave 8x8 for stage 1
    stem = dict(_named(imagenet))["stem.conv"]
    assert (stem.r, stem.stride, stem.p) == (7, 2, 16)
    assert any(isinstance(op, Pool) and op.mode == "max" for _, op in _named(imagenet))
    # the CIFAR stem: one 3x3/1 conv, no max-pool
    stem = dict(_named(cifar))["stem.conv"]
    assert (stem.r, stem.stride, stem.p) == (3, 1, 32)
    assert not any(isinstance(op, Pool) and op.mode == "max" for _, op in _named(cifar))
    # the shipped ImageNet resnet18 at 32x32 is this net with a 1000-class classifier
    assert _macs(build("resnet18", image_size=32)) == _macs(imagenet) + 512 * (1000 - 10)


def _write_cfg(folder, cfg: dict) -> str:
    path = folder / "model.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return str(path)


def test_imagenet_models_are_unchanged():
    for name in ("resnet18", "resnet50"):
        spec = parse_config(load_config(name))
        assert (spec.stem_type, spec.shortcut, spec.image_size) == ("imagenet", "projection", 224)
        assert build(name).meta["image_size"] == 224


def test_zero_pad_shortcut_has_no_projection_convs():
    g = build("resnet56")
    convs = [op for op, _ in ops_with_counts(g) if isinstance(op, Conv2d)]
    assert all(op.r == 3 for op in convs)  # no 1x1 downsample convs
    assert sum(n for op, n in ops_with_counts(g) if isinstance(op, Conv2d)) == 1 + 6 * 9
    projection = count_params(_cfg("resnet56", shortcut="projection"))
    assert projection - 853_018 == (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)


def test_lenet_is_a_cnn_and_trains():
    assert isinstance(parse_config(load_config("lenet5")), LeNetSpec)
    assert isinstance(parse_config(load_config("resnet56")), ResNetSpec)
    for name in SMALL:
        fwd, train = build(name, batch=4), build(name, phase="train", batch=4)
        assert train.meta["phase"] == "train" and train.meta["family"] == "cnn"
        assert train.params() == pytest.approx(fwd.params(), rel=1e-9)
        assert train.flops().matrix == pytest.approx(3 * fwd.flops().matrix, rel=1e-9)
        assert train.meta["optimizer_state_bytes"] == 12 * fwd.meta["params"]


def test_lenet_refuses_another_image_size_and_accepts_mnist_28_with_padding(tmp_path):
    with pytest.raises(WorkloadError, match="lenet5: image_size 28 .* 400 features"):
        build("lenet5", image_size=28)
    mnist = _cfg("lenet5", image_size=28, conv_padding=[2, 0])
    assert count_params(mnist) == 61_706
    g = build(_write_cfg(tmp_path, mnist))
    assert g.meta["image_size"] == 28 and _macs(g) == _macs(build("lenet5"))
    fc1 = [op for op, _ in ops_with_counts(g) if isinstance(op, MatMul)][0]
    assert fc1.k == 400


@pytest.mark.parametrize("changes,message", [
    ({"stem_type": "tiny"}, "stem_type': expected 'imagenet' or 'cifar'"),
    ({"shortcut": "identity"}, "shortcut': expected 'projection' or 'zero_pad'"),
])
def test_bad_resnet_fields(changes, message):
    with pytest.raises(WorkloadError, match=message):
        parse_config(_cfg("resnet56", **changes), "r.yaml")


def test_zero_pad_needs_basic_blocks():
    with pytest.raises(WorkloadError, match="'zero_pad' needs layer_type 'basic'"):
        parse_config(_cfg("resnet50", shortcut="zero_pad"), "r.yaml")


def test_bad_lenet_fields_are_reported_together():
    cfg = _cfg("lenet5", conv_padding=[0], pool="median", activation="tanh", image_size=8)
    with pytest.raises(WorkloadError) as e:
        parse_config(cfg, "l.yaml")
    msg = str(e.value)
    assert "lengths differ (2 vs 1)" in msg and "field 'pool'" in msg
    assert "field 'activation'" in msg
    with pytest.raises(WorkloadError, match="image_size': 8 is too small"):
        parse_config(_cfg("lenet5", image_size=8), "l.yaml")
    with pytest.raises(WorkloadError, match="conv_padding': expected a list of integers >= 0"):
        parse_config(_cfg("lenet5", conv_padding=[-1, 0]), "l.yaml")


def test_listed_with_provenance():
    models = {m.name: m for m in list_models()}
    for name in SMALL:
        m = models[name]
        assert m.family == "cnn" and m.source and m.description and m.published_params


# -- end to end: simulator API and CLI ------------------------------------------------------------

@pytest.mark.parametrize("name,arch,kw", [
    ("lenet5", "h100-sxm", {}),
    ("resnet56", "cpu-host", {"dtype": "fp32"}),
    ("resnet18-cifar", "tpu-v4", {"batch": 64, "phase": "train"}),
    ("lenet5", "tpu-v4", {"phase": "train", "batch": 32}),
])
def test_simulate(name, arch, kw):
    r = simulate(name, arch, **kw)
    assert r.latency_s > 0 and math.isfinite(r.latency_s)
    assert r.energy_j > 0 and math.isfinite(r.energy_j)


def test_cli_runs_lenet_and_lists_the_small_cnns(capsys):
    assert main(["run", "--workload", "lenet5", "--arch", "tpu-v4"]) == 0
    assert "conv2d" in capsys.readouterr().out
    assert main(["workloads"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in SMALL)
