"""SSDML's Figure 2 on a dataset of the config (the embedded default: MNIST): convergence, sensitivity
to α, and t-SNE of the test embeddings.

The paper's Fig. 2 shows (left) the convergence over the first 100 epochs on Cars-196, y-quantity
unstated; (middle) the sensitivity to α on Cars-196 ("fairly stable in 35°–55°", grid unstated);
(right) t-SNE of test embeddings, MNIST and CIFAR-10, columns random initialisation / w/o orth /
w/ orth. Ours, on the config's dataset:

* **Convergence**: Eq. 3 per triplet (the network step's loss, mean over the epoch's batches) and the
  validation R@1 per epoch, mean ± std over the seeds of the Table 4 runs (w/ and w/o orth), from
  their ``history.csv``.
* **Sensitivity to α**: test R@1 and NMI of one seed's runs at each α of ``figure2.alphas`` (30°–60°
  in 5° steps in the configs), all else as in Table 1 (with the schedule ``figure2.train`` overrides).
  Test metrics of the epoch selected on validation, as in the tables.
* **t-SNE**: the seed's test embeddings in the retrieval space of its runs, on a seeded subset of
  ``tsne_points`` test images: the Initial model (random network and initial L), w/o orth, w/ orth
  (each run's selected network and its final L). scikit-learn's Barnes–Hut
  t-SNE, perplexity 30, PCA initialisation, seeded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from dmlrepro import DmlReproError
from dmlrepro.reporting.figures import new_figure, save_figure

PANELS = (("initial", "random initialisation"), ("ours_no_orth", "ours w/o orth"), ("ours", "ours w/ orth"))


def read_histories(paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """Per epoch: mean and std over the files of ``loss`` and ``val_recall@1``."""
    frames = []
    for p in paths:
        df = pd.read_csv(p)
        missing = {"epoch", "loss", "val_recall@1"} - set(df.columns)
        if missing:
            raise DmlReproError(f"{p}: history without column(s) {', '.join(sorted(missing))}")
        frames.append(df[["epoch", "loss", "val_recall@1"]])
    if not frames:
        raise DmlReproError("convergence: no history.csv given")
    all_ = pd.concat(frames)
    out = all_.groupby("epoch").agg(["mean", "std", "count"])
    out.columns = [f"{a}_{b}" for a, b in out.columns]
    return out.reset_index()


def read_alpha_runs(paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """α (degrees), test R@1 and NMI (%) of each α run's ``metrics.json``, sorted by α."""
    rows = []
    for p in paths:
        m = json.loads(Path(p).read_text())
        if "alpha_deg" not in m:
            raise DmlReproError(f"{p}: metrics.json without alpha_deg (not an α run)")
        rows.append({"alpha": float(m["alpha_deg"]), "R@1": 100 * m["test"]["recall@1"],
                     "NMI": 100 * m["test"]["nmi"]})
    if not rows:
        raise DmlReproError("sensitivity to alpha: no run given")
    return pd.DataFrame(rows).sort_values("alpha").reset_index(drop=True)


def tsne_2d(z: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.manifold import TSNE
    perplexity = float(min(30.0, max(2.0, (len(z) - 1) / 3)))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(
        np.asarray(z, np.float64))


def test_embeddings(dataset: str, raw_root, split_path, models: dict[str, str | os.PathLike],
                    model_cfg: dict[str, Any], method_cfg: dict[str, Any], seed: int, points: int,
                    space: str = "after_L", device: str = "cpu") -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Embeddings of a seeded subset of ``points`` test images for the Initial model and each saved run
    (``models``: panel name → ``model.pt``), in ``space``; and their labels."""
    import torch

    from dmlrepro.papers.image_foundation.run import load_run_inputs
    from dmlrepro.papers.ssdml.run import _build_model, _embed, initial_metric
    from dmlrepro.training.loop import seed_everything

    index, split = load_run_inputs(dataset, raw_root, split_path)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 2]))
    rows = np.sort(rng.choice(split.test, size=min(int(points), len(split.test)), replace=False))
    seed_everything(seed)
    model = _build_model(model_cfg)
    out = {"initial": _embed(model, index, rows, space, initial_metric(model, method_cfg, seed), device)}
    for name, path in models.items():
        saved = torch.load(path, map_location="cpu", weights_only=False)
        net = _build_model(saved.get("model_cfg", model_cfg))
        net.load_state_dict(saved["state_dict"])
        out[name] = _embed(net, index, rows, space, saved["L"], device)
    return out, np.asarray(index.labels[rows])


def plot_figure2(out_png: str | os.PathLike, convergence: dict[str, pd.DataFrame], alpha: pd.DataFrame,
                 embeddings: dict[str, np.ndarray], labels: np.ndarray, seed: int, dataset_label: str,
                 paper_alpha: float | None = None) -> dict[str, Path]:
    """Top: loss and validation R@1 per epoch (mean ± std over seeds), R@1/NMI against α; bottom: t-SNE."""
    fig = new_figure(13.5, 8.5)
    axes = fig.subplots(2, 3)
    names = {"ours": "w/ orth", "ours_no_orth": "w/o orth"}
    for method, df in convergence.items():
        for ax, col in ((axes[0, 0], "loss"), (axes[0, 1], "val_recall@1")):
            mean, std = df[f"{col}_mean"].to_numpy(), df[f"{col}_std"].fillna(0).to_numpy()
            scale = 100.0 if col != "loss" else 1.0
            # the loss axis is logarithmic (see below): keep the band's lower edge positive
            low = np.maximum(mean - std, mean * 1e-3) if col == "loss" else mean - std
            ax.plot(df["epoch"], scale * mean, marker="o", label=names.get(method, method))
            ax.fill_between(df["epoch"], scale * low, scale * (mean + std), alpha=0.2)
    # log scale: without orthogonality the metric step lowers Eq. 3 by growing L (docs/ssdml.md), so
    # that loss is 3-4 orders of magnitude below the constrained one and reads 0.0 on a linear axis
    axes[0, 0].set_yscale("log")
    axes[0, 0].set(title=f"Convergence ({dataset_label}): Eq. 3 per triplet", xlabel="epoch",
                   ylabel="loss (log scale)")
    axes[0, 1].set(title="Convergence: validation R@1", xlabel="epoch", ylabel="R@1 (%)")
    for ax in axes[0, :2]:
        ax.legend()
    ax = axes[0, 2]
    ax.plot(alpha["alpha"], alpha["R@1"], marker="o", label="R@1")
    ax.plot(alpha["alpha"], alpha["NMI"], marker="s", label="NMI")
    if paper_alpha is not None:
        ax.axvline(paper_alpha, color="grey", ls=":", label=f"paper's α = {paper_alpha:g}°")
    ax.set(title=f"Sensitivity to α (seed {seed}, test)", xlabel="α (degrees)", ylabel="%")
    ax.legend()
    for ax, (key, title) in zip(axes[1], PANELS):
        if key not in embeddings:
            raise DmlReproError(f"t-SNE: no embeddings for '{key}'")
        xy = tsne_2d(embeddings[key], seed)
        sc = ax.scatter(xy[:, 0], xy[:, 1], c=labels, cmap="tab10", s=3, vmin=-0.5, vmax=9.5)
        ax.set(title=f"t-SNE, {title} ({len(labels)} test images)", xticks=[], yticks=[])
    fig.colorbar(sc, ax=axes[1, 2], ticks=range(10), label="class")
    return save_figure(fig, out_png)
