"""Golden end-to-end cases: (id, workload, arch, options). Regenerate the expected numbers
with ``python tests/golden/update_golden.py`` after an intended modelling change, and say
why in the commit message."""

CASES = [
    ("llama2-7b-decode-h100", "llama2-7b", "h100-sxm",
     {"phase": "decode", "batch": 8, "context": 2048}),
    ("llama2-70b-decode-dgx-h100", "llama2-70b", "dgx-h100",
     {"phase": "decode", "batch": 16, "context": 4096}),
    ("resnet50-b32-tpu-v4", "resnet50", "tpu-v4", {"batch": 32}),
    ("bert-base-b32-a100", "bert-base", "a100-sxm-80gb", {"batch": 32, "seq": 128}),
    ("bert-base-b1-u280-int8", "bert-base", "alveo-u280", {"batch": 1, "dtype": "int8"}),
    ("resnet18-b1-eyeriss", "resnet18", "eyeriss", {"batch": 1, "dtype": "int8"}),
    ("gpt2-train-h100", "gpt2", "h100-sxm", {"phase": "train", "batch": 8, "seq": 1024}),
    ("mixtral-decode-h200-int4", "mixtral-8x7b", "h200-sxm",
     {"phase": "decode", "batch": 4, "context": 1024, "weight_dtype": "int4"}),
    # layouts: pipeline stages with micro-batches, data-parallel training, expert parallelism
    ("llama2-7b-prefill-dgx-h100-pp4-mb8", "llama2-7b", "dgx-h100",
     {"phase": "prefill", "batch": 8, "seq": 512, "tp": 1, "pp": 4, "dp": 1,
      "microbatches": 8}),
    ("gpt2-train-dgx-a100-tp2-dp4", "gpt2", "dgx-a100",
     {"phase": "train", "batch": 8, "seq": 256, "tp": 2, "dp": 4}),
    ("mixtral-decode-dgx-h100-ep8", "mixtral-8x7b", "dgx-h100",
     {"phase": "decode", "batch": 16, "context": 1024, "ep": 8}),
]
KEYS = ("latency_s", "energy_j", "memory_bytes", "flops", "throughput")
