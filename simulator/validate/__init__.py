"""Real execution path: measure the same graph with PyTorch, compare, calibrate.

Measurement (``measure``, ``executor``, ``suites``, ``run``) imports torch lazily; comparison
(``compare``) and calibration (``calibrate``) only read datasets (``dataset``) and need no
torch. Typical flow::

    hwsim validate --suite ops --device auto
    hwsim compare-measured <dataset> --arch cpu-host
    hwsim calibrate <dataset> --arch cpu-host --out cpu.calib.yaml
    hwsim run ... --arch cpu-host --calibration cpu.calib.yaml

Energy (``energy``): NVML on GPUs, RAPL on CPUs, where readable; a note says why not.
Profiler data (``traces``): Kineto Chrome traces and per-op CSV profiles are read as
kernel-time datasets by ``compare-measured`` and ``calibrate``::

    hwsim compare-measured trace.pt.trace.json --arch dgx-a100
    hwsim calibrate llama2-7b_mlp.csv dgx_all_reduce.csv --arch dgx-a100 --holdout 0.5
"""

from simulator.validate.calibrate import CalibrationProfile, apply_params, band_for, fit
from simulator.validate.compare import Comparison, compare, write_report
from simulator.validate.dataset import Dataset, Measurement, load_dataset, save_dataset
from simulator.validate.energy import EnergyProbe, probe_energy
from simulator.validate.traces import load_measurements, read_kineto, read_profile_csv

__all__ = ["CalibrationProfile", "apply_params", "band_for", "fit", "Comparison", "compare",
           "write_report", "Dataset", "Measurement", "load_dataset", "save_dataset",
           "EnergyProbe", "probe_energy", "load_measurements", "read_kineto",
           "read_profile_csv"]
