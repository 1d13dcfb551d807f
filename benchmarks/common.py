"""Shared by the benchmarks: real pointsets from the data mirror and a machine description."""

from __future__ import annotations

import datetime
import os
import platform
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
DATASET_CONFIGS = {
    "bbcsport": {"source": "text", "stop_words": "default"},
    "twitter": {"source": "text", "stop_words": None, "empty_documents": "drop"},
    "amazon": {"source": "text", "stop_words": "default"},
}


def mirror() -> Path:
    return Path(os.environ.get("DMLREPRO_DATA_MIRROR", REPO.parent / "shared" / "data"))


def load_dataset(name: str):
    from dmlrepro.data.build import build_pointsets
    ps, _ = build_pointsets(name, DATASET_CONFIGS[name], mirror())
    return ps


def sample(ps, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return ps.subset(np.sort(rng.choice(len(ps), min(n, len(ps)), replace=False)))


def timed(fn, *args, clock=time.perf_counter, **kwargs):
    """``fn(*args, **kwargs)`` and the seconds it took on ``clock`` (wall time by default;
    ``time.process_time`` gives this process's CPU time, which other processes on a shared
    machine do not inflate, meaningful for single-threaded CPU work)."""
    t0 = clock()
    result = fn(*args, **kwargs)
    return result, clock() - t0


def timed_median(repeats: int, fn, *args, clock=time.perf_counter, **kwargs):
    """The first run's result and the median time of ``repeats`` runs: searches lasting 0.3-3 s
    move by 30% or more with a stall of the shared machine or a pool's start-up."""
    result, first = timed(fn, *args, clock=clock, **kwargs)
    times = [first] + [timed(fn, *args, clock=clock, **kwargs)[1] for _ in range(repeats - 1)]
    return result, float(np.median(times))


def machine(device_note: str = "") -> str:
    """CPU, cores, current load (timings on a shared machine vary with it), versions and date."""
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import ot
    import torch
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    device = f"; {device_note}" if device_note else ""
    return (f"{cpu}, {cores} cores{load}{device}; Python {platform.python_version()}, numpy {np.__version__}, "
            f"POT {ot.__version__}, torch {torch.__version__}; {datetime.datetime.now().isoformat(timespec='minutes')}"
            f"; code {code_version()}")


def code_version() -> str:
    """The commit measured, marked '+changes' when the working tree differs from it."""
    import subprocess
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":!benchmarks/results"],  # the results appended so far are not code
                               cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"{head}+changes" if dirty else head


def append_markdown(path: Path, title: str, table: str) -> None:
    from dmlrepro.io import write_text
    old = path.read_text() if path.exists() else ""
    write_text(path, old + f"\n## {title}\n\n{machine()}\n\n{table}\n")
