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

Inverted-residual CNNs (:func:`build_mbconv`, ``model_type: mbconv``): MobileNetV2 (Sandler et
al. 2018), MobileNetV3 (Howard et al. 2019) and EfficientNet (Tan and Le 2019) as
torchvision builds them: stem conv, the config's block table, a 1x1 head conv, global average
pool and the classifier. A depthwise conv is ``Conv2d(groups=c)``. Activations are costed as
the nearest pointwise op the IR has: relu6 and hard swish as ``relu`` (one pass over the tensor,
as a fused clamp; the ~4 FLOP per element of ``x * relu6(x + 3) / 6`` are counted as 1), swish
as ``silu``; the squeeze-and-excitation gate as ``silu`` (sigmoid: an exp and a divide) or
``relu`` (hard sigmoid), and its channel-wise scaling as a ``mul`` over the feature map (the
IR's ``mul`` reads two full-size inputs; the second is really one value per channel). Node
names keep the true activation (``...hswish``).

YOLOv8 (:func:`build_yolo`, ``model_type: yolov8``), Ultralytics ``cfg/models/v8/yolov8.yaml``
at the config's depth and width multiples: ``Conv`` = conv (no bias) + batchnorm + SiLU; ``C2f``
= 1x1 conv to two halves, ``n`` bottlenecks (two 3x3 convs, residual in the backbone) on the
second half, 1x1 conv over all ``2 + n`` pieces; ``SPPF`` = 1x1 conv, three 5x5/1 max-pools,
1x1 conv over the four; nearest 2x upsampling (costed as a copy of its output); the decoupled
head per stride (two 3x3 ``Conv`` then a 1x1 conv with bias, for the ``4 * reg_max`` box bins
and the classes), the distribution-focal decode (softmax over ``reg_max`` bins and its fixed
1x1 conv, whose 16 weights Ultralytics counts as parameters) and the class sigmoid (as
``silu``). Concatenations and the C2f split are free (the consumer reads the pieces where
their producers wrote them, as TensorRT and TFLite lay them out); box decoding and NMS run on
the host and are not in the graph.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from workloads.graph import WorkloadGraph
from workloads.importers.hf_config import MBConvSpec, ResNetSpec, YoloSpec
from workloads.ops import Conv2d, Elementwise, MatMul, Memcpy, Norm, Pool, Softmax
from workloads.zoo.options import BuildOptions

__all__ = ["build_resnet", "resnet_params", "build_mbconv", "mbconv_params", "build_yolo",
           "yolo_params", "yolo_widths"]


#: stem_type -> (conv kernel, conv stride, max-pool after it)
_STEMS = {"imagenet": (7, 2, True), "cifar": (3, 1, False)}

#: activation or gate -> the pointwise op it is costed as (see the module docstring)
ACT_FN = {"relu": "relu", "relu6": "relu", "hswish": "relu", "silu": "silu",
          "sigmoid": "silu", "hsigmoid": "relu"}


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
                relu: bool, *, groups: int = 1, act: str | None = None) -> tuple[str, _Shape]:
        """conv (``groups``) + batchnorm + ReLU if ``relu`` (or ``act``, see ACT_FN)."""
        o = self.o
        conv = Conv2d(n=o.batch, c=x.c, h=x.h, w=x.w, k=k, r=r, s=r, stride=stride,
                      pad=r // 2, groups=groups, dtype=o.dtype, weight_dtype=o.weight_dtype)
        out = _Shape(k, conv.p, conv.q)
        last = self.g.add_op(f"{name}.conv", conv, inputs)
        last = self.g.add_op(f"{name}.bn", Norm(norm="batchnorm", rows=o.batch * out.h * out.w,
                                                 cols=k, dtype=o.dtype), [last])
        if act is not None:
            last = self.act(f"{name}.{act}", act, out, [last])
        elif relu:
            last = self.relu(f"{name}.relu", out, [last])
        return last, out

    def relu(self, name: str, x: _Shape, inputs: list[str]) -> str:
        return self.g.add_op(name, Elementwise(fn="relu", numel=self.o.batch * x.c * x.h * x.w,
                                               dtype=self.o.dtype), inputs)

    def act(self, name: str, act: str, x: _Shape, inputs: list[str]) -> str:
        return self.g.add_op(name, Elementwise(fn=ACT_FN[act], numel=self.o.batch * x.c * x.h
                                               * x.w, dtype=self.o.dtype), inputs)

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


# -- inverted-residual CNNs: MobileNetV2/V3, EfficientNet ------------------------------------
def mbconv_params(spec: MBConvSpec) -> float:
    """Analytic parameter count: conv weights, batchnorm scale and shift, squeeze-and-excitation
    and classifier weights and biases."""
    p = spec.channels * spec.stem * 9 + 2 * spec.stem
    c = spec.stem
    for b in spec.blocks:
        if b.expanded != c:
            p += c * b.expanded + 2 * b.expanded
        p += b.expanded * b.kernel * b.kernel + 2 * b.expanded
        if b.se:
            p += 2 * b.expanded * b.se + b.se + b.expanded
        p += b.expanded * b.out + 2 * b.out
        c = b.out
    p += c * spec.head + 2 * spec.head
    sizes = (spec.head, *spec.classifier, spec.num_labels)
    p += sum(a * n + n for a, n in zip(sizes, sizes[1:]))
    return float(p)


def _squeeze_excite(net: _Net, spec: MBConvSpec, name: str, x: _Shape, node: str,
                    squeeze: int) -> str:
    """pool -> fc + se_act -> fc + gate -> channel-wise multiply of ``node``."""
    o, g = net.o, net.g
    last = g.add_op(f"{name}.pool", Pool(mode="avg", n=o.batch, c=x.c, h=x.h, w=x.w, r=x.h,
                                         s=x.w, dtype=o.dtype), [node])
    for i, (k, n, act) in enumerate(((x.c, squeeze, spec.se_act), (squeeze, x.c, spec.se_gate))):
        last = g.add_op(f"{name}.fc{i + 1}", MatMul(m=o.batch, n=n, k=k, weight=True, bias=True,
                                                     dtype=o.dtype, weight_dtype=o.weight_dtype),
                        [last])
        last = net.act(f"{name}.fc{i + 1}.{act}", act, _Shape(n, 1, 1), [last])
    return g.add_op(f"{name}.scale", Elementwise(fn="mul", numel=o.batch * x.c * x.h * x.w,
                                                  dtype=o.dtype), [last, node])


def build_mbconv(spec: MBConvSpec, o: BuildOptions) -> WorkloadGraph:
    """Inverted-residual CNN forward graph for ``o.batch`` images of ``o.image_size`` squared."""
    g = WorkloadGraph(o.model, o.phase)
    net = _Net(g, o)
    x = _Shape(spec.channels, o.image_size, o.image_size)
    last, x = net.conv_bn("stem", x, [], spec.stem, 3, 2, False, act=spec.stem_act)
    for i, b in enumerate(spec.blocks):
        prefix, block_in, inputs = f"blocks.{i}.", x, [last]
        if b.expanded != x.c:
            last, x = net.conv_bn(f"{prefix}expand", x, inputs, b.expanded, 1, 1, False,
                                  act=b.act)
        last, x = net.conv_bn(f"{prefix}dw", x, [last], b.expanded, b.kernel, b.stride, False,
                              groups=b.expanded, act=b.act)
        if b.se:
            last = _squeeze_excite(net, spec, f"{prefix}se", x, last, b.se)
        last, x = net.conv_bn(f"{prefix}project", x, [last], b.out, 1, 1, False)
        if b.stride == 1 and block_in.c == b.out:
            last = g.add_op(f"{prefix}add", Elementwise(fn="add", numel=o.batch * x.c * x.h * x.w,
                                                        dtype=o.dtype), [last, *inputs])
    last, x = net.conv_bn("head", x, [last], spec.head, 1, 1, False, act=spec.head_act)
    last = g.add_op("avgpool", Pool(mode="avg", n=o.batch, c=x.c, h=x.h, w=x.w, r=x.h, s=x.w,
                                    dtype=o.dtype), [last])
    c = x.c
    for j, width in enumerate(spec.classifier):
        last = g.add_op(f"classifier.{j}", MatMul(m=o.batch, n=width, k=c, weight=True,
                                                   bias=True, dtype=o.dtype,
                                                   weight_dtype=o.weight_dtype), [last])
        last = net.act(f"classifier.{j}.{spec.classifier_act}", spec.classifier_act,
                       _Shape(width, 1, 1), [last])
        c = width
    g.add_op("fc", MatMul(m=o.batch, n=spec.num_labels, k=c, weight=True, bias=True,
                          dtype=o.dtype, weight_dtype=o.weight_dtype), [last])
    g.meta["params_per_device"] = g.params()
    g.meta["weight_bytes"] = g.weight_bytes()
    return g


# -- YOLOv8 -----------------------------------------------------------------------------------
#: yolov8.yaml: (layer, base width, C2f repeats before depth scaling; 0: a strided 3x3 Conv)
_YOLO_BACKBONE = ((64, 0), (128, 0), (128, 3), (256, 0), (256, 6), (512, 0), (512, 6),
                  (1024, 0), (1024, 3))


def yolo_widths(spec: YoloSpec) -> dict[int, int]:
    """Base width -> scaled width (Ultralytics: ceil(min(c, max_channels) * width / 8) * 8)."""
    return {c: 8 * math.ceil(min(c, spec.max_channels) * spec.width_multiple / 8)
            for c in (64, 128, 256, 512, 1024)}


def _yolo_depth(spec: YoloSpec, n: int) -> int:
    return max(round(n * spec.depth_multiple), 1) if n > 1 else n


def _yolo_head_widths(spec: YoloSpec, p3: int) -> tuple[int, int]:
    """Detect's box and class branch widths from the P3 width."""
    return max(16, p3 // 4, 4 * spec.reg_max), max(p3, min(spec.num_labels, 100))


def yolo_params(spec: YoloSpec) -> float:
    """Analytic parameter count as Ultralytics counts it (conv weights, batchnorm scale and
    shift, the head's 1x1 conv biases, the 16 fixed weights of the distribution decode)."""
    w = yolo_widths(spec)

    def conv(c1: int, c2: int, k: int) -> int:
        return c1 * c2 * k * k + 2 * c2

    def c2f(c1: int, c2: int, n: int) -> int:
        c = c2 // 2
        return conv(c1, 2 * c, 1) + n * 2 * conv(c, c, 3) + conv((2 + n) * c, c2, 1)

    p, c = 0, spec.channels
    for base, n in _YOLO_BACKBONE:
        p += conv(c, w[base], 3) if n == 0 else c2f(c, w[base], _yolo_depth(spec, n))
        c = w[base]
    p += conv(c, c // 2, 1) + conv(2 * c, w[1024], 1)  # SPPF
    d = _yolo_depth(spec, 3)
    p += c2f(w[1024] + w[512], w[512], d) + c2f(w[512] + w[256], w[256], d)
    p += conv(w[256], w[256], 3) + c2f(w[256] + w[512], w[512], d)
    p += conv(w[512], w[512], 3) + c2f(w[512] + w[1024], w[1024], d)
    cb, cc = _yolo_head_widths(spec, w[256])
    for ci in (w[256], w[512], w[1024]):
        p += conv(ci, cb, 3) + conv(cb, cb, 3) + cb * 4 * spec.reg_max + 4 * spec.reg_max
        p += conv(ci, cc, 3) + conv(cc, cc, 3) + cc * spec.num_labels + spec.num_labels
    return float(p + spec.reg_max)


class _Yolo:
    """Adds YOLOv8 modules to a graph; a feature is (producer nodes, shape), several producers
    being a free concatenation."""

    def __init__(self, graph: WorkloadGraph, o: BuildOptions, spec: YoloSpec):
        self.g, self.o, self.spec, self.net = graph, o, spec, _Net(graph, o)

    def conv(self, name: str, x: tuple[list[str], _Shape], c2: int, k: int, stride: int = 1
             ) -> tuple[list[str], _Shape]:
        node, shape = self.net.conv_bn(name, x[1], x[0], c2, k, stride, False, act="silu")
        return [node], shape

    def c2f(self, name: str, x: tuple[list[str], _Shape], c2: int, n: int, shortcut: bool
            ) -> tuple[list[str], _Shape]:
        c = c2 // 2
        cv1, s = self.conv(f"{name}.cv1", x, 2 * c, 1)
        pieces, y = list(cv1), (cv1, _Shape(c, s.h, s.w))  # the split is a view
        for i in range(n):
            a = self.conv(f"{name}.m.{i}.cv1", y, c, 3)
            b = self.conv(f"{name}.m.{i}.cv2", a, c, 3)
            if shortcut:
                add = self.g.add_op(f"{name}.m.{i}.add", Elementwise(
                    fn="add", numel=self.o.batch * c * s.h * s.w, dtype=self.o.dtype),
                    [*b[0], *y[0]])
                b = ([add], b[1])
            pieces += b[0]
            y = b
        return self.conv(f"{name}.cv2", (pieces, _Shape((2 + n) * c, s.h, s.w)), c2, 1)

    def sppf(self, name: str, x: tuple[list[str], _Shape], c2: int) -> tuple[list[str], _Shape]:
        o = self.o
        cv1, s = self.conv(f"{name}.cv1", x, x[1].c // 2, 1)
        pieces, last = list(cv1), cv1
        for i in range(3):
            last = [self.g.add_op(f"{name}.m{i}", Pool(mode="max", n=o.batch, c=s.c, h=s.h,
                                                       w=s.w, r=5, s=5, stride=1, pad=2,
                                                       dtype=o.dtype), last)]
            pieces += last
        return self.conv(f"{name}.cv2", (pieces, _Shape(4 * s.c, s.h, s.w)), c2, 1)

    def upsample(self, name: str, x: tuple[list[str], _Shape]) -> tuple[list[str], _Shape]:
        s = _Shape(x[1].c, 2 * x[1].h, 2 * x[1].w)
        nbytes = self.o.batch * s.c * s.h * s.w * self.o.dtype.bytes
        return [self.g.add_op(name, Memcpy(bytes=float(nbytes), dtype=self.o.dtype), x[0])], s

    def detect(self, feats: list[tuple[list[str], _Shape]]) -> None:
        o, spec, g = self.o, self.spec, self.g
        cb, cc = _yolo_head_widths(spec, feats[0][1].c)
        boxes, classes, anchors = [], [], 0
        for i, f in enumerate(feats):
            for branch, width, n_out, out in (("cv2", cb, 4 * spec.reg_max, boxes),
                                              ("cv3", cc, spec.num_labels, classes)):
                y = self.conv(f"detect.{branch}.{i}.0", f, width, 3)
                y = self.conv(f"detect.{branch}.{i}.1", y, width, 3)
                s = y[1]
                out.append(g.add_op(f"detect.{branch}.{i}.2", Conv2d(
                    n=o.batch, c=s.c, h=s.h, w=s.w, k=n_out, r=1, s=1, bias=True, dtype=o.dtype,
                    weight_dtype=o.weight_dtype), y[0]))
            anchors += f[1].h * f[1].w
        soft = g.add_op("detect.dfl.softmax", Softmax(rows=o.batch * 4 * anchors,
                                                      cols=spec.reg_max, dtype=o.dtype), boxes)
        g.add_op("detect.dfl.conv", Conv2d(n=o.batch, c=spec.reg_max, h=4, w=anchors, k=1, r=1,
                                           s=1, dtype=o.dtype, weight_dtype=o.weight_dtype),
                 [soft])
        g.add_op("detect.sigmoid", Elementwise(fn=ACT_FN["sigmoid"],
                                               numel=o.batch * spec.num_labels * anchors,
                                               dtype=o.dtype), classes)


def build_yolo(spec: YoloSpec, o: BuildOptions) -> WorkloadGraph:
    """YOLOv8 forward graph for ``o.batch`` images of ``o.image_size`` squared.

    Raises
    ------
    ValueError
        If the image size is not a multiple of 32 (the P5 features would not line up).
    """
    if o.image_size % 32:
        raise ValueError(f"yolov8: image_size must be a multiple of 32, got {o.image_size}")
    g = WorkloadGraph(o.model, o.phase)
    y = _Yolo(g, o, spec)
    w = yolo_widths(spec)
    x: tuple[list[str], _Shape] = ([], _Shape(spec.channels, o.image_size, o.image_size))
    saved = {}
    for i, (base, n) in enumerate(_YOLO_BACKBONE):
        x = (y.conv(f"model.{i}", x, w[base], 3, 2) if n == 0 else
             y.c2f(f"model.{i}", x, w[base], _yolo_depth(spec, n), shortcut=True))
        saved[i] = x
    p5 = y.sppf("model.9", x, w[1024])
    d = _yolo_depth(spec, 3)

    def cat(a: tuple[list[str], _Shape], b: tuple[list[str], _Shape]
            ) -> tuple[list[str], _Shape]:
        return a[0] + b[0], _Shape(a[1].c + b[1].c, a[1].h, a[1].w)

    h12 = y.c2f("model.12", cat(y.upsample("model.10", p5), saved[6]), w[512], d, False)
    h15 = y.c2f("model.15", cat(y.upsample("model.13", h12), saved[4]), w[256], d, False)
    h18 = y.c2f("model.18", cat(y.conv("model.16", h15, w[256], 3, 2), h12), w[512], d, False)
    h21 = y.c2f("model.21", cat(y.conv("model.19", h18, w[512], 3, 2), p5), w[1024], d, False)
    y.detect([h15, h18, h21])
    g.meta["params_per_device"] = g.params()
    g.meta["weight_bytes"] = g.weight_bytes()
    return g
