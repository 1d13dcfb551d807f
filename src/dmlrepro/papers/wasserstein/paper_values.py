"""Paper 002's Table 1 ("Information Retrieval and Cluster Performance"), as printed (TARGETS.md 002-§1).

The paper prints **fractions**; they are kept as the printed strings (``"0.7277"``) and shown as
percentages (:func:`paper_percent`, ``"72.77"``) so that every column of our tables is in percent.
They belong to CUB-200-2011 and SOP only (:data:`PAPER_DATASETS`); a stand-in table may show them
only in columns labelled as the paper's.

Probable copy errors (TARGETS.md 002-§1, "Suspicious entries"), :data:`SUSPECT`:

* CUB Triplet NMI 0.8023, far above every other CUB NMI (0.60-0.69);
* SOP Triplet R@1 / R@4 / F1 (0.6094 / 0.8168 / 0.3615) duplicate CUB Wcontrastive's exactly;
* CUB ProxyNCA R@1 equals CUB Multisimilarity R@1 (0.6280).

The paper does not say which mAP it reports (002-§4); Roth et al.'s ``mAP_1000`` is the likely one
and is what our ``mAP`` column computes (``map_at_1000``).
"""

from __future__ import annotations

__all__ = ["PAPER_DATASETS", "DATASET_LABELS", "METRICS", "PAPER_TABLE1", "SUSPECT", "dataset_label",
           "is_paper_dataset", "paper_value", "paper_percent", "is_suspect"]

PAPER_DATASETS: tuple[str, ...] = ("cub200", "sop")
DATASET_LABELS: dict[str, str] = {
    "cub200": "CUB-200-2011", "sop": "SOP",
    "fashion_mnist": "Fashion-MNIST (stand-in)", "mnist": "MNIST (stand-in)",
}
# Table 1's columns, and the key of each in a run's metrics.json "test"
METRICS: dict[str, str] = {"R@1": "recall@1", "R@4": "recall@4", "NMI": "nmi", "F1": "f1", "mAP": "map_at_1000"}

_PRINTED = {
    "cub200": {
        "wtriplet": ("0.7277", "0.8763", "0.6876", "0.3610", "0.2474"),
        "wcontrastive": ("0.6094", "0.8168", "0.6720", "0.3615", "0.2395"),
        "triplet": ("0.5949", "0.7098", "0.8023", "0.2968", "0.2357"),
        "contrastive": ("0.5738", "0.7919", "0.6053", "0.2906", "0.1925"),
        "npair": ("0.6241", "0.8295", "0.6676", "0.3599", "0.2332"),
        "proxynca": ("0.6280", "0.8190", "0.6693", "0.3610", "0.2394"),
        "genlifted": ("0.5959", "0.7950", "0.6563", "0.3486", "0.2203"),
        "histogram": ("0.6055", "0.8056", "0.6526", "0.3388", "0.2265"),
        "margin": ("0.6493", "0.8489", "0.6836", "0.3593", "0.2411"),
        "multisimilarity": ("0.6280", "0.8501", "0.6855", "0.3603", "0.2258"),
    },
    "sop": {
        "wtriplet": ("0.7400", "0.8313", "0.9023", "0.3875", "0.3995"),
        "wcontrastive": ("0.6989", "0.8297", "0.8911", "0.3473", "0.3733"),
        "triplet": ("0.6094", "0.8168", "0.7720", "0.3615", "0.3695"),
        "contrastive": ("0.6204", "0.7918", "0.7553", "0.3237", "0.3307"),
        "npair": ("0.5976", "0.8028", "0.6325", "0.3050", "0.3166"),
        "proxynca": ("0.6214", "0.8242", "0.8761", "0.3220", "0.3058"),
        "genlifted": ("0.7321", "0.8193", "0.8984", "0.3593", "0.3903"),
        "histogram": ("0.7130", "0.8205", "0.8993", "0.3158", "0.3488"),
        "margin": ("0.7352", "0.8289", "0.8903", "0.3836", "0.3836"),
        "multisimilarity": ("0.7399", "0.8301", "0.8900", "0.3675", "0.3852"),
    },
}
PAPER_TABLE1: dict[str, dict[str, dict[str, str]]] = {
    ds: {row: dict(zip(METRICS, cells, strict=True)) for row, cells in rows.items()} for ds, rows in _PRINTED.items()}

SUSPECT: dict[tuple[str, str, str], str] = {
    ("cub200", "triplet", "NMI"): "far above every other CUB NMI (0.60-0.69)",
    ("sop", "triplet", "R@1"): "equals CUB Wcontrastive's R@1",
    ("sop", "triplet", "R@4"): "equals CUB Wcontrastive's R@4",
    ("sop", "triplet", "F1"): "equals CUB Wcontrastive's F1",
    ("cub200", "proxynca", "R@1"): "equals CUB Multisimilarity's R@1",
}


def dataset_label(dataset: str) -> str:
    return DATASET_LABELS.get(dataset, dataset)


def is_paper_dataset(dataset: str) -> bool:
    return dataset in PAPER_DATASETS


def paper_value(dataset: str, row: str, metric: str) -> str | None:
    """The printed fraction (``"0.7277"``), or None where Table 1 has none (stand-ins, the WCRAIG row)."""
    return PAPER_TABLE1.get(dataset, {}).get(row, {}).get(metric)


def paper_percent(dataset: str, row: str, metric: str) -> str | None:
    """The printed fraction as a percentage with two decimals (``"72.77"``): exact, by moving the point."""
    value = paper_value(dataset, row, metric)
    if value is None:
        return None
    whole, frac = value.split(".")
    digits = (whole + frac).lstrip("0") or "0"
    scaled = int(digits)  # the value times 10^len(frac); the percent has len(frac) - 2 decimals
    decimals = len(frac) - 2
    text = str(scaled).rjust(decimals + 1, "0")
    return f"{text[:-decimals]}.{text[-decimals:]}" if decimals > 0 else text


def is_suspect(dataset: str, row: str, metric: str) -> bool:
    return (dataset, row, metric) in SUSPECT
