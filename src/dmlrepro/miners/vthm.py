"""Valid triplet based hard mining (VTHM), paper 004 Sec. 5.1 (published as the multi-similarity
miner).

For every anchor i, with P_i / N_i its positives / negatives:

* the hardest positive p* = argmin_{k in P_i} s_ik and the hardest negative
  n* = argmax_{k in N_i} s_ik are taken over *all* of P_i / N_i, before any filtering;
* a negative j is informative iff s_ij > s_ip* - margin, a positive j iff s_ij < s_in* + margin
  (margin = lambda = epsilon = 0.1 in the paper). These are exactly the pairs that take part in
  some triplet (i, p, n) with non-zero triplet loss [s_in - s_ip + margin]_+.
* An anchor without positives has no informative negatives and vice versa (p* or n* is undefined).

The comparisons are evaluated as ``s_ij + margin > s_ip*`` and ``s_ij - margin < s_in*``,
the arithmetic of PML's ``MultiSimilarityMiner`` and of the official code, so that ties at the
float boundary fall the same way (the paper's forms are equal in exact arithmetic).

Variants (``variant=``):

* "paper" (default): P_i = {j : y_j = y_i, j != i} by index, as the paper defines it (and PML).
* "official" (msight-tech/research-ms-loss): positives are the same-label columns, the anchor
  itself included, whose similarity is < 1 - 1e-5. This removes the self-pair but also any
  distinct positive with (near-)identical embedding, which changes p* and can leave an anchor
  with no positives at all.

Returns PML's pair tuple (a1, p, a2, n), computed without gradients (``BaseMiner.forward``).
"""

from __future__ import annotations

import torch
from pytorch_metric_learning.distances import CosineSimilarity
from pytorch_metric_learning.miners import BaseMiner
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from dmlrepro import DmlReproError

__all__ = ["VTHMMiner", "VTHM_VARIANTS", "OFFICIAL_SELF_THRESHOLD"]

VTHM_VARIANTS = ("paper", "official")
OFFICIAL_SELF_THRESHOLD = 1.0 - 1e-5


class VTHMMiner(BaseMiner):
    """VTHM on cosine similarity: informative negatives s_ij > s_ip* - margin, informative
    positives s_ij < s_in* + margin, with p* / n* the anchor's least similar positive / most
    similar negative (taken before filtering)."""

    def __init__(self, margin: float = 0.1, variant: str = "paper", **kwargs):
        super().__init__(**kwargs)
        if variant not in VTHM_VARIANTS:
            raise DmlReproError(f"VTHMMiner: unknown variant '{variant}' ({' | '.join(VTHM_VARIANTS)})")
        if not margin >= 0:
            raise DmlReproError(f"VTHMMiner: margin must be >= 0, got {margin}")
        if not self.distance.is_inverted:
            raise DmlReproError(f"VTHMMiner: distance must be a similarity, got {type(self.distance).__name__}")
        self.margin = float(margin)
        self.variant = variant
        self.add_to_recordable_attributes(name="margin", is_stat=False)

    def get_default_distance(self):
        return CosineSimilarity()

    def mine(self, embeddings, labels, ref_emb, ref_labels):
        similarities = self.distance(embeddings, ref_emb)
        if self.variant == "paper":
            matches, diffs = lmu.get_matches_and_diffs(labels, ref_labels)
            positive = matches.bool()
        else:
            same = labels[:, None] == ref_labels[None, :]
            positive = same & (similarities < OFFICIAL_SELF_THRESHOLD)
            diffs = ~same
        negative = diffs.bool()

        inf = torch.full_like(similarities, float("inf"))
        hardest_pos = torch.where(positive, similarities, inf).amin(dim=1, keepdim=True)   # s_{i,p*}
        hardest_neg = torch.where(negative, similarities, -inf).amax(dim=1, keepdim=True)  # s_{i,n*}
        informative_neg = negative & (similarities + self.margin > hardest_pos)
        informative_pos = positive & (similarities - self.margin < hardest_neg)

        a1, p = torch.where(informative_pos)
        a2, n = torch.where(informative_neg)
        return a1, p, a2, n
