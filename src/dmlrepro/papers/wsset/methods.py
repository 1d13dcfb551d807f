"""Every trainable method of WSSET's Tables I and II: which encoder, which objective, which data.

A method is an encoder architecture (``models/registry.py``) trained with one objective
(``papers/wsset/objectives.py``), optionally starting from another run's model (transfer). The
workflow and the trainer both read this table, so adding a method is one entry here.

Transfer chains (Fig. 3 of the paper):

* ``ours_int``: ``wsset`` on the target's fit documents (no labels) -> supervised triplet
  fine-tuning (``init_from="wsset"``).
* ``ours_ext``: WSSET on an external corpus (``external_base``) -> WSSET on the target
  (``wsset_ext``, initialised from the external base) -> supervised triplet fine-tuning.
"""

from __future__ import annotations

from dataclasses import dataclass

from dmlrepro import DmlReproError


@dataclass(frozen=True)
class MethodSpec:
    name: str
    architecture: str          # models/registry.py
    objective: str             # papers/wsset/objectives.py
    uses_labels: bool          # trains on the fit split's labels
    init_from: str | None = None   # run (same dataset and split) whose model.pt starts this one
    external_init: bool = False    # starts from the dataset's external-corpus base model
    reset_head: bool = False       # re-initialise the MLP head before training (fine-tuning)
    in_tables: bool = True         # a row of Tables I/II (intermediate transfer stages are not)
    schedule_of: str | None = None  # whose training schedule (method_params.<m>.train, tuning) it uses

    @property
    def uses_emd(self) -> bool:
        return self.objective in ("wsset", "sset", "approx_emd")


_SPECS = (
    MethodSpec("wsset", "self_attention", "wsset", False),
    MethodSpec("sset", "self_attention", "sset", False),
    MethodSpec("approx_emd", "self_attention", "approx_emd", False),
    MethodSpec("exemplar", "deepsets", "exemplar", False),
    MethodSpec("udml_ss", "deepsets", "udml_ss", False),
    MethodSpec("deepsets_ce", "deepsets", "ce", True),
    MethodSpec("deepsets_tl", "deepsets", "triplet", True),
    MethodSpec("selfattn_ce", "self_attention", "ce", True),
    MethodSpec("selfattn_tl", "self_attention", "triplet", True),
    MethodSpec("repset", "repset", "ce", True),
    MethodSpec("dspn_ce", "dspn", "ce", True),
    MethodSpec("dspn_tl", "dspn", "triplet", True),
    # the released code rebuilds the dense head on top of the pretrained pooled encoder
    # the transfer stages are not tuned on their own: they train with WSSET's schedule
    MethodSpec("ours_int", "self_attention", "triplet", True, init_from="wsset", reset_head=True, schedule_of="wsset"),
    MethodSpec("wsset_ext", "self_attention", "wsset", False, external_init=True, in_tables=False,
               schedule_of="wsset"),
    MethodSpec("ours_ext", "self_attention", "triplet", True, init_from="wsset_ext", reset_head=True,
               schedule_of="wsset"),
)
METHOD_SPECS: dict[str, MethodSpec] = {s.name: s for s in _SPECS}
TRAINED_METHODS: tuple[str, ...] = tuple(METHOD_SPECS)
# methods with no training of their own: exact-EMD kNN, and BERT (a separate, GPU-only rule)
UNTRAINED_METHODS: tuple[str, ...] = ("wmd_knn", "bert_base")


def method_spec(name: str) -> MethodSpec:
    try:
        return METHOD_SPECS[name]
    except KeyError:
        raise DmlReproError(f"unknown trained method '{name}'; known: {', '.join(TRAINED_METHODS)}") from None


def transfer_chain(name: str) -> list[str]:
    """The methods trained before ``name`` on the same split, earliest first (``name`` last)."""
    chain = [name]
    while (spec := method_spec(chain[0])).init_from:
        chain.insert(0, spec.init_from)
    return chain


def schedule_source(name: str) -> str:
    """The method whose training schedule ``name`` uses (itself, or WSSET for a transfer stage)."""
    return method_spec(name).schedule_of or name


def needs_external(name: str) -> bool:
    return any(method_spec(m).external_init for m in transfer_chain(name))
