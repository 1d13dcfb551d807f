"""SSDML's published numbers (TARGETS.md 001-§1, Tables 1–5), in %, as printed.

Shown only in a column labelled as the paper's, beside our runs on the same datasets (MNIST,
Fashion-MNIST, CIFAR-10 with the paper's networks and label counts). Table 4's "w/ orth" rows equal
"Ours" of Table 1 (checked in the tests).
"""

from __future__ import annotations

METRICS = ("NMI", "R@1", "R@2", "R@4", "R@8")
DATASETS = ("mnist", "fashion_mnist", "cifar10")
FINE_GRAINED = ("cub200", "cars196")
DATASET_LABELS = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10",
                  "cub200": "CUB-200-2011", "cars196": "Cars-196"}

# method key -> (row label in the paper, our config's method name or None if not a run of ours)
METHOD_LABELS = {"initial": "Initial", "deep_lrml": "Deep-LRML", "deep_seraph": "Deep-SERAPH",
                 "deep_isdml": "Deep-ISDML", "deep_apllr": "Deep-APLLR", "deep_apit": "Deep-APIT",
                 "ours": "Ours", "ours_no_orth": "Ours (w/o orth)", "triplet": "Triplet", "angular": "Angular",
                 "exemplar": "Exemplar", "rotation": "Rotation", "nce": "NCE", "deepcluster": "DeepCluster",
                 "synthetic": "Synthetic"}
SUPERVISED = ("triplet", "angular")
# Table 3's unsupervised rows: literature values the paper quotes (never runs of ours; the report
# labels them "quoted"). The Exemplar/NCE/DeepCluster/Synthetic values equal those of paper 003's Table 1.
QUOTED = ("exemplar", "rotation", "nce", "deepcluster", "synthetic")
BASELINES = ("deep_lrml", "deep_seraph", "deep_isdml", "deep_apllr", "deep_apit")

_T1 = {  # method: {dataset: (NMI, R@1, R@2, R@4, R@8)}
    "initial": {"mnist": (17.4, 86.5, 92.4, 95.9, 97.6), "fashion_mnist": (32.6, 71.9, 82.0, 89.5, 94.8),
                "cifar10": (20.4, 38.2, 54.9, 71.0, 83.6)},
    "deep_lrml": {"mnist": (48.3, 88.7, 93.2, 95.9, 97.6), "fashion_mnist": (53.2, 75.3, 83.9, 90.2, 95.0),
                  "cifar10": (16.0, 40.2, 56.3, 71.5, 83.7)},
    "deep_seraph": {"mnist": (45.3, 92.5, 95.7, 97.6, 98.7), "fashion_mnist": (53.0, 75.9, 85.1, 91.5, 95.4),
                    "cifar10": (21.3, 39.5, 56.2, 71.1, 83.7)},
    "deep_isdml": {"mnist": (44.1, 92.1, 95.7, 97.5, 98.6), "fashion_mnist": (51.3, 74.4, 84.2, 90.7, 95.1),
                   "cifar10": (20.0, 36.4, 52.4, 68.5, 82.1)},
    "deep_apllr": {"mnist": (30.5, 57.6, 71.1, 82.1, 90.1), "fashion_mnist": (38.9, 59.5, 73.3, 84.1, 91.4),
                   "cifar10": (13.3, 24.4, 40.0, 58.8, 76.4)},
    "deep_apit": {"mnist": (31.7, 87.6, 92.9, 96.0, 97.9), "fashion_mnist": (37.3, 69.4, 80.1, 88.5, 94.1),
                  "cifar10": (11.4, 26.0, 41.4, 59.6, 76.4)},
    "ours": {"mnist": (47.5, 93.9, 96.6, 98.2, 98.9), "fashion_mnist": (52.1, 77.6, 86.0, 91.8, 95.6),
             "cifar10": (25.3, 41.4, 57.3, 72.6, 84.9)},
}
_T4 = {  # Table 4: w/o orth and w/ orth
    "ours_no_orth": {"mnist": (42.9, 91.5, 95.3, 97.3, 98.6), "fashion_mnist": (50.3, 73.3, 82.4, 89.7, 94.4),
                     "cifar10": (19.0, 37.4, 54.2, 69.7, 83.4)},
    "ours": {"mnist": (47.5, 93.9, 96.6, 98.2, 98.9), "fashion_mnist": (52.1, 77.6, 86.0, 91.8, 95.6),
             "cifar10": (25.3, 41.4, 57.3, 72.6, 84.9)},
}

_T2 = {  # Table 2: CUB-200-2011, Cars-196 (NMI, R@1, R@2, R@4, R@8)
    "initial": {"cub200": (34.3, 31.7, 42.2, 55.4, 67.9), "cars196": (23.7, 24.2, 32.8, 43.4, 54.9)},
    "deep_lrml": {"cub200": (49.9, 34.9, 45.0, 55.4, 65.7), "cars196": (40.5, 33.2, 41.2, 49.4, 58.3)},
    "deep_seraph": {"cub200": (50.5, 39.7, 52.2, 64.4, 76.5), "cars196": (37.2, 34.8, 46.7, 59.4, 71.7)},
    "deep_isdml": {"cub200": (50.6, 43.7, 55.7, 67.6, 78.4), "cars196": (25.8, 30.6, 40.8, 52.2, 63.2)},
    "deep_apllr": {"cub200": (38.9, 25.7, 36.6, 48.7, 61.9), "cars196": (33.2, 33.0, 43.6, 55.6, 67.9)},
    "deep_apit": {"cub200": (52.1, 42.2, 54.5, 66.7, 78.2), "cars196": (37.3, 38.5, 50.7, 62.7, 74.9)},
    "ours": {"cub200": (54.0, 44.8, 56.9, 69.1, 79.9), "cars196": (40.7, 45.7, 58.1, 69.5, 80.4)},
}
_T3 = {  # Table 3: quoted unsupervised methods, and Ours (= Table 2's)
    "exemplar": {"cub200": (45.0, 38.2, 50.3, 62.8, 75.0), "cars196": (35.4, 36.5, 48.1, 59.2, 71.0)},
    "rotation": {"cub200": (49.1, 42.5, 55.8, 68.6, 79.4), "cars196": (32.7, 33.3, 44.6, 56.4, 68.5)},
    "nce": {"cub200": (45.1, 39.2, 51.4, 63.7, 75.8), "cars196": (35.6, 37.5, 48.7, 59.8, 71.5)},
    "deepcluster": {"cub200": (53.0, 42.9, 54.1, 65.6, 76.2), "cars196": (38.5, 32.6, 43.8, 57.0, 69.5)},
    "synthetic": {"cub200": (53.4, 43.5, 56.2, 68.3, 79.1), "cars196": (37.6, 42.0, 54.3, 66.0, 77.2)},
    "ours": _T2["ours"],
}
_T5 = {  # Table 5: CUB only, no NMI printed
    "triplet": {"cub200": (None, 42.6, 55.2, 66.9, 77.6)},
    "angular": {"cub200": (None, 41.4, 54.5, 67.1, 78.4)},
    "ours": {"cub200": (None, 44.8, 56.9, 69.1, 79.9)},
}

PAPER_TABLE1: dict[str, dict[str, dict[str, float]]] = {
    m: {ds: dict(zip(METRICS, v)) for ds, v in by_ds.items()} for m, by_ds in _T1.items()}
PAPER_TABLE4: dict[str, dict[str, dict[str, float]]] = {
    m: {ds: dict(zip(METRICS, v)) for ds, v in by_ds.items()} for m, by_ds in _T4.items()}


PAPER_TABLES = {1: PAPER_TABLE1, 4: PAPER_TABLE4}
PAPER_TABLES.update({t: {m: {ds: dict(zip(METRICS, v)) for ds, v in by_ds.items()} for m, by_ds in src.items()}
                     for t, src in ((2, _T2), (3, _T3), (5, _T5))})


def paper_value(table: int, method: str, dataset: str, metric: str) -> float | None:
    """The paper's value (%) or None where it prints none."""
    return PAPER_TABLES[table].get(method, {}).get(dataset, {}).get(metric)
