"""All-pairs WMD in row shards: each shard is one Snakemake job, checkpointed while it runs.

Shard ``s`` of ``S`` owns a block of rows ``[r0, r1)`` of the upper triangle (pairs i < j), sized
so that shards hold about equal numbers of pairs. Within a shard the rows are solved by the exact
engine (:mod:`dmlrepro.ot.engine`) on ``processes`` cores. The shard writes ``emd`` and ``rwmd``
for its rows (entries with j <= i are NaN). While it runs it saves the finished rows every
``checkpoint_seconds`` beside the output (``<out>.partial.npz``); a restarted job solves only the
rows still missing. ``merge_shards`` mirrors the triangle into the full symmetric matrices.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from dmlrepro import DmlReproError
from dmlrepro.data.pointsets import Pointsets
from dmlrepro.io import save_npy, save_npz
from dmlrepro.ot.emd import shard_row_bounds
from dmlrepro.ot.engine import PreparedDocs, upper_rows

log = logging.getLogger(__name__)


def pointsets_fingerprint(ps: Pointsets) -> str:
    """A short hash of what the distances depend on, so a stale partial shard is never resumed."""
    h = hashlib.sha256()
    for arr in (ps.offsets, ps.weights, ps.vectors):
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()[:16]


def _partial_path(out_path: Path) -> Path:
    return out_path.with_name(out_path.name + ".partial.npz")


def compute_shard(ps: Pointsets, shard: int, n_shards: int, out_path: str | os.PathLike,
                  checkpoint_seconds: float = 60.0, progress: bool = True, processes: int = 1) -> None:
    """Compute WMD and RWMD for the pairs (i, j), i < j, whose row i falls in this shard."""
    out_path = Path(out_path)
    n = len(ps)
    if not 0 <= shard < n_shards:
        raise DmlReproError(f"shard index {shard} out of range for n_shards={n_shards}")
    r0, r1 = shard_row_bounds(n, n_shards)[shard]
    fingerprint = pointsets_fingerprint(ps)
    emd = np.full((r1 - r0, n), np.nan)
    rwmd = np.full((r1 - r0, n), np.nan)
    done = np.zeros(r1 - r0, dtype=bool)

    partial = _partial_path(out_path)
    if partial.exists():
        with np.load(partial) as z:
            if str(z["fingerprint"]) == fingerprint and tuple(z["rows"]) == (r0, r1) and int(z["n"]) == n:
                emd, rwmd, done = z["emd"], z["rwmd"], z["done"]
                log.info("resuming shard %d/%d: %d of %d rows already done", shard + 1, n_shards, done.sum(), r1 - r0)
            else:
                log.warning("ignoring stale partial shard %s (other pointsets or shard layout)", partial)

    def checkpoint() -> None:
        save_npz(partial, emd=emd, rwmd=rwmd, done=done, rows=np.array([r0, r1]), n=n,
                 fingerprint=np.asarray(fingerprint))

    todo = [i for i in range(r0, r1) if not done[i - r0]]
    last_save = time.monotonic()
    with tqdm(total=sum(n - 1 - i for i in todo), desc=f"WMD shard {shard + 1}/{n_shards}", unit="pair",
              disable=not progress, mininterval=5.0) as bar:
        def store(i: int, emd_row: np.ndarray, rwmd_row: np.ndarray) -> None:
            nonlocal last_save
            emd[i - r0, i + 1:] = emd_row
            rwmd[i - r0, i + 1:] = rwmd_row
            done[i - r0] = True
            bar.update(len(emd_row))
            if time.monotonic() - last_save > checkpoint_seconds and not done.all():
                checkpoint()
                last_save = time.monotonic()

        upper_rows(PreparedDocs.from_pointsets(ps), todo, processes=processes, on_row=store)
    save_npz(out_path, emd=emd, rwmd=rwmd, rows=np.array([r0, r1]), n=n, fingerprint=np.asarray(fingerprint))
    if partial.exists():
        partial.unlink()
def merge_shards(shard_paths: Sequence[str | os.PathLike], emd_out: str | os.PathLike,
                 rwmd_out: str | os.PathLike | None = None) -> np.ndarray:
    """Assemble the full symmetric matrices (zero diagonal) from all shards of one dataset."""
    shard_paths = [Path(p) for p in shard_paths]
    if not shard_paths:
        raise DmlReproError("no EMD shards to merge")
    with np.load(shard_paths[0]) as z:
        n, fingerprint = int(z["n"]), str(z["fingerprint"])
    emd = np.zeros((n, n))
    rwmd = np.zeros((n, n))
    covered = np.zeros(n, dtype=bool)
    for path in shard_paths:
        with np.load(path) as z:
            if int(z["n"]) != n or str(z["fingerprint"]) != fingerprint:
                raise DmlReproError(f"{path}: shard computed for other pointsets than {shard_paths[0]}")
            r0, r1 = (int(v) for v in z["rows"])
            if covered[r0:r1].any():
                raise DmlReproError(f"{path}: rows [{r0}, {r1}) overlap another shard")
            covered[r0:r1] = True
            for i in range(r0, r1):
                emd[i, i + 1:] = z["emd"][i - r0, i + 1:]
                rwmd[i, i + 1:] = z["rwmd"][i - r0, i + 1:]
    if not covered.all():
        raise DmlReproError(f"EMD shards do not cover rows {np.flatnonzero(~covered)[:5].tolist()}...")
    upper = np.triu_indices(n, 1)
    if not np.isfinite(emd[upper]).all():
        raise DmlReproError("EMD shards contain missing values")
    emd = emd + emd.T
    rwmd = rwmd + rwmd.T
    save_npy(emd_out, emd)
    if rwmd_out is not None:
        save_npy(rwmd_out, rwmd)
    return emd

