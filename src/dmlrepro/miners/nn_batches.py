"""Nearest-neighbour batches (PL manifolds Sec. 3.1.1; STML's ``NNBatchSampler``).

A batch is N random seed images, each followed by its k − 1 nearest neighbours (k = |B| / N), so
that every point of the batch has neighbours close enough for a local linear piece. Neighbours
are found by faiss (exact L2, ``IndexFlatL2``) in an embedding of the whole training set that
the caller recomputes every epoch (:class:`dmlrepro.training.nn_batches.NeighbourBatches`).

Decisions (TARGETS 003-§5.1):

* **|B| counts images, not views.** STML concatenates the views of a batch after sampling
  (``torch.cat([y] * view)``), and Paper 003 follows STML ("a mini-batch size of 100 samples,
  with each batch having two random augmentations of an image as proposed in [19]"): 100 images,
  200 embeddings.
* **k = 5 images per seed, N = |B| / 5 = 20 seeds** (``n_per_seed``): STML's default
  ``num_neighbors`` 5 (also its ``nn_per_image``); Paper 003 gives no N.
* **Self first**: a seed's group is the seed and its k − 1 nearest *other* images (STML takes the
  top-k including self, which is the same unless embeddings coincide).
* **Seeds without replacement over the epoch** (a seeded permutation cut into groups of N);
  |D| // |B| batches per epoch, as STML. STML draws each batch's seeds independently (so a seed
  may recur within an epoch); ours cover distinct seeds. Neighbour groups may overlap, so an image
  can appear twice in a batch, as in STML.
* The embedding space is the caller's choice; Paper 003's text implies the momentum encoder (the
  brief), STML uses the student's 1024-d ``embedding_g``, un-normalised.
"""

from __future__ import annotations

import numpy as np

from dmlrepro import DmlReproError


def _epoch_generator(seed: int, epoch: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch)]))


def neighbour_table(embeddings: np.ndarray, k: int) -> np.ndarray:
    """(n, k) int64: row i = i followed by its k − 1 nearest other rows (exact L2, faiss)."""
    import faiss

    x = np.ascontiguousarray(np.asarray(embeddings, dtype=np.float32))
    if x.ndim != 2:
        raise DmlReproError(f"nn_batches: embeddings must be (n, d), got shape {x.shape}")
    n = x.shape[0]
    if not 1 <= int(k) <= n:
        raise DmlReproError(f"nn_batches: k={k} images per seed must lie in [1, n={n}]")
    index = faiss.IndexFlatL2(x.shape[1])
    index.add(x)
    _, found = index.search(x, min(n, int(k) + 1))            # one extra, in case self is not first
    table = np.empty((n, int(k)), dtype=np.int64)
    table[:, 0] = np.arange(n)
    for i in range(n):
        others = found[i][found[i] != i]
        table[i, 1:] = others[: int(k) - 1]
    return table


def plan_from_table(table: np.ndarray, rows: np.ndarray, batch_size: int, n_per_seed: int,
                    seed: int, epoch: int) -> list[np.ndarray]:
    """Batches of dataset ``rows`` from a neighbour ``table`` (positions into ``rows``)."""
    rows, table = np.asarray(rows), np.asarray(table)
    k = int(n_per_seed)
    if k < 1 or batch_size % k:
        raise DmlReproError(f"nn_batches: batch_size {batch_size} is not a multiple of n_per_seed {n_per_seed}")
    if table.shape != (len(rows), k):
        raise DmlReproError(f"nn_batches: neighbour table must be ({len(rows)}, {k}), got {table.shape}")
    seeds_per_batch, n_batches = batch_size // k, len(rows) // batch_size
    if n_batches == 0:
        raise DmlReproError(f"nn_batches: {len(rows)} rows cannot fill one batch of {batch_size}")
    order = _epoch_generator(seed, epoch).permutation(len(rows))
    return [rows[table[order[b * seeds_per_batch:(b + 1) * seeds_per_batch]].reshape(-1)] for b in range(n_batches)]


def nn_batch_plan(embeddings: np.ndarray, rows: np.ndarray, batch_size: int, n_per_seed: int,
                  seed: int, epoch: int) -> list[np.ndarray]:
    """One epoch of nearest-neighbour batches: ``len(rows) // batch_size`` arrays of
    ``batch_size`` dataset rows, each ``batch_size / n_per_seed`` seed groups (the seed, then its
    ``n_per_seed − 1`` nearest neighbours in ``embeddings``, which are aligned with ``rows``).
    Deterministic in (seed, epoch)."""
    if len(np.asarray(embeddings)) != len(np.asarray(rows)):
        raise DmlReproError(f"nn_batches: {len(embeddings)} embeddings for {len(rows)} rows")
    return plan_from_table(neighbour_table(embeddings, n_per_seed), rows, batch_size, n_per_seed, seed, epoch)
