"""ResNet builder (He et al. 2015, "v1.5" strides as in torchvision and HF ``microsoft/resnet-*``).

Stem (``stem_type`` in the config, never guessed from the image size):

- ``imagenet`` (default; every HF/torchvision ResNet): 7x7/2 conv + batchnorm + ReLU, 3x3/2
  max-pool, so a 224x224 image reaches the first stage at 56x56;
- ``cifar`` (He et al. sec. 4.2, ResNet-20/32/44/56/110; kuangliu/pytorch-cifar ResNet-18):
  3x3/1 conv + batchnorm + ReLU and no pool, so a 32x32 image stays 32x32. An ImageNet stem on
  a 32x32 image leaves 8x8 after the stem and does ~1/15 of the MACs (ResNet-18), which is why
  the CIFAR configs must say ``stem_type: cifar``.

Stages of basic (two 3x3 convs) or bottleneck (1x1 -> 3x3 -> 1x1, width/4 inside) blocks; the
first block of a stage downsamples (stride 2 on its 3x3 conv, except stage 1). Where the shape
changes the shortcut is a 1x1 projection conv + batchnorm (``shortcut: projection``, option B)
or the strided input padded with zero channels (``shortcut: zero_pad``, option A of He et al.,
used by their CIFAR nets: no parameters, and modelled as free -- the residual add reads the
block input directly). The remaining identical blocks of a stage are one repeated block.
Global average pool, then a fully connected classifier with bias.
"""

from __future__ import annotations

from dataclasses import dataclass

from workloads.graph import WorkloadGraph
from workloads.importers.hf_config import ResNetSpec
from workloads.ops import Conv2d, Elementwise, MatMul, Norm, Pool
from workloads.zoo.options import BuildOptions

__all__ = ["build_resnet", "resnet_params"]


#: stem_type -> (conv kernel, conv stride, max-pool after it)
_STEMS = {"imagenet": (7, 2, True), "cifar": (3, 1, False)}


def _block_params(spec: ResNetSpec, c_in: int, width: int, project: bool) -> int:
    if spec.block == "bottleneck":
        mid = width // 4
        p = c_in * mid + 9 * mid * mid + mid * width + 2 * (mid + mid + width)
    else:
        p = 9 * c_in * width + 9 * width * width + 2 * (width + width)
    return p + (c_in * width + 2 * width if project and spec.shortcut == "projection" else 0)


def resnet_params(spec: ResNetSpec) -> float:
    """Analytic parameter count: conv weights, batchnorm scale and shift, fc weight and bias."""
    k = _STEMS[spec.stem_type][0]
    p = spec.channels * spec.stem * k * k + 2 * spec.stem
    c = spec.stem
    for i, (width, depth) in enumerate(zip(spec.widths, spec.depths, strict=True)):
        stride = 2 if i > 0 or spec.downsample_in_first_stage else 1
        for j in range(depth):
            p += _block_params(spec, c, width, j == 0 and (stride != 1 or c != width))
            c = width
    return float(p + c * spec.num_labels + spec.num_labels)


@dataclass
class _Shape:
    c: int
    h: int
    w: int


class _Net:
    """Adds conv/bn/relu chains to one graph while tracking the activation shape."""

    def __init__(self, graph: WorkloadGraph, o: BuildOptions):
        self.g, self.o = graph, o

    def conv_bn(self, name: str, x: _Shape, inputs: list[str], k: int, r: int, stride: int,
                relu: bool) -> tuple[str, _Shape]:
        o = self.o
        conv = Conv2d(n=o.batch, c=x.c, h=x.h, w=x.w, k=k, r=r, s=r, stride=stride,
                      pad=r // 2, dtype=o.dtype, weight_dtype=o.weight_dtype)
        out = _Shape(k, conv.p, conv.q)
        last = self.g.add_op(f"{name}.conv", conv, inputs)
        last = self.g.add_op(f"{name}.bn", Norm(norm="batchnorm", rows=o.batch * out.h * out.w,
                                                 cols=k, dtype=o.dtype), [last])
        if relu:
            last = self.relu(f"{name}.relu", out, [last])
        return last, out

    def relu(self, name: str, x: _Shape, inputs: list[str]) -> str:
        return self.g.add_op(name, Elementwise(fn="relu", numel=self.o.batch * x.c * x.h * x.w,
                                               dtype=self.o.dtype), inputs)

    def block(self, spec: ResNetSpec, prefix: str, x: _Shape, inputs: list[str], width: int,
              stride: int) -> tuple[str, _Shape]:
        """One residual block; ``inputs=[]`` inside a repeated block (the entry feeds it)."""
        if spec.block == "bottleneck":
            a, s = self.conv_bn(f"{prefix}conv1", x, inputs, width // 4, 1, 1, True)
            a, s = self.conv_bn(f"{prefix}conv2", s, [a], width // 4, 3, stride, True)
            a, s = self.conv_bn(f"{prefix}conv3", s, [a], width, 1, 1, False)
        else:
            a, s = self.conv_bn(f"{prefix}conv1", x, inputs, width, 3, stride, True)
            a, s = self.conv_bn(f"{prefix}conv2", s, [a], width, 3, 1, False)
        skip = list(inputs)
        if (stride != 1 or x.c != width) and spec.shortcut == "projection":
            d, _ = self.conv_bn(f"{prefix}downsample", x, inputs, width, 1, stride, False)
            skip = [d]
        add = self.g.add_op(f"{prefix}add", Elementwise(fn="add", numel=self.o.batch * s.c * s.h
                                                        * s.w, dtype=self.o.dtype), [a, *skip])
        return self.relu(f"{prefix}relu", s, [add]), s


def build_resnet(spec: ResNetSpec, o: BuildOptions) -> WorkloadGraph:
    """ResNet forward graph for ``o.batch`` images of ``o.image_size`` squared."""
    g = WorkloadGraph(o.model, o.phase)
    net = _Net(g, o)
    x = _Shape(spec.channels, o.image_size, o.image_size)
    kernel, stride, max_pool = _STEMS[spec.stem_type]
    last, x = net.conv_bn("stem", x, [], spec.stem, kernel, stride, True)
    if max_pool:
        pool = Pool(mode="max", n=o.batch, c=x.c, h=x.h, w=x.w, r=3, s=3, stride=2, pad=1,
                    dtype=o.dtype)
        last = g.add_op("stem.maxpool", pool, [last])
        x = _Shape(x.c, pool.p, pool.q)
    for i, (width, depth) in enumerate(zip(spec.widths, spec.depths, strict=True)):
        stride = 2 if i > 0 or spec.downsample_in_first_stage else 1
        last, x = net.block(spec, f"layer{i + 1}.0.", x, [last], width, stride)
        if depth > 1:
            blk = WorkloadGraph(f"{o.model}.layer{i + 1}.block", o.phase)
            _Net(blk, o).block(spec, "", x, [], width, 1)
            last = g.add_repeat(f"layer{i + 1}.rest", blk, depth - 1, [last])
    last = g.add_op("avgpool", Pool(mode="avg", n=o.batch, c=x.c, h=x.h, w=x.w, r=x.h, s=x.w,
                                    dtype=o.dtype), [last])
    g.add_op("fc", MatMul(m=o.batch, n=spec.num_labels, k=x.c, weight=True, bias=True,
                          dtype=o.dtype, weight_dtype=o.weight_dtype), [last])
    g.meta["params_per_device"] = g.params()
    g.meta["weight_bytes"] = g.weight_bytes()
    return g
