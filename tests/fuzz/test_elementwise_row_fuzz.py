"""Fuzz of an elementwise op's ``row`` field (the width of one block-per-row kernel: vLLM's
SiLU-and-mul and rotary kernels), as an ``hwsim ops`` JSONL line gives it
(:func:`workloads.ops.op_from_dict`): every value either builds an op whose GPU kernel time
is finite and positive, or fails with one clear ValueError naming the field; never a
traceback from deeper down, never NaN."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator import predict_op
from simulator.mapping.gpu import kernel_time
from workloads.ops import MAX_SIZE, op_from_dict

fuzz = settings(max_examples=200, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])

_row = st.one_of(
    st.integers(-3, 70_000),
    st.integers(MAX_SIZE - 2, MAX_SIZE + 2),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["8", "", "row", True, False, [], {}, 1.0, 4096.0]),
)


@fuzz
@given(row=_row, numel=st.integers(1, 1 << 22), fn=st.sampled_from(["mul", "swiglu", "add"]))
def test_any_row(row, numel, fn):
    line = {"kind": "elementwise", "fn": fn, "numel": numel, "row": row, "dtype": "fp16"}
    try:
        op = op_from_dict(line)
    except ValueError as e:
        msg = str(e)
        assert "row" in msg and "\n" not in msg, msg
        return
    assert op.row is None or (type(op.row) is int and 1 <= op.row <= MAX_SIZE)
    c = predict_op(op, "a100-sxm-80gb")
    t = kernel_time(c)
    assert math.isfinite(t) and t > 0
    assert c.details["kernel"] == ("grid" if op.row is None else "row")
