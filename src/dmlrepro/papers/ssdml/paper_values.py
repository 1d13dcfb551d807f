"""SSDML's published numbers (TARGETS.md 001-§1, Tables 1 and 4), in %, as printed.

Shown only in a column labelled as the paper's, beside our runs on the same datasets (MNIST,
Fashion-MNIST, CIFAR-10 with the paper's networks and label counts). Table 4's "w/ orth" rows equal
"Ours" of Table 1 (checked in the tests).
"""

from __future__ import annotations

METRICS = ("NMI", "R@1", "R@2", "R@4", "R@8")
DATASETS = ("mnist", "fashion_mnist", "cifar10")
DATASET_LABELS = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}

# method key -> (row label in the paper, our config's method name or None if not a run of ours)
METHOD_LABELS = {"initial": "Initial", "deep_lrml": "Deep-LRML", "deep_seraph": "Deep-SERAPH",
                 "deep_isdml": "Deep-ISDML", "deep_apllr": "Deep-APLLR", "deep_apit": "Deep-APIT",
                 "ours": "Ours", "ours_no_orth": "Ours (w/o orth)"}
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

PAPER_TABLE1: dict[str, dict[str, dict[str, float]]] = {
    m: {ds: dict(zip(METRICS, v)) for ds, v in by_ds.items()} for m, by_ds in _T1.items()}
PAPER_TABLE4: dict[str, dict[str, dict[str, float]]] = {
    m: {ds: dict(zip(METRICS, v)) for ds, v in by_ds.items()} for m, by_ds in _T4.items()}


def paper_value(table: int, method: str, dataset: str, metric: str) -> float | None:
    """The paper's value (%) or None where it prints none."""
    source = PAPER_TABLE1 if table == 1 else PAPER_TABLE4
    return source.get(method, {}).get(dataset, {}).get(metric)
