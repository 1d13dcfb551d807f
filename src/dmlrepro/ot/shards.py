"""All-pairs WMD in row shards: each shard is one Snakemake job, checkpointed while it runs.

Shard ``s`` of ``S`` owns a block of rows ``[r0, r1)`` of the upper triangle (pairs i < j), sized
so that shards hold about equal numbers of pairs. The shard writes ``emd`` and ``rwmd`` for its
rows (entries with j <= i are NaN). While it runs it saves its progress every
``checkpoint_seconds`` beside the output (``<out>.partial.npz``); a restarted job solves only
what is still missing. ``merge_shards`` mirrors the triangle into the full symmetric matrices.

Two engines fill ``emd`` (``ot.engine`` in the configuration):

* ``exact`` (default): the exact WMD, row by row (:mod:`dmlrepro.ot.engine`) on ``processes``
  worker processes; progress is saved per finished row.
* ``sinkhorn``: the feasible-rounded entropic upper bound of :mod:`dmlrepro.ot.sinkhorn`, solved
  in batches of pairs on ``device`` (``cpu`` or ``cuda``) with ``sinkhorn_options``
  (:data:`dmlrepro.ot.sinkhorn.OPTION_DEFAULTS`). All pairs of the shard are batched by document
  length at once; the batches depend only on the shard's rows, the documents and the options, and
  progress is saved per finished batch (a pair is done when its value is no longer NaN), so a
  resumed shard gives bit-identical values. torch runs with ``processes`` threads.

``rwmd`` is the exact RWMD lower bound for both engines, computed by the same code as in the
exact engine (bit-identical). Each shard records its engine and (normalised) options
(``engine``, ``engine_options`` as JSON; ``engine_info``: device, eps, convergence, not compared),
and ``merge_shards`` refuses shards computed by different engines or options; shards written
before engines existed count as ``exact``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import os
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from tqdm import tqdm

from dmlrepro import DmlReproError
from dmlrepro.data.pointsets import Pointsets
from dmlrepro.io import save_npy, save_npz
from dmlrepro.ot import engine as exact_engine
from dmlrepro.ot.emd import shard_row_bounds
from dmlrepro.ot.engine import PreparedDocs, StackedDocs, upper_rows

log = logging.getLogger(__name__)

ENGINES = ("exact", "sinkhorn")


def pointsets_fingerprint(ps: Pointsets) -> str:
    """A short hash of what the distances depend on, so a stale partial shard is never resumed."""
    h = hashlib.sha256()
    for arr in (ps.offsets, ps.weights, ps.vectors):
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()[:16]


def engine_spec(engine: str, sinkhorn_options: dict | None = None) -> tuple[str, str]:
    """``(engine, options as canonical JSON)``: what a shard records and what must agree to merge.

    ``exact`` has no options (``sinkhorn_options`` is ignored there); ``sinkhorn`` gets its
    defaults filled in, so ``{}`` and the explicit defaults are the same computation."""
    if engine not in ENGINES:
        raise DmlReproError(f"unknown ot engine '{engine}' (known: {', '.join(ENGINES)})")
    if engine == "exact":
        return engine, "{}"
    from dmlrepro.ot.sinkhorn import normalise_options
    return engine, json.dumps(normalise_options(sinkhorn_options), sort_keys=True)


def _stored_spec(z) -> tuple[str, str]:
    """The engine spec stored in a shard or partial file (files from before engines: exact)."""
    if "engine" not in z.files:
        return "exact", "{}"
    return str(z["engine"]), str(z["engine_options"])


def _partial_path(out_path: Path) -> Path:
    return out_path.with_name(out_path.name + ".partial.npz")


def compute_shard(ps: Pointsets, shard: int, n_shards: int, out_path: str | os.PathLike,
                  checkpoint_seconds: float = 60.0, progress: bool = True, processes: int = 1,
                  engine: str = "exact", sinkhorn_options: dict | None = None, device: str = "cpu") -> None:
    """Compute WMD and RWMD for the pairs (i, j), i < j, whose row i falls in this shard.

    ``engine``: ``exact`` or ``sinkhorn`` (see the module docstring). ``processes``: worker
    processes of the exact engine and of the RWMD rows, and torch's thread count for Sinkhorn
    (restored afterwards). ``sinkhorn_options`` and ``device`` (``cpu``, ``cuda``, ``cuda:N``,
    ``auto``) apply to ``sinkhorn`` only and are ignored by ``exact``.
    """
    out_path = Path(out_path)
    n = len(ps)
    spec = engine_spec(engine, sinkhorn_options)
    if not 0 <= shard < n_shards:
        raise DmlReproError(f"shard index {shard} out of range for n_shards={n_shards}")
    if engine == "sinkhorn":
        from dmlrepro.ot.sinkhorn import resolve_device
        device = resolve_device(device)   # fails early and clearly when CUDA is missing
    r0, r1 = shard_row_bounds(n, n_shards)[shard]
    fingerprint = pointsets_fingerprint(ps)
    emd = np.full((r1 - r0, n), np.nan)
    rwmd = np.full((r1 - r0, n), np.nan)
    done = np.zeros(r1 - r0, dtype=bool)

    partial = _partial_path(out_path)
    if partial.exists():
        with np.load(partial) as z:
            if (str(z["fingerprint"]) == fingerprint and tuple(z["rows"]) == (r0, r1) and int(z["n"]) == n
                    and _stored_spec(z) == spec):
                emd, rwmd, done = z["emd"], z["rwmd"], z["done"]
                log.info("resuming shard %d/%d: %d of %d rows already done", shard + 1, n_shards, done.sum(), r1 - r0)
            else:
                log.warning("ignoring stale partial shard %s (other pointsets, shard layout, engine or options)",
                            partial)
    meta = dict(rows=np.array([r0, r1]), n=n, fingerprint=np.asarray(fingerprint),
                engine=np.asarray(spec[0]), engine_options=np.asarray(spec[1]))

    def checkpoint() -> None:
        save_npz(partial, emd=emd, rwmd=rwmd, done=done, **meta)

    if engine == "exact":
        _exact_rows(ps, shard, n_shards, r0, r1, emd, rwmd, done, checkpoint, checkpoint_seconds, progress,
                    processes)
        info = {}
    else:
        solver = _sinkhorn_rows(ps, shard, n_shards, r0, r1, emd, rwmd, done, checkpoint, checkpoint_seconds,
                                progress, processes, json.loads(spec[1]), device)
        info = {"device": str(device), "eps": solver.eps, "unconverged_pairs": solver.unconverged,
                "max_marginal_error": solver.max_error}
    save_npz(out_path, emd=emd, rwmd=rwmd, **meta, engine_info=np.asarray(json.dumps(info, sort_keys=True)))
    if partial.exists():
        partial.unlink()


def _exact_rows(ps, shard, n_shards, r0, r1, emd, rwmd, done, checkpoint, checkpoint_seconds, progress,
                processes) -> None:
    """The exact engine: the rows not done yet, one finished row at a time."""
    n = len(ps)
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


def _sinkhorn_rows(ps, shard, n_shards, r0, r1, emd, rwmd, done, checkpoint, checkpoint_seconds, progress,
                   processes, options, device):
    """The Sinkhorn engine: exact RWMD rows first, then every batch of pairs not done yet."""
    import torch

    from dmlrepro.ot.sinkhorn import sinkhorn_engine

    last_save = time.monotonic()

    def maybe_checkpoint() -> None:
        nonlocal last_save
        if time.monotonic() - last_save > checkpoint_seconds:
            checkpoint()
            last_save = time.monotonic()

    def upper_done(i: int) -> bool:
        return bool(np.isfinite(emd[i - r0, i + 1:]).all() and np.isfinite(rwmd[i - r0, i + 1:]).all())

    prepared = PreparedDocs.from_pointsets(ps)
    rwmd_todo = [i for i in range(r0, r1) if not done[i - r0] and not np.isfinite(rwmd[i - r0, i + 1:]).all()]

    def store_rwmd(i: int, row: np.ndarray) -> None:
        rwmd[i - r0, i + 1:] = row
        done[i - r0] = upper_done(i)
        maybe_checkpoint()

    _rwmd_rows(StackedDocs(prepared), rwmd_todo, processes, store_rwmd)

    threads_before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(processes)))   # the job's thread budget: no oversubscription
    try:
        solver = sinkhorn_engine(ps, options, device=device, prepared=prepared)
        missing = np.array([int(np.isnan(emd[i - r0, i + 1:]).sum()) for i in range(r0, r1)], dtype=np.int64)
        with tqdm(total=int(missing.sum()), desc=f"Sinkhorn WMD shard {shard + 1}/{n_shards}", unit="pair",
                  disable=not progress, mininterval=5.0) as bar:
            for ci, cj in solver.upper_row_batches(np.arange(r0, r1)):
                row = np.minimum(ci, cj) - r0                      # stored at row min (in this shard), column max
                col = np.maximum(ci, cj)
                new = np.isnan(emd[row, col])
                if not new.any():
                    continue                                       # solved before the restart
                emd[row, col] = solver.solve(ci, cj)
                missing -= np.bincount(row[new], minlength=len(missing))
                done[row] = missing[row] == 0                      # (every RWMD row is complete by now)
                bar.update(int(new.sum()))
                if not done.all():
                    maybe_checkpoint()
        solver.warn_unconverged()
    finally:
        torch.set_num_threads(threads_before)
    if not done.all():   # rows without pairs (the last document) are done as soon as they exist
        for i in range(r0, r1):
            done[i - r0] = upper_done(i)
    if not done.all():
        raise DmlReproError(f"sinkhorn shard {shard + 1}/{n_shards}: rows {np.flatnonzero(~done)[:5] + r0} "
                            "left incomplete")
    return solver


# ------------------------------------------------------------------------------------ RWMD rows
def rwmd_row(stack: StackedDocs, i: int) -> np.ndarray:
    """RWMD of document ``i`` against every document j > i: the exact engine's computation
    (:func:`dmlrepro.ot.engine.solve_row`, the same blocks and reductions, bit-identical values)
    without its EMD solves."""
    return exact_engine.solve_row(stack, i, with_emd=False)[1]


_RWMD_STACK: StackedDocs | None = None


def _init_rwmd_worker(stack: StackedDocs) -> None:
    global _RWMD_STACK
    _RWMD_STACK = stack


def _rwmd_task(i: int) -> tuple[int, np.ndarray]:
    return i, rwmd_row(_RWMD_STACK, i)


def _rwmd_rows(stack: StackedDocs, rows: Iterable[int], processes: int,
               on_row: Callable[[int, np.ndarray], None]) -> None:
    """RWMD rows on ``processes`` forked workers (as the exact engine's rows)."""
    rows = sorted(rows)
    if processes <= 1 or len(rows) < 2:
        for i in rows:
            on_row(i, rwmd_row(stack, i))
        return
    ctx = mp.get_context("fork")
    with ctx.Pool(processes, initializer=_init_rwmd_worker, initargs=(stack,)) as pool:
        for i, row in pool.imap_unordered(_rwmd_task, rows, chunksize=max(1, len(rows) // (processes * 16))):
            on_row(i, row)


def merge_shards(shard_paths: Sequence[str | os.PathLike], emd_out: str | os.PathLike,
                 rwmd_out: str | os.PathLike | None = None) -> np.ndarray:
    """Assemble the full symmetric matrices (zero diagonal) from all shards of one dataset."""
    shard_paths = [Path(p) for p in shard_paths]
    if not shard_paths:
        raise DmlReproError("no EMD shards to merge")
    with np.load(shard_paths[0]) as z:
        n, fingerprint, spec = int(z["n"]), str(z["fingerprint"]), _stored_spec(z)
    emd = np.zeros((n, n))
    rwmd = np.zeros((n, n))
    covered = np.zeros(n, dtype=bool)
    for path in shard_paths:
        with np.load(path) as z:
            if int(z["n"]) != n or str(z["fingerprint"]) != fingerprint:
                raise DmlReproError(f"{path}: shard computed for other pointsets than {shard_paths[0]}")
            if _stored_spec(z) != spec:
                other = _stored_spec(z)
                raise DmlReproError(f"{path} was computed by engine '{other[0]}' with options {other[1]}, but "
                                    f"{shard_paths[0]} by engine '{spec[0]}' with options {spec[1]}: "
                                    "recompute the shards with one engine and one set of options")
            r0, r1 = (int(v) for v in z["rows"])
            if covered[r0:r1].any():
                raise DmlReproError(f"{path}: rows [{r0}, {r1}) overlap another shard")
            covered[r0:r1] = True
            # read each array once: z[key] decompresses the whole array on every access
            block_emd, block_rwmd = z["emd"], z["rwmd"]
            upper = np.triu(np.ones((r1 - r0, n), dtype=bool), k=r0 + 1)
            emd[r0:r1][upper] = block_emd[upper]
            rwmd[r0:r1][upper] = block_rwmd[upper]
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

