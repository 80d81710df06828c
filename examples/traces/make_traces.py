"""Write the two example request traces of this folder (see README.md), from fixed seeds.

    python examples/traces/make_traces.py [OUT_DIR]      # default: this folder

Only numpy, no hwsim: the traces are data, independent of the simulator's own generators, and
the same seeds give the same files byte for byte (a test regenerates them and compares).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def lognormal(rng: np.random.Generator, n: int, mean: float, cv: float, lo: int, hi: int
              ) -> np.ndarray:
    """Whole token counts, log-normal with this mean and coefficient of variation, clipped."""
    sigma2 = math.log(1 + cv * cv)
    x = rng.lognormal(math.log(mean) - sigma2 / 2, math.sqrt(sigma2), size=n)
    return np.clip(np.rint(x), lo, hi).astype(int)


def chat(n: int = 600, rate: float = 4.0, seed: int = 1) -> list[tuple[float, int, int]]:
    """Chat (ShareGPT-like): Poisson arrivals at ``rate`` per second; short prompts, log-normal
    with mean 250 tokens (CV 1.0); replies about as long, mean 300 tokens (CV 0.8)."""
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.exponential(1 / rate, size=n))
    p = lognormal(rng, n, 250, 1.0, 4, 4096)
    o = lognormal(rng, n, 300, 0.8, 1, 2048)
    return [(round(float(a), 4), int(x), int(y)) for a, x, y in zip(t, p, o, strict=True)]


def rag(n: int = 400, rate: float = 1.5, cv: float = 1.5, seed: int = 2
        ) -> list[tuple[float, int, int]]:
    """Summarisation / retrieval-augmented generation: bursty arrivals (gamma inter-arrival
    times, mean ``1/rate``, CV ``cv``); long prompts, mean 2,000 tokens (CV 0.4); short
    answers, mean 100 tokens (CV 0.5)."""
    rng = np.random.default_rng(seed)
    shape = 1 / cv ** 2
    t = np.cumsum(rng.gamma(shape, (1 / rate) / shape, size=n))
    p = lognormal(rng, n, 2000, 0.4, 256, 7000)
    o = lognormal(rng, n, 100, 0.5, 8, 512)
    return [(round(float(a), 4), int(x), int(y)) for a, x, y in zip(t, p, o, strict=True)]


def write(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    csv_path, jsonl_path = out / "chat.csv", out / "rag.jsonl"
    with open(csv_path, "w", encoding="utf-8", newline="\n") as f:
        f.write("arrival_s,prompt_tokens,output_tokens\n")
        for a, p, o in chat():
            f.write(f"{a},{p},{o}\n")
    with open(jsonl_path, "w", encoding="utf-8", newline="\n") as f:
        for a, p, o in rag():
            f.write(json.dumps({"arrival_s": a, "prompt_tokens": p, "output_tokens": o}) + "\n")
    return [csv_path, jsonl_path]


if __name__ == "__main__":
    for path in write(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE):
        print(path)
