"""LeNet-5 builder (LeCun et al. 1998), in its common modern form.

Per entry of ``conv_channels``: a ``k x k`` convolution with bias, ReLU, then a 2x2/2 pool
(max by default). The feature map is flattened (a view: no op) into fully connected layers
``fc_sizes`` with bias and ReLU, then a ``num_labels`` classifier with bias.

The shipped ``lenet5`` is the PyTorch tutorial network on a 32x32 image: conv 6@5x5 -> pool ->
conv 16@5x5 -> pool -> 400 -> 120 -> 84 -> 10, 61,706 parameters. The original of 1998 differs
in ways that barely move the cost: scaled tanh instead of ReLU, trainable-coefficient
subsampling instead of pooling, C3 connected to a subset of S2's maps (60,000 parameters in
all) and an RBF output layer. MNIST's 28x28 digits fit with ``image_size: 28`` and
``conv_padding: [2, 0]`` (same shapes after the first convolution).

Because the first fully connected layer is sized for the config's ``image_size``, the graph can
only be built at that resolution.
"""

from __future__ import annotations

from workloads.graph import WorkloadGraph
from workloads.importers.hf_config import LeNetSpec
from workloads.ops import Conv2d, Elementwise, MatMul, Pool
from workloads.zoo.options import BuildOptions

__all__ = ["build_lenet", "lenet_params"]


def _feature_shapes(spec: LeNetSpec, image_size: int) -> list[tuple[int, int, int]]:
    """(channels in, spatial size in, padding) of each convolution."""
    out, c, size = [], spec.channels, image_size
    for k, pad in zip(spec.conv_channels, spec.conv_padding, strict=True):
        out.append((c, size, pad))
        c, size = k, (size + 2 * pad - spec.kernel_size + 1) // 2
    return out


def _flat(spec: LeNetSpec) -> int:
    """Features entering the first fully connected layer at the config's image size."""
    size = spec.image_size
    for pad in spec.conv_padding:
        size = (size + 2 * pad - spec.kernel_size + 1) // 2
    return spec.conv_channels[-1] * size * size


def lenet_params(spec: LeNetSpec) -> float:
    """Analytic parameter count: conv and fully connected weights and biases."""
    kk = spec.kernel_size ** 2
    p = sum(k * c * kk + k for (c, _, _), k in zip(_feature_shapes(spec, spec.image_size),
                                                   spec.conv_channels, strict=True))
    sizes = (_flat(spec), *spec.fc_sizes, spec.num_labels)
    p += sum(a * b + b for a, b in zip(sizes, sizes[1:]))
    return float(p)


def build_lenet(spec: LeNetSpec, o: BuildOptions) -> WorkloadGraph:
    """LeNet forward graph for ``o.batch`` images of ``spec.image_size`` squared.

    Raises
    ------
    ValueError
        If ``o.image_size`` differs from the config's ``image_size`` (the first fully
        connected layer would change shape).
    """
    if o.image_size != spec.image_size:
        raise ValueError(f"image_size {o.image_size} does not match the config's image_size "
                         f"{spec.image_size}: the first fully connected layer is sized for "
                         f"{_flat(spec)} features (give a config with another image_size and "
                         f"conv_padding instead)")
    g = WorkloadGraph(o.model, o.phase)
    inputs: list[str] = []
    for i, ((c, size, pad), k) in enumerate(zip(_feature_shapes(spec, o.image_size),
                                                spec.conv_channels, strict=True)):
        conv = Conv2d(n=o.batch, c=c, h=size, w=size, k=k, r=spec.kernel_size,
                      s=spec.kernel_size, pad=pad, bias=True, dtype=o.dtype,
                      weight_dtype=o.weight_dtype)
        last = g.add_op(f"conv{i + 1}", conv, inputs)
        last = g.add_op(f"conv{i + 1}.relu", Elementwise(fn="relu", numel=o.batch * k * conv.p
                                                         * conv.q, dtype=o.dtype), [last])
        pool = Pool(mode=spec.pool, n=o.batch, c=k, h=conv.p, w=conv.q, r=2, s=2, stride=2,
                    dtype=o.dtype)
        inputs = [g.add_op(f"pool{i + 1}", pool, [last])]
    sizes = (_flat(spec), *spec.fc_sizes, spec.num_labels)
    for i, (k, n) in enumerate(zip(sizes, sizes[1:])):
        last = g.add_op(f"fc{i + 1}", MatMul(m=o.batch, n=n, k=k, weight=True, bias=True,
                                             dtype=o.dtype, weight_dtype=o.weight_dtype), inputs)
        if i < len(spec.fc_sizes):
            last = g.add_op(f"fc{i + 1}.relu", Elementwise(fn="relu", numel=o.batch * n,
                                                           dtype=o.dtype), [last])
        inputs = [last]
    g.meta["params_per_device"] = g.params()
    g.meta["weight_bytes"] = g.weight_bytes()
    return g
