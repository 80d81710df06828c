#!/usr/bin/env bash
# The whole CUDA validation of issue 3, part 7, in one call for a machine with an NVIDIA GPU:
# the gpu op suite with NVML energy, four models end to end, then the comparison and the
# calibration against the matching spec. Everything lands under $OUT (default
# experiments/validation/data) and experiments/validation/reports.
#
#   bash experiments/validation/run_gpu.sh [arch]      # arch: h100-sxm (default), h200-sxm, a100-sxm-80gb
#
# Needs: pip install -e ".[test,torch]" and nvidia-ml-py (for --energy); a CUDA build of torch.
# Takes ~15-25 min on an H100 (the op suite is ~430 ops, each measured for >= 0.2 s plus a
# >= 1 s energy loop for the compute-bound GEMM, the copy and the GEMV).
set -euo pipefail
arch="${1:-h100-sxm}"
out="${OUT:-experiments/validation/data}"
reports="experiments/validation/reports"
tag="cuda-${arch}"
mkdir -p "$out" "$reports"

hwsim validate --suite gpu --device cuda --energy --out "$out/$tag-ops"
hwsim validate --workload gpt2 --phase prefill --batch 8 --seq 512 --dtype bf16 --device cuda --out "$out/$tag-gpt2-prefill"
hwsim validate --workload bert-base --phase forward --batch 8 --seq 384 --dtype fp16 --device cuda --out "$out/$tag-bert-base"
hwsim validate --workload resnet50 --phase forward --batch 32 --dtype fp16 --device cuda --out "$out/$tag-resnet50"
hwsim validate --workload llama2-7b --phase decode --batch 8 --context 2048 --dtype bf16 --device cuda --out "$out/$tag-llama2-7b-decode"

for d in "$out/$tag"-*; do
  hwsim compare-measured "$d" --arch "$arch" --out "$reports/$(basename "$d")"
done
hwsim calibrate "$out/$tag-ops" --arch "$arch" --out "experiments/validation/$arch.calib.yaml"
hwsim compare-measured "$out/$tag-ops" --arch "$arch" \
  --calibration "experiments/validation/$arch.calib.yaml" --out "$reports/$tag-ops-calibrated"
