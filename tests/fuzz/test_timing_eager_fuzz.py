"""Fuzz of the eager host-cost fields in a GPU spec file (``params.eager_dispatch``,
``eager_alloc``, ``eager_launch``; simulator/timing.py). A spec written with any YAML value in
those fields either loads and predicts an eager op with a finite host time (the recipe's calls,
outputs and kernels times the three costs), or fails with a SpecError whose every line names
the file and the field: never a traceback, NaN or a negative time."""

from __future__ import annotations

import math
import re
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator import predict_op
from simulator.arch.loader import find_arch, load_arch
from simulator.arch.params import default
from simulator.errors import HwsimError, SpecError
from simulator.timing import eager_recipe
from workloads.ops import Elementwise, Norm

_SETTINGS = settings(max_examples=40, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])
FIELDS = ("eager_dispatch", "eager_alloc", "eager_launch")
_VALUE = st.one_of(
    st.sampled_from(["2 us", "0 s", "0", "1e-6 s", "3us", "-1 us", "nan us", "inf s", "", "abc",
                     "1 GB", "1 GHz", "true", "1 ms", "10 ns"]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-10, 10),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
    st.text(max_size=10),
)
def _cost(params: dict, field: str) -> float:
    """The spec's value of a host-cost field, else the GPU family default."""
    return float(params.get(field, default("gpu", field)))


OPS = (Elementwise(fn="add", numel=4096, dtype="fp16"),
       Norm(norm="rmsnorm", rows=2, cols=4096, dtype="fp16"))
_SRC = Path(find_arch("a100-sxm-80gb")).read_text()


@_SETTINGS
@given(values=st.dictionaries(st.sampled_from(FIELDS), _VALUE, min_size=1, max_size=3))
def test_eager_fields_in_a_spec_file(tmp_path, values):
    raw = yaml.safe_load(_SRC)
    raw["params"].update(values)
    path = tmp_path / f"fuzz-{abs(hash(repr(values)))}.yaml"
    path.write_text(yaml.safe_dump(raw))
    try:
        sys_ = load_arch(path)
    except SpecError as e:
        assert e.problems and "Traceback" not in str(e)
        for p in e.problems:
            assert "\n" not in p
        assert any(re.search(rf"params\.{f}\b", p) for p in e.problems for f in values), \
            e.problems
        return
    for op in OPS:
        try:
            c = predict_op(op, sys_, timing="eager")
        except HwsimError as e:  # e.g. a loaded value the timing rejects: one clean line
            assert "\n" not in str(e) and "params." in str(e)
            return
        host = c.details["host_s"]
        assert math.isfinite(host) and host >= 0 and math.isfinite(c.latency_s)
        _, calls, _ = eager_recipe(op, predict_op(op, sys_), sys_.device)
        want = (len([x for x in calls if x.python]) * _cost(sys_.device.params, "eager_dispatch")
                + sum(x.outputs for x in calls) * _cost(sys_.device.params, "eager_alloc")
                + sum(x.kernels for x in calls) * _cost(sys_.device.params, "eager_launch"))
        assert host == want or math.isclose(host, want, rel_tol=1e-9)
