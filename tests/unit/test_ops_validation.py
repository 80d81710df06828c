"""Op field validation: sizes are whole ``int``s in [1, 2**53] (or [0, 2**53] for padding and
cached context), byte payloads finite positive numbers, epilogues lists of known names; every
bad value is a ValueError naming the op kind, the field and the value."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workloads.ops import MAX_SIZE, OP_TYPES, MatMul, Memcpy, op_from_dict

# One valid set of fields per op kind (every kind must be here).
VALID: dict[str, dict] = {
    "matmul": {"m": 64, "n": 32, "k": 16, "batch": 2, "epilogue": ("relu",)},
    "conv2d": {"n": 2, "c": 8, "h": 16, "w": 16, "k": 8, "r": 3, "s": 3, "stride": 1, "pad": 1,
               "groups": 2},
    "attention": {"batch": 2, "heads": 8, "head_dim": 64, "seq": 16, "kv_heads": 2,
                  "context": 0},
    "elementwise": {"fn": "gelu", "numel": 1000},
    "norm": {"norm": "layernorm", "rows": 4, "cols": 64},
    "softmax": {"rows": 4, "cols": 64},
    "embedding": {"tokens": 16, "vocab": 1000, "dim": 64},
    "pool": {"mode": "max", "n": 1, "c": 4, "h": 8, "w": 8, "r": 2, "s": 2, "stride": 2,
             "pad": 0},
    "collective": {"collective": "allreduce", "bytes": 1.5e6, "devices": 8},
    "memcpy": {"bytes": 4096.5},
}

# Integer size fields with their minimum; fields that may be fractional (byte payloads).
SIZES = {
    "matmul": {"m": 1, "n": 1, "k": 1, "batch": 1},
    "conv2d": {"n": 1, "c": 1, "h": 1, "w": 1, "k": 1, "r": 1, "s": 1, "stride": 1, "pad": 0,
               "groups": 1},
    "attention": {"batch": 1, "heads": 1, "head_dim": 1, "seq": 1, "kv_heads": 1, "context": 0},
    "elementwise": {"numel": 1},
    "norm": {"rows": 1, "cols": 1},
    "softmax": {"rows": 1, "cols": 1},
    "embedding": {"tokens": 1, "vocab": 1, "dim": 1},
    "pool": {"n": 1, "c": 1, "h": 1, "w": 1, "r": 1, "s": 1, "stride": 1, "pad": 0},
    "collective": {"devices": 1},
    "memcpy": {},
}
REALS = {"collective": ("bytes",), "memcpy": ("bytes",)}

INT_FIELDS = [(kind, f, lo) for kind, fs in SIZES.items() for f, lo in fs.items()]
REAL_FIELDS = [(kind, f) for kind, fs in REALS.items() for f in fs]


def build(kind: str, **change):
    return OP_TYPES[kind](**{**VALID[kind], **change})


# values that are never a size: not an int, or out of range (the minimum is added per field)
not_an_int = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),          # inf, nan, 4.5 and also 4.0
    st.booleans(),
    st.text(max_size=5),
    st.none(),
    st.lists(st.integers(), max_size=2),
    st.builds(np.float64, st.floats(allow_nan=True, allow_infinity=True)),
)
too_large = st.one_of(st.integers(min_value=MAX_SIZE + 1), st.integers(min_value=MAX_SIZE + 1)
                      .map(lambda v: v ** 3), st.just(10**5000))
not_a_real = st.one_of(st.booleans(), st.text(max_size=5), st.none(),
                       st.lists(st.floats(), max_size=2))
bad_real = st.one_of(
    st.sampled_from([math.inf, -math.inf, math.nan, 0, 0.0, -0.0, np.float64("nan")]),
    st.floats(max_value=0.0, allow_nan=False),
    st.floats(min_value=float(MAX_SIZE) * 1.01, allow_infinity=False),
    st.integers(min_value=MAX_SIZE + 1),
    st.integers(max_value=0),
)


def assert_names(err: pytest.ExceptionInfo, kind: str, field: str, value) -> None:
    msg = str(err.value)
    assert msg.startswith(f"{kind}: {field}"), msg
    if isinstance(value, (int, float)) and abs(value) < 10**30:
        assert repr(value) in msg, msg


def test_every_kind_has_a_valid_example_and_constructs():
    assert set(VALID) == set(OP_TYPES) == set(SIZES)
    for kind in VALID:
        op = build(kind)
        assert op.kind == kind
        assert math.isfinite(op.flops().total) and op.min_bytes > 0


@pytest.mark.parametrize("kind, field, lo", INT_FIELDS)
def test_int_fields_take_numpy_integers_as_int_and_zero_where_allowed(kind, field, lo):
    op = build(kind, **{field: np.int64(VALID[kind][field])})
    assert type(getattr(op, field)) is int
    assert op.to_dict()[field] == VALID[kind][field]
    if lo == 0:
        assert getattr(build(kind, **{field: 0}), field) == 0


@settings(max_examples=300, deadline=None)
@given(case=st.sampled_from(INT_FIELDS), bad=not_an_int)
def test_int_fields_reject_non_integers(case, bad):
    kind, field, _ = case
    if bad is None and (kind, field) == ("attention", "kv_heads"):
        return  # None means kv_heads = heads
    with pytest.raises(ValueError) as err:
        build(kind, **{field: bad})
    assert_names(err, kind, field, bad)
    assert "(an integer)" in str(err.value) or "must be a whole number" in str(err.value)


@settings(max_examples=200, deadline=None)
@given(case=st.sampled_from(INT_FIELDS), data=st.data())
def test_int_fields_reject_values_below_the_minimum(case, data):
    kind, field, lo = case
    bad = data.draw(st.integers(max_value=lo - 1))
    with pytest.raises(ValueError) as err:
        build(kind, **{field: bad})
    assert_names(err, kind, field, bad)


@settings(max_examples=200, deadline=None)
@given(case=st.sampled_from(INT_FIELDS), bad=too_large)
def test_int_fields_reject_absurd_sizes(case, bad):
    kind, field, _ = case
    with pytest.raises(ValueError) as err:
        build(kind, **{field: bad})
    assert_names(err, kind, field, bad)
    assert "2**53" in str(err.value)


@settings(max_examples=200, deadline=None)
@given(case=st.sampled_from(REAL_FIELDS), bad=st.one_of(not_a_real, bad_real))
def test_byte_payloads_reject_non_finite_non_positive_and_absurd(case, bad):
    kind, field = case
    with pytest.raises(ValueError) as err:
        build(kind, **{field: bad})
    assert_names(err, kind, field, bad)


@settings(max_examples=100, deadline=None)
@given(m=st.integers(1, MAX_SIZE), n=st.integers(1, MAX_SIZE), k=st.integers(1, MAX_SIZE),
       b=st.floats(min_value=1e-3, max_value=float(MAX_SIZE)))
def test_valid_sizes_construct_with_finite_costs(m, n, k, b):
    op = MatMul(m=m, n=n, k=k)
    assert math.isfinite(op.flops().total) and math.isfinite(op.min_bytes)
    assert Memcpy(bytes=b).bytes == b


@pytest.mark.parametrize("value", [1e999, -1e999, 4.5, 4.0, True, "4", -3])
def test_op_from_dict_rejects_bad_sizes_from_json(value):
    d = json.loads(json.dumps({"kind": "matmul", "m": value, "n": 2, "k": 2}))
    with pytest.raises(ValueError, match=r"^matmul: m must be a (positive|whole) number"):
        op_from_dict(d)


# -- epilogues --------------------------------------------------------------------------------
def test_a_single_epilogue_name_is_a_one_element_list():
    op = op_from_dict({"kind": "matmul", "m": 2, "n": 2, "k": 2, "epilogue": "relu"})
    assert op.epilogue == ("relu",)
    assert MatMul(m=2, n=2, k=2, epilogue=["gelu", "add"]).epilogue == ("gelu", "add")
    assert build("conv2d", epilogue="batchnorm").epilogue == ("batchnorm",)


@pytest.mark.parametrize("epilogue, needle", [
    ("relux", "unknown epilogue 'relux'"),
    (["relu", "tanh"], "unknown epilogue 'tanh'"),
    ([["relu"]], "unknown epilogue ['relu']"),
    ([None], "unknown epilogue None"),
    (5, "epilogue must be a list of names"),
    ({"relu": 1}, "epilogue must be a list of names"),
])
def test_bad_epilogues_are_clear_errors(epilogue, needle):
    with pytest.raises(ValueError) as err:
        op_from_dict({"kind": "matmul", "m": 2, "n": 2, "k": 2, "epilogue": epilogue})
    assert str(err.value).startswith("matmul: ") and needle in str(err.value)


@settings(max_examples=100, deadline=None)
@given(name=st.text(min_size=2, max_size=12))
def test_an_unknown_epilogue_string_is_named_whole(name):
    from workloads.ops import EPILOGUE_FNS

    if name in EPILOGUE_FNS:
        return
    with pytest.raises(ValueError) as err:
        MatMul(m=2, n=2, k=2, epilogue=name)
    assert f"unknown epilogue {name!r}" in str(err.value)
