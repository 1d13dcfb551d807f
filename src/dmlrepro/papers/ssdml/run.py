"""SSDML's steps: one Algorithm-1 run (w/ or w/o orth), and the Initial row.

Splits are the image foundation's (``same_class``: the dataset's own test images; validation =
15 % of each training class, stratified, held out of fit), written by its ``make_splits``.

Decisions:

* **Retrieval space**: the embedding ``Lᵀz`` (l = 64 on MNIST; ``retrieval_space: after_L``,
  the default), as the paper describes its networks: L is their last layer ("… → l2 → L(128×64)"),
  CUB/Cars' "embedding size 128" is L's output (the features before it are 1024-d), and the
  Johnson–Lindenstrauss argument for LᵀL = I is about distances after L. Selection uses the same
  space. The l2-normalised features *before* L (where the graph is built, and where the authors'
  related GUML code evaluates) are recorded beside (``test_before_L``); ``retrieval_space:
  before_L`` reports those instead.
* **Selection**: validation R@1 in the retrieval space, every ``eval_every`` epochs; the test
  R@1 of every epoch is recorded (never read) to show what test-selection would report.
* **Initial row**: the paper's "Initial" for a network trained from scratch is the network at
  its random initialisation: the seed's LeNet before any step (the very weights the runs start
  from, ``seed_everything(seed)`` then the constructor) with the seed's initial L (the Stiefel
  point every run of the seed starts from), evaluated in the retrieval space; the other space
  is recorded beside.
* **Network step's scale** (``train.batch_gradient``): the gradient of Eq. 3's sum over the
  mini-batch's triplets divided by their number (``mean``, the default). The paper's lr 1e-4 is a
  MatConvNet learning rate, and MatConvNet's ``cnn_train`` divides the summed derivative by the
  batch size before the momentum update; the raw sum (``sum``) takes T_b = 100 times larger steps
  (docs/ssdml.md: the diagnosis, in which it wrecked the representation within one epoch).
* **Optimiser**: the paper's "SGD, initial learning rate 1e-4"; momentum, weight decay and any
  decay schedule are unstated — configurable (``train.optimizer``, ``momentum``), default SGD
  with momentum 0.9 (MatConvNet's ``cnn_train`` default) and no decay.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from dmlrepro import DmlReproError
from dmlrepro.io import write_json
from dmlrepro.losses.ssml_baselines import SSDMLStep
from dmlrepro.papers.image_foundation.run import load_run_inputs
from dmlrepro.training.loop import run_signature, save_run
from dmlrepro.papers.ssdml.algorithm import SSDMLAlgorithm, SSDMLObjective, TripletBatches, input_transform
from dmlrepro.training.images import embed_rows
from dmlrepro.training.loop import Trainer, seed_everything

log = logging.getLogger(__name__)

RETRIEVAL_SPACES = ("before_L", "after_L")
# the paper's Table 1 reports NMI and R@K; F1 comes free from NMI's k-means. MAP@R (not in the paper)
# is left out: its R-nearest-neighbour search on 10,000 test images cost as much as the rest of an evaluation
METRICS = ("recall", "nmi", "f1")


def _optimizer(cfg: dict[str, Any], params) -> torch.optim.Optimizer:
    name, lr = str(cfg.get("optimizer", "sgd")).lower(), float(cfg.get("lr", 1e-4))
    wd = float(cfg.get("weight_decay", 0.0))
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=float(cfg.get("momentum", 0.9)), weight_decay=wd)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    raise DmlReproError(f"train.optimizer: unknown optimizer '{name}' (sgd | adam)")


SMALL_NETS = ("lenet_ssdml", "cifar_ssdml")


def _build_model(model_cfg: dict[str, Any], init: str | Path | None = None, embedding_dim: int | None = None):
    """The network: ``backbone`` (the paper's small nets, or ``googlenet_caffe`` for CUB/Cars),
    ``pooling`` (``rmac``: multi-scale R-MAC, models/images/_rmac.py), ``input_size`` (the image side
    fed to the net, resized and centre-cropped: 512 for R-MAC), ``init`` the ImageNet weights file of a
    ``pretrained`` backbone. No head (``embedding_dim`` None): L is the paper's last layer; Table 5's
    supervised rows put a linear ``embedding_dim`` layer in its place.

    The small nets' weights are put in channels-last layout (the values are PyTorch's default
    initialisation, drawn before the layout change): one CPU thread runs their convolutions and 2x2
    max-pools about 25 % faster that way (measured: forward + backward of 300 MNIST images 0.19 s
    against 0.25 s)."""
    from dmlrepro.models.images import build_image_embedder
    backbone = model_cfg.get("backbone", "lenet_ssdml")
    size = model_cfg.get("input_size")
    model = build_image_embedder(backbone, embedding_dim=embedding_dim, pretrained=init or False,
                                 pooling=model_cfg.get("pooling", "avg"), crop_size=size, resize=size)
    return model.to(memory_format=torch.channels_last) if backbone in SMALL_NETS else model


class _LabelledSoftmax(torch.nn.Module):
    """Cross-entropy of a linear softmax layer on the l2-normalised features (the layer L sits on)."""

    def __init__(self, dim: int, n_classes: int):
        super().__init__()
        self.classifier = torch.nn.Linear(int(dim), int(n_classes))

    def forward(self, model, batch):
        logits = self.classifier(model(batch.inputs))
        return torch.nn.functional.cross_entropy(logits, batch.labels), logits.shape[0]


def pretrain_on_labelled(model, index, labelled: np.ndarray, cfg: dict[str, Any], seed: int, out_dir: str | Path,
                         device: str = "cpu") -> list[dict[str, Any]]:
    """CIFAR-10's start (the paper: "pretrained on the labeled examples with softmax (replacing L) for 30
    epochs"): softmax on the seed's labelled images only, a linear layer on the l2-normalised features
    in L's place (dropped afterwards). ``cfg``: ``epochs`` (30), ``lr`` (1e-4), ``batch_size`` (100),
    ``optimizer``/``momentum`` as the run's. Resumable (its own checkpoint under ``out_dir``)."""
    from dmlrepro.training.images import ImageBatches, shuffled_plan
    labelled = np.asarray(labelled)
    classes, ids = np.unique(index.labels[labelled], return_inverse=True)
    row_labels = np.full(len(index.labels), -1, np.int64)
    row_labels[labelled] = ids
    objective = _LabelledSoftmax(model.embedding_dim, len(classes))
    optimizer = _optimizer(cfg, list(model.parameters()) + list(objective.parameters()))
    batch_size = min(int(cfg.get("batch_size", 100)), len(labelled))
    trainer = Trainer(model, objective, optimizer,
                      plan=lambda e: shuffled_plan(labelled, batch_size=batch_size, seed=seed, epoch=e),
                      load=ImageBatches(index, model.input_spec, None, labels=row_labels, device=device),
                      epochs=int(cfg.get("epochs", 30)), checkpoint=Path(out_dir) / "pretrain" / "last.pt",
                      signature=run_signature("ssdml-pretrain", cfg, seed, labelled.tolist()), device=device,
                      name=f"ssdml pretrain seed {seed}")
    trainer.fit()
    return trainer.history


def _embed(model, index, rows, space: str, L: torch.Tensor | None, device) -> np.ndarray:
    z = embed_rows(model, index, rows, model.input_spec, input_transform(index, model.input_spec), device=device)
    if space == "after_L":
        if L is None:
            raise DmlReproError("retrieval_space after_L needs a metric L")
        z = z @ L.numpy().astype(z.dtype)
    return z


def evaluate(model, index, rows, space: str, L, recall_ks: Sequence[int], seed: int, device="cpu",
             metrics: Sequence[str] = METRICS) -> dict[str, float]:
    """NMI (k-means with as many clusters as classes), R@K and F1 of ``rows`` among themselves."""
    from dmlrepro.evaluation.image_retrieval import evaluate_image_embeddings
    z = _embed(model, index, rows, space, L, device)
    return evaluate_image_embeddings(z, index.labels[rows], recall_ks=recall_ks, metrics=metrics, seed=seed)


def evaluate_both_spaces(model, index, rows, space: str, L, recall_ks: Sequence[int], seed: int,
                         device="cpu") -> tuple[dict[str, float], dict[str, float]]:
    """``rows`` in the retrieval ``space`` (NMI, R@K, F1) and in the other one (R@K, NMI) from one
    forward pass: the embedding after L is the features before L times L."""
    from dmlrepro.evaluation.image_retrieval import evaluate_image_embeddings
    if L is None:
        raise DmlReproError("evaluating both retrieval spaces needs a metric L")
    before = embed_rows(model, index, rows, model.input_spec, input_transform(index, model.input_spec), device=device)
    z = {"before_L": before, "after_L": before @ L.numpy().astype(before.dtype)}
    other = "after_L" if space == "before_L" else "before_L"
    labels = index.labels[rows]
    return (evaluate_image_embeddings(z[space], labels, recall_ks=recall_ks, metrics=METRICS, seed=seed),
            evaluate_image_embeddings(z[other], labels, recall_ks=recall_ks, metrics=("recall", "nmi"), seed=seed))


def train(dataset: str, raw_root: str | Path, split_path: str | Path, method: str, method_cfg: dict[str, Any],
          model_cfg: dict[str, Any], train_cfg: dict[str, Any], seed: int, out_dir: str | Path,
          recall_ks: Sequence[int], device: str = "cpu", after_epoch=None,
          metric_log: list | None = None, tuning_point: int | None = None,
          init: str | Path | None = None) -> dict[str, Any]:
    """One Algorithm-1 run; writes ``model.pt`` (network and L), ``history.csv`` and ``metrics.json``.

    ``method_cfg``: ``orthogonal`` (w/ or w/o orth), ``alpha_deg``, ``k``, ``gamma``, ``max_iter``
    (CG iterations per metric step), ``metric_dim`` (l). ``train_cfg``: the schedule
    (``labels_per_class``, ``partition_size``, ``epochs_per_partition``, ``epochs``,
    ``triplets_per_batch``, ``metric_every``, ``lr``, ...)."""
    from dmlrepro.evaluation.image_retrieval import recall_at_k
    space = train_cfg.get("retrieval_space", "after_L")
    if space not in RETRIEVAL_SPACES:
        raise DmlReproError(f"train.retrieval_space: '{space}' is not one of {', '.join(RETRIEVAL_SPACES)}")
    if method_cfg.get("supervised_loss"):     # Table 5: a supervised loss on the labelled images only
        return train_supervised(dataset, raw_root, split_path, method, method_cfg, model_cfg, train_cfg, seed,
                                out_dir, recall_ks, device=device, init=init)
    seed_everything(seed)
    index, split = load_run_inputs(dataset, raw_root, split_path)
    out_dir = Path(out_dir)
    model = _build_model(model_cfg, init)
    alpha = float(method_cfg.get("alpha_deg", 40.0))
    kind = str(method_cfg.get("metric_step", "ssdml"))
    if kind == "ssdml":
        step = SSDMLStep(alpha_deg=alpha, max_iter=int(method_cfg.get("max_iter", 10)),
                         orthogonal=bool(method_cfg.get("orthogonal", True)))
        algorithm_cls = SSDMLAlgorithm
    else:  # a baseline: its metric step with its own hyperparameters (``params``), k and γ of the dataset
        from dmlrepro.losses.ssml_baselines import make_metric_step
        from dmlrepro.papers.ssdml.algorithm import BaselineAlgorithm
        params = dict(method_cfg.get("params", {}))
        if kind in ("lrml", "isdml", "apllr", "apit"):
            params.setdefault("k", int(method_cfg.get("k", 10)))
        if kind in ("apllr", "apit"):
            params.setdefault("gamma", float(method_cfg.get("gamma", 0.99)))
        step = make_metric_step(kind, **params)
        algorithm_cls = BaselineAlgorithm
    algorithm = algorithm_cls(
        index, model.input_spec, split.fit, index.labels[split.fit], seed=seed,
        labels_per_class=int(train_cfg.get("labels_per_class", 10)),
        partition_size=int(train_cfg.get("partition_size", 9000)),
        epochs_per_partition=int(train_cfg.get("epochs_per_partition", 10)),
        triplets_per_batch=int(train_cfg.get("triplets_per_batch", 100)),
        k=int(method_cfg.get("k", 10)), gamma=float(method_cfg.get("gamma", 0.99)),
        metric_every=int(train_cfg.get("metric_every", 1)), metric_step=step,
        metric_dim=int(method_cfg.get("metric_dim", 64)), device=device,
        transform=input_transform(index, model.input_spec))
    pretrain_history = None
    if train_cfg.get("pretrain"):
        pretrain_history = pretrain_on_labelled(model, index, algorithm.labelled, train_cfg["pretrain"], seed,
                                                out_dir, device)
    if kind == "ssdml":
        objective = SSDMLObjective(algorithm, alpha_deg=alpha,
                                   batch_gradient=str(train_cfg.get("batch_gradient", "mean")))
        load = TripletBatches(algorithm, device)
    else:
        from dmlrepro.papers.ssdml.algorithm import BaselineObjective, NeighbourhoodBatches
        objective, load = BaselineObjective(algorithm), NeighbourhoodBatches(algorithm, device)
    optimizer = _optimizer(train_cfg, model.parameters())
    val_rows = split.val
    if train_cfg.get("val_subsample"):  # a seeded stratification-free subset, to bound the cost of selection
        val_rows = np.sort(np.random.default_rng(seed).choice(split.val, size=min(len(split.val),
                                                              int(train_cfg["val_subsample"])), replace=False))

    def val_recall1(net):
        z = _embed(net, index, val_rows, space, algorithm.L, device)
        return {"recall@1": recall_at_k(z, index.labels[val_rows], ks=(1,))[1]}

    def test_recall1(net):  # recorded beside selection, never used for it
        z = _embed(net, index, split.test, space, algorithm.L, device)
        return {"recall@1": recall_at_k(z, index.labels[split.test], ks=(1,))[1]}

    trainer = Trainer(
        model, objective, optimizer, plan=algorithm.plan, load=load,
        epochs=int(train_cfg.get("epochs", 50)), checkpoint=out_dir / "checkpoint" / "last.pt",
        signature=run_signature("ssdml", dataset, method, method_cfg, model_cfg,
                             {k: v for k, v in train_cfg.items() if k != "device"}, seed,
                             split.fit.tolist(), split.val.tolist()),
        validate=val_recall1, selection_metric="recall@1",
        monitor=test_recall1 if train_cfg.get("monitor_test", True) else None,
        hooks=[algorithm], eval_every=int(train_cfg.get("eval_every", 1)),
        checkpoint_every=int(train_cfg.get("checkpoint_every", 0)), device=device,
        name=f"ssdml {method} seed {seed}")
    if metric_log is not None:      # tests: see every metric step of the run
        original = algorithm.update_metric

        def logged(features, triplets):
            original(features, triplets)
            metric_log.append(algorithm.L.clone())
        algorithm.update_metric = logged
    result = trainer.fit(after_epoch)
    # the network of the selected epoch and L as that epoch ended (the pair its validation scored)
    L = algorithm.L_at(result.best_epoch) if result.best_epoch else algorithm.L.detach().cpu()
    test, test_other = evaluate_both_spaces(model, index, split.test, space, L, recall_ks, seed, device)
    other = "after_L" if space == "before_L" else "before_L"
    by_test = [r for r in result.history if "test_recall@1" in r]
    best_test = max(by_test, key=lambda r: r["test_recall@1"]) if by_test else None
    summary = {"dataset": dataset, "method": method, "seed": seed, "alpha_deg": alpha, "best_epoch": result.best_epoch,
               "val_recall@1": result.best_score, "retrieval_space": space, "test": test,
               f"test_{other}": test_other,
               "test_selected": None if best_test is None else {"epoch": best_test["epoch"],
                                                                "recall@1": best_test["test_recall@1"]},
               "metric_steps": algorithm.metric_steps, "labelled_rows": algorithm.labelled.tolist(),
               "pretrain_loss": None if pretrain_history is None else [r["loss"] for r in pretrain_history],
               "max_orthonormality_error": max(algorithm.orthonormality_errors, default=None)}
    if tuning_point is not None:
        summary["tuning_point"] = int(tuning_point)
    return save_run(out_dir, {"state_dict": model.state_dict(), "L": L, "model_cfg": model_cfg, "method": method,
                                  "best_epoch": result.best_epoch}, result.history, summary)


def initial_metric(model, method_cfg: dict[str, Any], seed: int) -> torch.Tensor:
    """The L every run of ``seed`` starts from (:meth:`SSDMLStep.init` with the run's seed)."""
    step = SSDMLStep()
    step.init(model.embedding_dim, int(method_cfg.get("metric_dim", 64)), seed=seed)
    return step.L.detach().cpu()


def initial(dataset: str, raw_root: str | Path, split_path: str | Path, model_cfg: dict[str, Any], seed: int,
            out: str | Path, recall_ks: Sequence[int], device: str = "cpu", method_cfg: dict[str, Any] | None = None,
            space: str = "after_L", train_cfg: dict[str, Any] | None = None,
            init: str | Path | None = None) -> dict[str, Any]:
    """The Initial row: the seed's initial network (random, or pretrained on its labelled images when
    ``train_cfg.pretrain`` is set, as the runs start) and initial L (module docstring)."""
    if space not in RETRIEVAL_SPACES:
        raise DmlReproError(f"retrieval_space: '{space}' is not one of {', '.join(RETRIEVAL_SPACES)}")
    seed_everything(seed)
    index, split = load_run_inputs(dataset, raw_root, split_path)
    model = _build_model(model_cfg, init)
    train_cfg = train_cfg or {}
    if train_cfg.get("pretrain"):  # the very network the seed's runs start Algorithm 1 from
        from dmlrepro.papers.ssdml.algorithm import draw_labelled
        labelled = draw_labelled(split.fit, index.labels[split.fit], int(train_cfg.get("labels_per_class", 10)), seed)
        pretrain_on_labelled(model, index, labelled, train_cfg["pretrain"], seed, Path(out).parent / f".{Path(out).stem}",
                             device)
    L = initial_metric(model, method_cfg or {}, seed)
    test, test_other = evaluate_both_spaces(model, index, split.test, space, L, recall_ks, seed, device)
    other = "after_L" if space == "before_L" else "before_L"
    summary = {"dataset": dataset, "method": "initial", "seed": seed, "best_epoch": 0, "val_recall@1": None,
               "retrieval_space": space, "test": test, f"test_{other}": test_other, "test_selected": None,
               "weights_sha256": hashlib.sha256(b"".join(v.numpy().tobytes() for v in model.state_dict().values()))
               .hexdigest()}
    write_json(out, summary)
    return summary


def train_supervised(dataset: str, raw_root: str | Path, split_path: str | Path, method: str,
                     method_cfg: dict[str, Any], model_cfg: dict[str, Any], train_cfg: dict[str, Any], seed: int,
                     out_dir: str | Path, recall_ks: Sequence[int], device: str = "cpu",
                     init: str | Path | None = None) -> dict[str, Any]:
    """Table 5's supervised rows (Triplet, Angular): ``method_cfg.supervised_loss`` (a PML loss spec,
    e.g. ``{name: TripletMarginLoss}`` or ``{name: AngularLoss}``) trained on the seed's labelled
    images only (``labels_per_class`` of each training class, the same draw as the semi-supervised
    runs), no unlabelled image. Decisions (the paper: "use only the labeled examples"): the same
    network and features as Ours, a linear layer of ``metric_dim`` outputs (L2-normalised) in L's
    place, trained with the network; batches of ``batch_size`` images, ``m = labels_per_class`` per
    class (PML's MPerClassSampler), as many batches per epoch as the labelled set fills; PML's default
    hyperparameters and all the batch's tuples; the same optimiser, lr, epochs and validation selection
    as the run's schedule. Retrieval on the layer's output ("after_L"); the features before it beside."""
    from dmlrepro.evaluation.image_retrieval import recall_at_k
    from dmlrepro.papers.ssdml.algorithm import draw_labelled
    from dmlrepro.training import components
    from dmlrepro.training.images import ImageBatches, MetricLossObjective, m_per_class_plan
    seed_everything(seed)
    index, split = load_run_inputs(dataset, raw_root, split_path)
    out_dir = Path(out_dir)
    model = _build_model(model_cfg, init, embedding_dim=int(method_cfg.get("metric_dim", 128)))
    per_class = int(train_cfg.get("labels_per_class", 5))
    labelled = draw_labelled(split.fit, index.labels[split.fit], per_class, seed)
    row_labels = torch.as_tensor(index.labels, dtype=torch.long)
    n_classes = len(np.unique(index.labels[labelled]))
    batch = min(int(train_cfg.get("batch_size", 100)) // per_class * per_class, n_classes * per_class)
    iterations = max(1, len(labelled) // batch)
    objective = MetricLossObjective(components.build("losses", method_cfg["supervised_loss"]))
    tf = input_transform(index, model.input_spec)
    val_rows = split.val
    if train_cfg.get("val_subsample"):
        val_rows = np.sort(np.random.default_rng(seed).choice(split.val, size=min(len(split.val),
                                                              int(train_cfg["val_subsample"])), replace=False))

    def val_recall1(net):
        z = embed_rows(net, index, val_rows, net.input_spec, tf, device=device)
        return {"recall@1": recall_at_k(z, index.labels[val_rows], ks=(1,))[1]}

    trainer = Trainer(
        model, objective, _optimizer(train_cfg, model.parameters()),
        plan=lambda e: m_per_class_plan(labelled, index.labels[labelled], m=per_class, batch_size=batch,
                                        iterations=iterations, seed=seed, epoch=e, where="labelled"),
        load=ImageBatches(index, model.input_spec, tf, labels=row_labels.numpy(), device=device),
        epochs=int(train_cfg.get("epochs", 50)), checkpoint=out_dir / "checkpoint" / "last.pt",
        signature=run_signature("ssdml-supervised", dataset, method, method_cfg, model_cfg,
                                {k: v for k, v in train_cfg.items() if k != "device"}, seed, labelled.tolist()),
        validate=val_recall1, selection_metric="recall@1", eval_every=int(train_cfg.get("eval_every", 1)),
        checkpoint_every=int(train_cfg.get("checkpoint_every", 0)), device=device,
        name=f"ssdml {method} seed {seed}")
    result = trainer.fit()
    test = evaluate_image_embeddings_of(model, index, split.test, tf, recall_ks, seed, device, METRICS)
    features = embed_rows(model, index, split.test, model.input_spec, tf, device=device, features=True)
    features /= np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    from dmlrepro.evaluation.image_retrieval import evaluate_image_embeddings
    before = evaluate_image_embeddings(features, index.labels[split.test], recall_ks=recall_ks,
                                       metrics=("recall", "nmi"), seed=seed)
    summary = {"dataset": dataset, "method": method, "seed": seed, "best_epoch": result.best_epoch,
               "val_recall@1": result.best_score, "retrieval_space": "after_L", "test": test,
               "test_before_L": before, "test_selected": None, "labelled_rows": labelled.tolist(),
               "supervised_loss": method_cfg["supervised_loss"]}
    return save_run(out_dir, {"state_dict": model.state_dict(), "model_cfg": model_cfg, "method": method,
                                  "best_epoch": result.best_epoch}, result.history, summary)


def evaluate_image_embeddings_of(model, index, rows, transform, recall_ks, seed, device, metrics) -> dict[str, float]:
    """The metrics of ``model``'s embeddings of ``rows`` among themselves."""
    from dmlrepro.evaluation.image_retrieval import evaluate_image_embeddings
    z = embed_rows(model, index, rows, model.input_spec, transform, device=device)
    return evaluate_image_embeddings(z, index.labels[rows], recall_ks=recall_ks, metrics=metrics, seed=seed)
