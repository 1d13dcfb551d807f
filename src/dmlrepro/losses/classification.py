"""Cross-entropy heads on the embedding: the "+CE" baselines and UDML-SS's rotation task.

:class:`LinearCrossEntropyLoss` is a linear layer on the (L2-normalised) embedding followed by
softmax cross-entropy, averaged over the batch. It owns parameters, so the objective that uses it
must be optimised and checkpointed together with the encoder. Two named uses:

* :class:`SoftmaxClassifierLoss` (embedding -> class): DeepSets+CE, SelfAttn+CE, DSPN "with a
  softmax layer", RepSet, and Exemplar (one class per training document). The kNN evaluation
  reads the embedding, not the logits.
* :class:`RotationPredictionLoss` (embedding -> which of ``n_transforms`` set rotations was
  applied): the self-supervised auxiliary task of UDML-SS (``papers/wsset/udml_ss.py``).

``SoftmaxClassifierLoss(..., variant="released_code")`` reproduces the WSSET code's ``--loss ce``
instead: it has no layer. The code calls ``tf.keras.losses.sparse_categorical_crossentropy(labels,
embedding)`` on the L2-normalised 64-d output itself; Keras (TF 2.2) then clips the output to
``[1e-7, 1 - 1e-7]``, takes its log and applies softmax cross-entropy, so the loss is
``-log(p_y / sum_j p_j)`` with ``p = clip(f(x))``: the label indexes a coordinate of the
embedding, which is pushed towards the one-hot vector of its class.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from dmlrepro import DmlReproError

SOFTMAX_VARIANTS = ("linear", "released_code")
KERAS_EPSILON = 1e-7  # keras.backend.epsilon(), the clip of sparse_categorical_crossentropy


def _check_targets(targets: torch.Tensor, n_outputs: int, what: str) -> torch.Tensor:
    targets = torch.as_tensor(targets).reshape(-1).long()
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= n_outputs):
        raise DmlReproError(f"{what} must lie in [0, {n_outputs}); got values from "
                            f"{int(targets.min())} to {int(targets.max())}")
    return targets


class LinearCrossEntropyLoss(nn.Module):
    """``mean_i CE(W f_i + c, y_i)``: a linear layer on the embedding, then softmax cross-entropy."""

    target_name = "targets"

    def __init__(self, embedding_dim: int, n_outputs: int, bias: bool = True):
        super().__init__()
        if int(n_outputs) < 2:
            raise DmlReproError(f"a softmax head needs at least 2 outputs, got {n_outputs}")
        self.n_outputs = int(n_outputs)
        self.linear = nn.Linear(int(embedding_dim), self.n_outputs, bias=bias)

    def logits(self, emb: torch.Tensor) -> torch.Tensor:
        return self.linear(emb)

    def forward(self, emb: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        targets = _check_targets(targets, self.n_outputs, self.target_name).to(emb.device)
        if emb.shape[0] != targets.numel():
            raise DmlReproError(f"{emb.shape[0]} embeddings but {targets.numel()} {self.target_name}")
        return F.cross_entropy(self.logits(emb), targets)


class SoftmaxClassifierLoss(LinearCrossEntropyLoss):
    """Class prediction from the embedding (the "+CE" / "softmax layer" baselines; Exemplar).

    ``variant="linear"`` (default): a learnt linear softmax layer. ``variant="released_code"``:
    no layer; the clipped embedding coordinates are read as class scores, as the WSSET code does
    (see the module docstring); needs ``n_classes <= embedding_dim``.
    """

    target_name = "class labels"

    def __init__(self, embedding_dim: int, n_classes: int, variant: str = "linear"):
        if variant not in SOFTMAX_VARIANTS:
            raise DmlReproError(f"unknown softmax classifier variant '{variant}' ({' | '.join(SOFTMAX_VARIANTS)})")
        if variant == "released_code" and n_classes > embedding_dim:
            raise DmlReproError(f"variant 'released_code' reads class scores from the embedding's coordinates: "
                                f"n_classes={n_classes} exceeds embedding_dim={embedding_dim}")
        super().__init__(embedding_dim, n_classes)
        self.variant = variant
        if variant == "released_code":
            self.linear = None  # no parameters: the objective then has nothing extra to optimise
            self.embedding_dim = int(embedding_dim)

    def logits(self, emb: torch.Tensor) -> torch.Tensor:
        if self.variant == "linear":
            return self.linear(emb)
        # log of the clipped "probabilities" over all embedding coordinates, as Keras does
        return emb.clamp(KERAS_EPSILON, 1.0 - KERAS_EPSILON).log()


class RotationPredictionLoss(LinearCrossEntropyLoss):
    """Which of ``n_transforms`` set rotations produced the embedded copy (UDML-SS's pretext task)."""

    target_name = "transform indices"

    def __init__(self, embedding_dim: int, n_transforms: int):
        super().__init__(embedding_dim, n_transforms)
