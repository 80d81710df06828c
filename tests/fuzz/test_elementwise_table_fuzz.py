"""Fuzz of an elementwise op's ``table`` field (the elements of the one table row each row
reads in place of a full-size second operand: the rotary kernel's cos/sin cache row), as an
``hwsim ops`` JSONL line gives it (:func:`workloads.ops.op_from_dict`): every value either
builds an op whose bytes and GPU kernel time are finite and positive, or fails with one
clear ValueError naming the field; never a traceback from deeper down, never NaN."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator import predict_op
from simulator.mapping.gpu import kernel_time
from workloads.ops import MAX_SIZE, op_from_dict

fuzz = settings(max_examples=200, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])

_table = st.one_of(
    st.integers(-3, 70_000),
    st.integers(MAX_SIZE - 2, MAX_SIZE + 2),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["128", "", "table", True, False, [], {}, 1.0, 128.0]),
)


@fuzz
@given(table=_table, row=st.one_of(st.none(), st.integers(1, 20_000)),
       tokens=st.integers(1, 4096), fn=st.sampled_from(["mul", "relu", "add"]))
def test_any_table(table, row, tokens, fn):
    numel = tokens * (row or 1)
    line = {"kind": "elementwise", "fn": fn, "numel": numel, "row": row, "table": table,
            "dtype": "fp16"}
    try:
        op = op_from_dict(line)
    except ValueError as e:
        msg = str(e)
        assert "table" in msg and "\n" not in msg, msg
        return
    assert op.table is None or (type(op.table) is int and 1 <= op.table <= op.row <= MAX_SIZE)
    # never more bytes than a full-size second operand
    assert op.bytes_read() <= 2 * op.numel * op.dtype.bytes
    assert math.isfinite(op.min_bytes) and op.min_bytes > 0
    c = predict_op(op, "a100-sxm-80gb")
    t = kernel_time(c)
    assert math.isfinite(t) and t > 0


def test_a_table_replaces_the_full_size_second_operand():
    """7B rotary at 4096 tokens: q and k read and written in place (2 x 8192 x 4096 x 2 B)
    plus one 128-element cos/sin row per token (1 MiB), not a second 67 MB operand."""
    full = op_from_dict({"kind": "elementwise", "fn": "mul", "numel": 4096 * 8192,
                         "row": 8192, "dtype": "fp16"})
    rope = op_from_dict({"kind": "elementwise", "fn": "mul", "numel": 4096 * 8192,
                         "row": 8192, "table": 128, "dtype": "fp16"})
    assert rope.min_bytes == 2 * 4096 * 8192 * 2 + 4096 * 128 * 2
    assert full.min_bytes - rope.min_bytes == 4096 * (8192 - 128) * 2
