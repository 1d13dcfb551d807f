"""Paper 004's published numbers (Tables 1-3), transcribed from TARGETS.md 004-§1, as printed.

Values are the **printed strings** (so "73.4" stays "73.4"), with float views. They belong to the
paper's four datasets only (:data:`PAPER_DATASETS`); the report shows them in a column labelled as
the paper's and never beside a stand-in dataset's rows (:func:`paper_r1` returns None there).

- Table 1 (ablation, R@1 only): every row of :data:`~dmlrepro.papers.unified_view.methods.ROWS`.
- Tables 2-3 (R@K): only the RAW+VTHM row is the paper's own run; the other rows (HDC,
  Clustering, ProxyNCA, Smart Mining, Margin, HTL, ABIER) are quoted from their papers with other
  backbones, so they are not transcribed here.
"""

from __future__ import annotations

__all__ = ["PAPER_DATASETS", "DATASET_LABELS", "PAPER_RECALL_KS", "PAPER_TABLE1", "PAPER_RAW_VTHM_RECALL",
           "dataset_label", "is_paper_dataset", "paper_r1", "paper_recall"]

PAPER_DATASETS: tuple[str, ...] = ("cub200", "cars196", "sop", "inshop")
DATASET_LABELS: dict[str, str] = {
    "cub200": "CUB-200-2011", "cars196": "Cars-196", "sop": "SOP", "inshop": "In-shop",
    # the offline stand-ins (no paper number exists for them)
    "fashion_mnist": "Fashion-MNIST (stand-in)", "mnist": "MNIST (stand-in)", "cifar10": "CIFAR-10 (stand-in)",
}

# the Ks of Tables 2 (CUB, Cars) and 3 (SOP, In-shop)
PAPER_RECALL_KS: dict[str, tuple[int, ...]] = {
    "cub200": (1, 2, 4, 8, 16, 32), "cars196": (1, 2, 4, 8, 16, 32),
    "sop": (1, 10, 100, 1000), "inshop": (1, 10, 20, 30, 40, 50),
}

# Table 1: "Ablation study on CUB-200, Cars-196, SOP, In-shop. Only Recall@1 is given." (%)
_T1_COLUMNS = ("cub200", "cars196", "sop", "inshop")
_T1_PRINTED = {
    "binomial": ("64.45", "80.78", "73.4", "84.78"),
    "raw": ("65.06", "81.27", "77.0", "88.38"),
    "vthm": ("61.55", "76.61", "76.82", "88.72"),
    "binomial_vthm": ("65.34", "81.48", "77.22", "88.87"),
    "raw_dw": ("65.67", "80.70", "77.39", "88.79"),
    "raw_semihard": ("64.97", "80.48", "77.12", "88.66"),
    "raw_vthm": ("66.85", "83.69", "78.18", "89.64"),
}
PAPER_TABLE1: dict[str, dict[str, str]] = {row: dict(zip(_T1_COLUMNS, cells)) for row, cells in _T1_PRINTED.items()}

# Tables 2-3, the RAW+VTHM row (%), dataset -> {K: printed}
_RECALL_PRINTED = {
    "cub200": ("66.85", "77.84", "85.8", "91.29", "94.94", "97.42"),
    "cars196": ("83.69", "90.27", "94.53", "97.16", "98.65", "99.36"),
    "sop": ("78.18", "90.47", "96.0", "98.74"),
    "inshop": ("89.64", "97.87", "98.47", "98.84", "99.05", "99.20"),
}
PAPER_RAW_VTHM_RECALL: dict[str, dict[int, str]] = {
    ds: dict(zip(PAPER_RECALL_KS[ds], cells, strict=True)) for ds, cells in _RECALL_PRINTED.items()}


def dataset_label(dataset: str) -> str:
    return DATASET_LABELS.get(dataset, dataset)


def is_paper_dataset(dataset: str) -> bool:
    return dataset in PAPER_DATASETS


def paper_r1(row: str, dataset: str) -> str | None:
    """Table 1's printed R@1 of ``row`` on ``dataset``; None for a stand-in dataset or an unknown row."""
    return PAPER_TABLE1.get(row, {}).get(dataset) if is_paper_dataset(dataset) else None


def paper_recall(dataset: str, k: int) -> str | None:
    """RAW+VTHM's printed R@k on ``dataset`` (Tables 2-3); None where the paper has none."""
    return PAPER_RAW_VTHM_RECALL.get(dataset, {}).get(int(k))
