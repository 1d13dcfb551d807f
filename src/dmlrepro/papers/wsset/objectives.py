"""Training objectives: one per row family of Tables I/II, all with one call signature.

``objective(model, batch) -> (loss, n_terms)``. An objective is an ``nn.Module`` so that the
parameters some of them own (a softmax classifier, a rotation head) are optimised and
checkpointed with the encoder. Losses, miners and augmentations live in ``losses/``,
``miners/`` and ``data/augment.py``; an objective only composes them, the way
pytorch-metric-learning composes a miner's index tuple with a loss. Each is registered under the
name a method's ``MethodSpec.objective`` gives (``@objective("...")``); :func:`build_objective`
looks the name up, so a new objective is one decorated builder, not a branch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import torch

from dmlrepro import DmlReproError
from dmlrepro.losses.approx_emd import ApproxEMDLoss
from dmlrepro.losses.triplet import WeightedTripletMarginLoss
from dmlrepro.papers.wsset.emd_triplets import EMDTripletMiner
from dmlrepro.training import loop


class Objective(loop.Objective):
    """A batch (``training/loop.py:Batch``) holds ``inputs = (x, mask)``: (b, L, d + 1) zero-padded
    sets and the (b, L) padding mask (True on padding); ``labels`` for supervised methods; the
    extra ``"emd"``, the (b, b) EMD sub-matrix, for EMD-based methods."""

    def batches(self, fit: np.ndarray, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
        """Mini-batches of one epoch: a shuffled pass over the fit documents."""
        order = fit[rng.permutation(len(fit))]
        for s in range(0, len(order), batch_size):
            yield order[s:s + batch_size]


class EMDTripletObjective(Objective):
    """WSSET (EMD-weighted negatives) and SSET (w = 1): pseudo-labels from EMD."""

    def __init__(self, miner: EMDTripletMiner, loss: WeightedTripletMarginLoss):
        super().__init__()
        self.miner, self.loss = miner, loss

    def forward(self, model, batch):
        emb = model(*batch.inputs)
        triplets = self.miner(emb.detach(), batch.extras["emd"])
        return self.loss(emb, indices_tuple=triplets), len(triplets[0])


class ApproxEMDObjective(Objective):

    def __init__(self, loss: ApproxEMDLoss):
        super().__init__()
        self.loss = loss

    def forward(self, model, batch):
        emb = model(*batch.inputs)
        return self.loss(emb, batch.extras["emd"]), emb.shape[0] ** 2


class SupervisedTripletObjective(Objective):
    """+TL rows and the fine-tuning stage of Ours+Int./Ext.: semi-hard triplets on labels."""

    def __init__(self, margin: float = 0.1, distance: str = "squared"):
        super().__init__()
        from dmlrepro.miners.semihard import SemiHardTripletMiner
        self.miner = SemiHardTripletMiner(metric=distance)
        self.loss = WeightedTripletMarginLoss(margin)

    def forward(self, model, batch):
        emb = model(*batch.inputs)
        triplets = self.miner(emb.detach(), batch.labels)
        return self.loss(emb, indices_tuple=triplets), len(triplets[0])


class SoftmaxObjective(Objective):
    """+CE rows and RepSet: a linear softmax layer on the embedding; kNN uses the embedding."""

    def __init__(self, embedding_dim: int, n_classes: int):
        super().__init__()
        from dmlrepro.losses.classification import SoftmaxClassifierLoss
        self.loss = SoftmaxClassifierLoss(embedding_dim, n_classes)

    def forward(self, model, batch):
        emb = model(*batch.inputs)
        return self.loss(emb, batch.labels), emb.shape[0]


class ExemplarObjective(Objective):
    """Exemplar (Dosovitskiy et al.): every fit document is its own class, seen only through
    random augmentations of its pointset (``data/augment.py``)."""

    def __init__(self, fit: np.ndarray, embedding_dim: int, augment_cfg: dict[str, Any], seed: int,
                 weight_feature: str = "count"):
        super().__init__()
        from dmlrepro.data.augment import Augmenter
        from dmlrepro.losses.classification import SoftmaxClassifierLoss
        self.instance_of = {int(doc): k for k, doc in enumerate(fit)}
        self.loss = SoftmaxClassifierLoss(embedding_dim, len(fit))
        self.augment = Augmenter(augment_cfg, weight_feature=weight_feature)
        self.generator = torch.Generator().manual_seed(seed)

    # the augmentation stream is part of the checkpoint, so a resumed run draws the same copies
    def get_extra_state(self):
        return self.generator.get_state()

    def set_extra_state(self, state):
        self.generator.set_state(state)

    def forward(self, model, batch):
        x, mask = self.augment(*batch.inputs, self.generator)  # CPU draws, moved to the batch's device
        emb = model(x, mask)
        target = torch.as_tensor([self.instance_of[int(i)] for i in batch.index], device=emb.device)
        return self.loss(emb, target), emb.shape[0]


class UDMLSSObjective(Objective):
    """UDML-SS (Cao et al.), adapted to sets in ``papers/wsset/udml_ss.py``: positives are neighbours
    in a fixed intermediate space (document centroids), plus a transform-prediction task."""

    def __init__(self, centroids: np.ndarray, fit: np.ndarray, embedding_dim: int, input_dim: int,
                 params: dict[str, Any], seed: int):
        super().__init__()
        from dmlrepro.papers.wsset import udml_ss
        self.udml = udml_ss
        self.fit = np.asarray(fit)
        self.neighbours = udml_ss.intermediate_neighbours(centroids[self.fit], int(params.get("neighbours", 5)))
        self.criterion = udml_ss.UDMLSSLoss(embedding_dim, input_dim - 1, margin=float(params.get("margin", 0.1)),
                                            rotation_weight=float(params.get("rotation_weight", 0.1)),
                                            n_rotations=int(params.get("rotations", 4)), seed=seed)
        self.position = {int(doc): k for k, doc in enumerate(self.fit)}

    def batches(self, fit, batch_size, rng):
        for rows in self.udml.neighbour_batches(len(self.fit), self.neighbours, batch_size, rng):
            yield self.fit[rows]

    def forward(self, model, batch):
        rows = np.asarray([self.position[int(i)] for i in batch.index])
        return self.criterion(model, *batch.inputs, rows, self.neighbours)


@dataclass
class ObjectiveContext:
    """What a builder may read besides its method's parameters. ``centroids`` is called only by
    the objective that needs it (UDML-SS's intermediate space)."""

    embedding_dim: int
    input_dim: int
    n_classes: int
    fit: np.ndarray
    emd_fit: np.ndarray | None
    centroids: Callable[[], np.ndarray]
    seed: int
    weight_feature: str = "count"


_BUILDERS: dict[str, Callable[[str, dict[str, Any], ObjectiveContext], Objective]] = {}


def objective(*names: str):
    """Register a builder ``(name, params, context) -> Objective`` under ``names``."""
    def register(builder):
        for name in names:
            _BUILDERS[name] = builder
        return builder
    return register


@objective("wsset", "sset")
def _emd_triplets(name, params, ctx):
    miner = EMDTripletMiner(weighting="emd" if name == "wsset" else "none", c=params.get("c", 7.0),
                            variant=params.get("variant", "paper"),
                            positive_percentile=params.get("positive_percentile", 20.0))
    return EMDTripletObjective(miner, WeightedTripletMarginLoss(params.get("margin", 0.1)))


@objective("approx_emd")
def _approx_emd(name, params, ctx):
    scale = params.get("emd_scale", "auto")
    if scale == "auto":  # largest training EMD maps to the diameter^2 (4) of the unit sphere
        scale = float(ctx.emd_fit.max()) / 4.0 if ctx.emd_fit is not None and ctx.emd_fit.size else 1.0
    return ApproxEMDObjective(ApproxEMDLoss(float(scale)))


@objective("triplet")
def _semihard_triplets(name, params, ctx):
    return SupervisedTripletObjective(params.get("margin", 0.1), params.get("distance", "squared"))


@objective("ce")
def _softmax(name, params, ctx):
    return SoftmaxObjective(ctx.embedding_dim, ctx.n_classes)


@objective("exemplar")
def _exemplar(name, params, ctx):
    return ExemplarObjective(ctx.fit, ctx.embedding_dim, params.get("augment", {}), ctx.seed, ctx.weight_feature)


@objective("udml_ss")
def _udml_ss(name, params, ctx):
    return UDMLSSObjective(ctx.centroids(), ctx.fit, ctx.embedding_dim, ctx.input_dim, params, ctx.seed)


OBJECTIVES = tuple(_BUILDERS)


def build_objective(name: str, params: dict[str, Any], context: ObjectiveContext) -> Objective:
    """The objective ``name`` (``MethodSpec.objective``) from its method's config section."""
    builder = _BUILDERS.get(name)
    if builder is None:
        raise DmlReproError(f"unknown objective '{name}'; known: {', '.join(sorted(_BUILDERS))}")
    return builder(name, params, context)
