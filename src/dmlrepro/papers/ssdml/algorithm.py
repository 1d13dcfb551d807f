"""Algorithm 1 of SSDML (Dutta, Harandi & Sekhar, AAAI 2021) on the generic trainer.

    for t = 1..T:  fix θ_z, learn L (the metric step);  fix L, learn θ_z by SGD (Eq. 3)

with the paper's partition strategy: a random subset of the unlabelled training images plus all
labelled ones forms a partition; its kNN graph and affinity propagation give the triplets; the
mini-batches (``triplets_per_batch`` triplets each) are drawn from this partition for
``epochs_per_partition`` epochs, then a new partition is drawn.

The pieces, each a part of :mod:`dmlrepro.training.loop`'s contract:

* :class:`SSDMLAlgorithm` (a :class:`~dmlrepro.training.loop.Hook`) owns everything that is not
  the network: the labelled rows, the current partition and its mined triplets, the metric step
  (L) and the schedule counter. At the start of an epoch that opens a partition it draws the
  partition (seeded by (seed, partition number)), embeds it with the current network (the
  l2-normalised features before L, as the paper builds its graph) and mines the triplets with
  :func:`~dmlrepro.miners.affinity_propagation.mine_ssdml_triplets` (labels of the labelled rows
  only). All of it is in its ``state_dict``, so a run resumed mid-partition keeps the triplets
  mined by the uninterrupted run instead of re-mining them with a network that has moved on.
* :meth:`SSDMLAlgorithm.plan` is the trainer's batch plan: a seeded shuffle of the partition's
  triplet ids, cut into batches. :class:`TripletBatches` loads a batch: the images of the rows its
  triplets touch (each once) and the triplets re-indexed into them (``batch.extras["triplets"]``);
  array-backed datasets as whole tensors, file-backed ones (CUB, Cars) image by image
  (:func:`load_rows`).
* :class:`SSDMLObjective` embeds the batch, asks the algorithm for the metric step that is due
  on these features (θ fixed: the features are detached), then returns Eq. 3 under the updated L
  (L fixed: it is a plain tensor, the optimiser never sees it).

Decisions (the paper is silent, TARGETS 001-§5 item 1):

* **Alternation period**: one metric step (10 CG iterations of Manopt's CG on the Stiefel
  manifold, warm-started) on the current mini-batch's triplets, then one SGD step on the same
  mini-batch — the order of Algorithm 1 and of the authors' related code — every
  ``metric_every`` mini-batches (``metric_every = 1`` is that code's schedule; between two metric
  steps L stays fixed). The defaults say which period they use (``config/config.yaml``).
* **Mining** happens once per partition, with the network as it is when the partition opens
  (the paper's "construct a sub-graph" per partition); the graph is not rebuilt inside it.
* **Labelled set**: ``labels_per_class`` images of each class drawn once per seed from the fit
  part (``numpy`` generator seeded by (seed, "labelled")); they are in every partition.
* **Partition**: ``partition_size`` unlabelled fit images drawn without replacement, a fresh
  draw per partition (not a disjoint cover of the pool: the paper says "a random subset").
* The metric steps of the baselines (:func:`~dmlrepro.losses.ssml_baselines.make_metric_step`)
  take a partition's features; their network losses (SGD on θ with M fixed) are not built, so
  only ``ssdml`` runs through this module for now.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from pytorch_metric_learning.reducers import MeanReducer, SumReducer
from torch import nn

from dmlrepro import DmlReproError
from dmlrepro.losses.ssdml import SSDMLAngularLoss
from dmlrepro.losses.ssml_baselines import SSDMLStep
from dmlrepro.miners.affinity_propagation import mine_ssdml_triplets
from dmlrepro.training.images import array_batch, embed_rows
from dmlrepro.training.loop import Batch, Hook, Objective

log = logging.getLogger(__name__)

BATCH_GRADIENTS = ("mean", "sum")


def _generator(seed: int, *tags: int | str) -> np.random.Generator:
    words = [int(seed)] + [t if isinstance(t, int) else int.from_bytes(t.encode(), "little") % 2**31 for t in tags]
    return np.random.default_rng(np.random.SeedSequence(words))


def load_rows(index: Any, rows: np.ndarray, spec: Any, transform=None) -> torch.Tensor:
    """The images of dataset ``rows`` as one normalised batch (b, C, H, W): whole tensors for an
    array-backed dataset at the network's input size (``transform`` None: MNIST, Fashion-MNIST,
    CIFAR-10), else each image read from its file through ``transform`` (CUB-200-2011, Cars-196)."""
    if transform is None:
        return array_batch(index, rows, spec)
    return torch.stack([transform(index.image(int(r))) for r in np.asarray(rows)])


def input_transform(index: Any, spec: Any):
    """None where rows load as whole tensors (:func:`load_rows`), else the network's evaluation
    transform (resize, centre crop, normalise): SSDML states no augmentation, so training uses it too."""
    from dmlrepro.models.images import build_transforms
    from dmlrepro.training.images import tensor_fast_path
    return None if tensor_fast_path(index, spec) else build_transforms(spec, train=False)


def draw_labelled(fit_rows: np.ndarray, fit_labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """``per_class`` rows of each class of the fit part, seeded; sorted dataset rows."""
    fit_rows, fit_labels = np.asarray(fit_rows), np.asarray(fit_labels)
    rng = _generator(seed, "labelled")
    picked = []
    for c in np.unique(fit_labels):
        rows = fit_rows[fit_labels == c]
        if len(rows) < per_class:
            raise DmlReproError(f"class {c} has {len(rows)} fit images, fewer than labels_per_class = {per_class}")
        picked.append(rng.choice(rows, size=per_class, replace=False))
    return np.sort(np.concatenate(picked))


def draw_partition(pool: np.ndarray, labelled: np.ndarray, size: int, seed: int, number: int) -> np.ndarray:
    """Partition ``number``: the labelled rows first, then ``size`` unlabelled rows of ``pool``
    drawn without replacement (all of the pool when it is smaller)."""
    pool = np.asarray(pool)
    size = min(int(size), len(pool))
    unlabelled = np.sort(_generator(seed, "partition", int(number)).choice(pool, size=size, replace=False))
    return np.concatenate([np.asarray(labelled), unlabelled]).astype(np.int64)


class SSDMLAlgorithm(Hook):
    """Algorithm 1's state and schedule: partitions, mined triplets, the metric step (module docstring).

    ``index``: the dataset (array-backed, or file-backed with ``transform``); ``fit_rows``/``fit_labels``: the fit part (labels read
    only for the labelled rows drawn from it); ``spec``: the network's input spec."""

    def __init__(self, index: Any, spec: Any, fit_rows: np.ndarray, fit_labels: np.ndarray, *, seed: int,
                 labels_per_class: int = 10, partition_size: int = 9000, epochs_per_partition: int = 10,
                 triplets_per_batch: int = 100, k: int = 10, gamma: float = 0.99, metric_every: int = 1,
                 metric_step: SSDMLStep | None = None, metric_dim: int = 64, device: str | torch.device = "cpu",
                 transform=None):
        if epochs_per_partition < 1 or triplets_per_batch < 1 or metric_every < 1:
            raise DmlReproError("epochs_per_partition, triplets_per_batch and metric_every must be >= 1")
        self.index, self.spec, self.seed = index, spec, int(seed)
        self.transform = transform                       # None: array-backed rows (load_rows)
        self.labelled = draw_labelled(fit_rows, fit_labels, labels_per_class, seed)
        self.labelled_labels = np.asarray(index.labels)[self.labelled]
        self.pool = np.setdiff1d(np.asarray(fit_rows), self.labelled)
        self.partition_size, self.epochs_per_partition = int(partition_size), int(epochs_per_partition)
        self.triplets_per_batch, self.k, self.gamma = int(triplets_per_batch), int(k), float(gamma)
        self.metric_every, self.metric_dim, self.device = int(metric_every), int(metric_dim), device
        self.step = metric_step if metric_step is not None else SSDMLStep()
        self.partition_number = -1                       # the partition whose triplets are held
        self.partition = np.zeros(0, np.int64)           # dataset rows of the partition
        self.triplets = np.zeros((0, 3), np.int64)       # (anchor, positive, negative) partition positions
        self.batches_seen = 0                            # mini-batches since the start of training
        self.metric_steps = 0
        self.orthonormality_errors: list[float] = []     # ‖LᵀL − I‖ after each metric step (w/ orth)
        self.epoch_L: dict[int, torch.Tensor] = {}       # L as each epoch ended (what its validation used)

    # ----------------------------------------------------------------- Hook
    def on_fit_start(self, trainer) -> None:
        # a resumed run has loaded its metric state already: initialise only a fresh step
        # (SSDMLStep holds ``metric``, the baselines' steps ``M``)
        from dmlrepro.losses.ssml_baselines import MahalanobisStep
        fresh = self.step.M is None if isinstance(self.step, MahalanobisStep) else self.step.metric is None
        if fresh:
            self.step.init(trainer.model.embedding_dim, self.metric_dim, seed=self.seed)

    def on_epoch_start(self, trainer, epoch: int) -> None:
        number = (epoch - 1) // self.epochs_per_partition
        if number != self.partition_number:              # a resumed run keeps the triplets it mined
            self._open_partition(trainer.model, number)

    def on_step_end(self, trainer, batch: Batch, loss: float) -> None:
        self.batches_seen += 1

    def on_epoch_end(self, trainer, epoch: int) -> None:
        self.epoch_L[int(epoch)] = self.L.detach().cpu().clone()

    def L_at(self, epoch: int) -> torch.Tensor:
        """L as epoch ``epoch`` ended (the metric the selected network was validated with)."""
        if int(epoch) not in self.epoch_L:
            raise DmlReproError(f"no L recorded for epoch {epoch}")
        return self.epoch_L[int(epoch)]

    def state_dict(self) -> dict[str, Any]:
        return {"partition_number": self.partition_number, "partition": self.partition.copy(),
                "triplets": self.triplets.copy(), "batches_seen": self.batches_seen,
                "metric_steps": self.metric_steps, "metric": self.step.state_dict(),
                "orthonormality_errors": list(self.orthonormality_errors),
                "epoch_L": {e: L.clone() for e, L in self.epoch_L.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.partition_number, self.partition = int(state["partition_number"]), np.asarray(state["partition"])
        self.triplets, self.batches_seen = np.asarray(state["triplets"]), int(state["batches_seen"])
        self.metric_steps = int(state["metric_steps"])
        self.orthonormality_errors = list(state["orthonormality_errors"])
        self.epoch_L = {int(e): L.clone() for e, L in state.get("epoch_L", {}).items()}
        self.step.load_state_dict(state["metric"])

    # ----------------------------------------------------------------- partitions and plans
    def _open_partition(self, model: nn.Module, number: int) -> None:
        rows = draw_partition(self.pool, self.labelled, self.partition_size, self.seed, number)
        features = embed_rows(model, self.index, rows, self.spec, self.transform, device=self.device)
        # the labelled rows are the partition's first positions (draw_partition)
        self.triplets = mine_ssdml_triplets(features, np.arange(len(self.labelled)), self.labelled_labels,
                                            k=self.k, gamma=self.gamma)
        self.partition, self.partition_number = rows, number
        log.info("partition %d: %d images (%d labelled), %d triplets", number, len(rows), len(self.labelled),
                 len(self.triplets))

    def plan(self, epoch: int) -> list[np.ndarray]:
        """The epoch's batches: ids of the partition's triplets, shuffled (seeded by (seed, epoch)),
        ``triplets_per_batch`` each (a last short batch is kept: every triplet is seen each epoch)."""
        order = _generator(self.seed, "epoch", int(epoch)).permutation(len(self.triplets))
        return [order[s:s + self.triplets_per_batch] for s in range(0, len(order), self.triplets_per_batch)]

    # ----------------------------------------------------------------- the metric step
    @property
    def L(self) -> torch.Tensor:
        return self.step.L

    def metric_step_due(self) -> bool:
        return self.batches_seen % self.metric_every == 0

    def update_metric(self, features: torch.Tensor, triplets: torch.Tensor) -> None:
        """Algorithm 1's "fix θ_z, learn L" on the batch's (detached) features and triplets."""
        self.step.update(features.detach(), None, None, mined=triplets)
        self.metric_steps += 1
        if getattr(self.step, "orthogonal", False):
            from dmlrepro.losses.stiefel_metric import orthonormality_error
            self.orthonormality_errors.append(orthonormality_error(self.step.L))


class TripletBatches:
    """``load(planned) -> Batch`` for triplet-id batches of :meth:`SSDMLAlgorithm.plan`: the images of
    the dataset rows the batch's triplets touch, each once, and the triplets as positions into them."""

    def __init__(self, algorithm: SSDMLAlgorithm, device: str | torch.device = "cpu"):
        self.algorithm, self.device = algorithm, torch.device(device)

    def __call__(self, planned: Sequence[np.ndarray]) -> Iterable[Batch]:
        alg = self.algorithm
        for ids in planned:
            positions, local = np.unique(alg.triplets[np.asarray(ids)], return_inverse=True)
            rows = alg.partition[positions]
            x = load_rows(alg.index, rows, alg.spec, alg.transform).to(self.device)
            yield Batch(x, None, rows, {"triplets": torch.from_numpy(local.reshape(-1, 3)).to(self.device)})


class SSDMLObjective(Objective):
    """Eq. 3 on a batch of mined triplets under the algorithm's current L (metric step first when due).

    The projection ``z ↦ Lᵀz`` is applied before the loss, so :class:`SSDMLAngularLoss` runs with
    the identity: ``δ²_L(x, y) = ‖Lᵀx − Lᵀy‖²`` and the mid-point ``(z_a + z_p)/2`` commutes with
    the linear map. L is not a parameter or buffer here: it is the algorithm's state."""

    def __init__(self, algorithm: SSDMLAlgorithm, alpha_deg: float = 40.0, batch_gradient: str = "mean"):
        super().__init__()
        if batch_gradient not in BATCH_GRADIENTS:
            raise DmlReproError(f"train.batch_gradient: '{batch_gradient}' is not one of {', '.join(BATCH_GRADIENTS)}")
        # the network step: Eq. 3's sum over the batch's triplets divided by their number (MatConvNet's
        # cnn_train divides the summed derivative by the batch size: the paper's lr is per triplet), or
        # the raw sum (``sum``: a step T_b times larger at the same lr)
        self.loss = SSDMLAngularLoss(alpha_deg=alpha_deg,
                                     reducer=MeanReducer() if batch_gradient == "mean" else SumReducer())
        self.__dict__["algorithm"] = algorithm          # not a submodule: its state is the hook's

    def forward(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, int]:
        z = model(batch.inputs)
        triplets = batch.extras["triplets"]
        if self.algorithm.metric_step_due():
            self.algorithm.update_metric(z, triplets)
        projected = self.algorithm.step.project(z)
        a, p, n = triplets[:, 0], triplets[:, 1], triplets[:, 2]
        return self.loss(projected, indices_tuple=(a, p, n)), len(triplets)


# --------------------------------------------------------------------------------------------------
# the five semi-supervised baselines through the same Algorithm 1
# --------------------------------------------------------------------------------------------------

class BaselineAlgorithm(SSDMLAlgorithm):
    """Algorithm 1 for Deep-LRML, -ISDML, -SERAPH, -APLLR, -APIT (``metric_step`` a
    :class:`~dmlrepro.losses.ssml_baselines.MahalanobisStep`).

    Same labelled set, partitions and schedule as SSDML's. Decisions (docs/ssdml.md):

    * **Metric step** ("fix θ, learn M with the given method"): once per partition, when it opens, on
      the whole partition's features: these methods are defined on a partition's graph (their closed
      forms and SERAPH's solver take all of its pairs), not on a mini-batch.
    * **Network step** ("fix M, learn θ by SGD"): the method's objective in the features (the pair
      terms of :mod:`dmlrepro.losses.ssml_baselines`) on a mini-batch's pairs, under M's rank-l factor.
    * **Mini-batches**: neighbourhoods. ``triplets_per_batch // (k/2)`` anchors (every partition point
      once per epoch, seeded shuffle) with their k graph neighbours: as many batches per epoch as
      SSDML's, and about as many images each (100 SSDML triplets touch ≤ 300 images), so every method
      gets the same SGD budget; graph pairs are inside a batch by construction.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from dmlrepro.losses.ssml_baselines import MahalanobisStep
        if not isinstance(self.step, MahalanobisStep):
            raise DmlReproError("BaselineAlgorithm needs a baseline's metric step (lrml, isdml, seraph, apllr, apit)")
        self.neighbours = np.zeros((0, self.k), np.int64)   # partition positions of each point's kNN
        self.weights = None                                  # the partition's pair weights C (linear methods)

    @property
    def anchors_per_batch(self) -> int:
        return max(1, self.triplets_per_batch // max(1, self.k // 2))

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["neighbours"] = self.neighbours.copy()
        if self.weights is not None:
            coo = self.weights.tocoo()
            state["weights"] = (coo.row.copy(), coo.col.copy(), coo.data.copy(), coo.shape)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        import scipy.sparse as sp
        super().load_state_dict(state)
        self.neighbours = np.asarray(state["neighbours"])
        if "weights" in state:
            r, c, v, shape = state["weights"]
            self.weights = sp.csr_matrix((v, (r, c)), shape=shape)

    def metric_step_due(self) -> bool:
        return False

    def _open_partition(self, model: nn.Module, number: int) -> None:
        from dmlrepro.losses.ssml_baselines import LINEAR_PAIR_BASELINES, partition_pair_weights
        from dmlrepro.miners.affinity_propagation import knn_neighbours
        rows = draw_partition(self.pool, self.labelled, self.partition_size, self.seed, number)
        features = embed_rows(model, self.index, rows, self.spec, self.transform, device=self.device)
        labelled = np.arange(len(self.labelled))
        self.neighbours = knn_neighbours(features, self.k)
        self.step.update(features, labelled, self.labelled_labels)         # fix θ, learn M
        self.metric_steps += 1
        name = self.step.name
        if name in LINEAR_PAIR_BASELINES:
            p = self.step.params
            self.weights = partition_pair_weights(
                name, features, labelled, self.labelled_labels, k=int(p.get("k", self.k)),
                gamma=float(p.get("gamma", self.gamma)), gamma_s=float(p.get("gamma_s", 1.0)),
                gamma_d=float(p.get("gamma_d", 1.0)), lam=float(p.get("lam", 1.0)))
        self.partition, self.partition_number = rows, number
        log.info("partition %d (%s): %d images (%d labelled), metric step done", number, name, len(rows),
                 len(self.labelled))

    def plan(self, epoch: int) -> list[np.ndarray]:
        """The epoch's batches: anchor positions (a seeded shuffle of the partition), ``anchors_per_batch``
        each; :class:`NeighbourhoodBatches` adds their neighbours."""
        order = _generator(self.seed, "epoch", int(epoch)).permutation(len(self.partition))
        step = self.anchors_per_batch
        return [order[s:s + step] for s in range(0, len(order), step)]

    def partition_labels(self, positions: np.ndarray) -> np.ndarray:
        """Labels of partition positions as the baselines see them: the class of a labelled row, −1 else."""
        out = np.full(len(positions), -1, np.int64)
        lab = positions < len(self.labelled)
        out[lab] = self.labelled_labels[positions[lab]]
        return out


class NeighbourhoodBatches:
    """``load(planned) -> Batch`` for :meth:`BaselineAlgorithm.plan`: the anchors and their graph
    neighbours (each image once); ``batch.extras["positions"]`` their partition positions."""

    def __init__(self, algorithm: BaselineAlgorithm, device: str | torch.device = "cpu"):
        self.algorithm, self.device = algorithm, torch.device(device)

    def __call__(self, planned: Sequence[np.ndarray]) -> Iterable[Batch]:
        alg = self.algorithm
        for anchors in planned:
            positions = np.unique(np.concatenate([np.asarray(anchors), alg.neighbours[np.asarray(anchors)].ravel()]))
            rows = alg.partition[positions]
            x = load_rows(alg.index, rows, alg.spec, alg.transform).to(self.device)
            yield Batch(x, None, rows, {"positions": positions})


class BaselineObjective(Objective):
    """A baseline's network step: its pair objective on the batch under the fixed M (rank-l factor)."""

    def __init__(self, algorithm: BaselineAlgorithm):
        super().__init__()
        self.__dict__["algorithm"] = algorithm

    def forward(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, int]:
        from dmlrepro.losses.ssml_baselines import LINEAR_PAIR_BASELINES, linear_pair_loss, seraph_pair_loss
        alg = self.algorithm
        projected = alg.step.project(model(batch.inputs))
        positions = batch.extras["positions"]
        if alg.step.name in LINEAR_PAIR_BASELINES:
            return linear_pair_loss(projected, alg.weights, positions)
        p = alg.step.params
        return seraph_pair_loss(projected, alg.partition_labels(positions), eta=float(p.get("eta", 1.0)),
                                mu=p.get("mu"))
