"""A trained image embedding applied to new images: embed a folder, search one folder in another.

A run directory of any image paper that trains an :class:`~dmlrepro.models.images.ImageEmbedder`
(the image foundation's and the unified view's ``image-train`` runs) holds ``model.pt`` with the
state dict and ``model_cfg``; :func:`load_run_embedder` rebuilds the network from it without any
weights file or download. Images are read in any layout :func:`~dmlrepro.data.images.index_images`
accepts and go through the network's test transform (resize/centre crop as in its paper).
Neighbours are exact (faiss ``IndexFlatL2`` via :func:`knn_search`), on the L2-normalised
embeddings the runs are evaluated on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dmlrepro import DmlReproError

__all__ = ["EmbeddedImages", "load_run_embedder", "embed_images", "search_images"]


@dataclass
class EmbeddedImages:
    """Embeddings (n, d) float32 of ``paths`` (absolute), with class names ('' outside a class folder)."""

    embeddings: np.ndarray
    paths: list[str]
    classes: list[str]


def load_run_embedder(run_dir: str | Path):
    """The trained embedder of an image run (``<run_dir>/model.pt`` with ``model_cfg``), in eval mode."""
    import torch

    from dmlrepro.models.images import build_image_embedder
    path = Path(run_dir) / "model.pt"
    if not path.is_file():
        raise DmlReproError(f"{path}: missing (a run directory of an image paper holds model.pt)")
    saved = torch.load(path, map_location="cpu", weights_only=False)
    cfg = saved.get("model_cfg") if isinstance(saved, dict) else None
    if cfg is None:
        raise DmlReproError(f"{path}: not an image-embedder run (no model_cfg); embed/search take the runs of "
                            "image-train (image foundation, unified view)")
    model = build_image_embedder(cfg["backbone"], embedding_dim=int(cfg.get("embedding_dim", 128)), pretrained=False,
                                 pooling=cfg.get("pooling", "avg"), freeze_bn=bool(cfg.get("freeze_bn", False)))
    model.load_state_dict(saved["state_dict"])
    return model.eval()


def embed_images(model, path: str | Path, *, batch_size: int = 256, device: str = "cpu") -> EmbeddedImages:
    """Embed every image at ``path`` (a file, a flat folder or class folders)."""
    from dmlrepro.data.images import index_images
    from dmlrepro.models.images import build_transforms
    from dmlrepro.training.images import embed_rows
    index, names = index_images(path)
    transform = build_transforms(model.input_spec, train=False)
    emb = embed_rows(model.to(device), index, np.arange(len(index)), model.input_spec, transform,
                     batch_size=batch_size, device=device)
    classes = [names[y] if y >= 0 else "" for y in index.labels.tolist()]
    return EmbeddedImages(emb.astype(np.float32), [str(index.path(i)) for i in range(len(index))], classes)


def search_images(query: EmbeddedImages, gallery: EmbeddedImages, k: int) -> list[list[tuple[int, float]]]:
    """For each query, its ``k`` nearest gallery images as (gallery row, Euclidean distance), nearest
    first. A query that is itself in the gallery (same file) is not its own neighbour."""
    from dmlrepro.evaluation.image_retrieval import knn_search
    if k < 1:
        raise DmlReproError(f"-k {k}: must be at least 1")
    k_eff = min(k + 1, len(gallery.paths))
    dist, idx = knn_search(query.embeddings, gallery.embeddings, k_eff, exclude_self=False)
    out = []
    for q, (drow, irow) in enumerate(zip(dist, idx)):
        hits = [(int(i), float(np.sqrt(max(d, 0.0)))) for d, i in zip(drow, irow)
                if i >= 0 and gallery.paths[i] != query.paths[q]]
        out.append(hits[:k])
    return out
