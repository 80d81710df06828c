"""The CUDA branches of the measurement harness, run on any machine against fakes.

No GPU is needed: a fake ``torch`` records CUDA events on the host clock and a fake
``pynvml`` reports board power (60 W idle, 300 W while the measured function has run since the
last synchronise) and integrates it into a total-energy counter. What is checked is the
harness's arithmetic and protocol: events bracket every call, the energy loop runs at least
``min_time_s``, energy per call = counter delta / calls, the power-sample fallback, and the
reasons when NVML is missing.
"""

from __future__ import annotations

import sys
import threading
import time
import types
from contextlib import contextmanager

import pytest

from simulator.validate import measure

IDLE_W, BUSY_W = 60.0, 300.0


class _Clock:
    """Board state shared by the fakes: busy while work is queued, energy integrated."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.busy = False
        self.energy_mj = 0.0
        self.t = time.perf_counter()

    def power(self) -> float:
        return BUSY_W if self.busy else IDLE_W

    def tick(self) -> None:
        with self.lock:
            now = time.perf_counter()
            self.energy_mj += self.power() * (now - self.t) * 1e3
            self.t = now


def _fake_torch(board: _Clock, events: list) -> types.SimpleNamespace:
    class Event:
        def __init__(self, enable_timing: bool = False):
            assert enable_timing
            self.t = None
            events.append(self)

        def record(self) -> None:
            self.t = time.perf_counter()

        def synchronize(self) -> None:
            pass

        def elapsed_time(self, other: Event) -> float:
            return (other.t - self.t) * 1e3           # milliseconds, like torch

    @contextmanager
    def device_ctx(dev):
        yield

    def synchronize(dev=None) -> None:
        board.tick()
        board.busy = False

    props = types.SimpleNamespace(uuid="GPU-fake-0000", name="Fake GPU")
    cuda = types.SimpleNamespace(Event=Event, device=device_ctx, synchronize=synchronize,
                                 get_device_properties=lambda d: props)
    return types.SimpleNamespace(device=lambda d: types.SimpleNamespace(index=0, type="cuda"),
                                 cuda=cuda)


def _fake_nvml(board: _Clock, *, counter: bool = True) -> types.ModuleType:
    m = types.ModuleType("pynvml")
    m.nvmlInit = lambda: None
    m.nvmlDeviceGetHandleByUUID = lambda uuid: ("handle", uuid)

    def power(handle):
        board.tick()
        return int(board.power() * 1000)          # milliwatts

    def energy(handle):
        if not counter:
            raise RuntimeError("NVMLError_NotSupported")
        board.tick()
        return int(board.energy_mj)

    m.nvmlDeviceGetPowerUsage = power
    m.nvmlDeviceGetTotalEnergyConsumption = energy
    return m


@pytest.fixture
def board(monkeypatch):
    b = _Clock()
    events: list = []
    monkeypatch.setattr(measure, "import_torch", lambda: _fake_torch(b, events))
    b.events = events
    return b


def _work(board: _Clock, seconds: float):
    def fn(i: int) -> None:
        board.tick()
        board.busy = True
        time.sleep(seconds)
        board.tick()
    return fn


def test_cuda_timing_brackets_every_call_with_events(board):
    t = measure.time_callable(_work(board, 0.002), device="cuda:0", warmup=2, min_reps=7,
                              min_time_s=0.0)
    assert t.reps == 7 and len(board.events) == 14        # a start and an end event per call
    assert 0.002 <= t.median < 0.02                        # the events' ms, converted to s


def test_nvml_energy_loop_counts_counter_delta_over_calls(board, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", _fake_nvml(board))
    e = measure.measure_energy(_work(board, 0.002), "cuda:0", min_time_s=0.2, idle_s=0.05,
                               sample_interval_s=0.005)
    assert e.method == "nvml-total-energy" and e.reason is None
    assert e.duration_s >= 0.2 and e.calls >= 8 and e.calls % 8 == 0
    # the board is busy nearly all the loop: average power close to 300 W, energy per call
    # = average power x duration / calls, idle power from the samples taken before
    assert e.avg_power_w == pytest.approx(BUSY_W, rel=0.15)
    assert e.energy_j == pytest.approx(e.avg_power_w * e.duration_s / e.calls, rel=1e-9)
    assert e.idle_power_w == pytest.approx(IDLE_W)
    assert IDLE_W < e.sampled_power_w <= BUSY_W


def test_nvml_without_energy_counter_integrates_power_samples(board, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", _fake_nvml(board, counter=False))
    e = measure.measure_energy(_work(board, 0.002), "cuda:0", min_time_s=0.1, idle_s=0.02,
                               sample_interval_s=0.005)
    assert e.method == "nvml-power-samples"
    assert e.energy_j == pytest.approx(e.sampled_power_w * e.duration_s / e.calls, rel=1e-9)


def test_missing_nvml_gives_a_reason_not_a_number(board, monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)      # import fails
    e = measure.measure_energy(_work(board, 0.0), "cuda:0", min_time_s=0.01)
    assert e.energy_j is None and "nvidia-ml-py" in e.reason


@pytest.mark.torch
def test_every_op_of_the_gpu_suite_plans_for_cuda(monkeypatch):
    """The whole CUDA campaign's op list turns into tensors and a callable on an H100-class
    device (compute capability 9.0, faked), each input set close to the op's modelled input
    bytes: what run_gpu.sh will execute is checked here without a GPU."""
    torch = pytest.importorskip("torch")
    from simulator.validate.executor import NotExecutableError, _plan
    from simulator.validate.suites import get_suite

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))
    suite = get_suite("gpu", "cuda")
    assert len(suite) > 300
    planned, refused = 0, []
    for entry in suite:
        op = entry[2] if isinstance(entry, tuple) else entry.op
        try:
            plan = _plan(torch, op, "cuda")
        except NotExecutableError as err:
            refused.append(str(err))
            continue
        planned += 1
        nbytes = sum(s.nbytes for s in plan.specs)
        # tensors hold the modelled inputs (fp8 scales and epilogue operands add a little;
        # a KV cache in another dtype is materialised in the compute dtype; an embedding
        # holds its whole table, of which it reads a few rows)
        hi = 2.5 * op.bytes_read() + op.weight_bytes() + 2**20
        assert 0.5 * op.bytes_read() <= nbytes <= hi, entry
    assert planned == len(suite), refused[:3]
