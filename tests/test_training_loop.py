"""The generic trainer (training/loop.py), name resolution of components, and the batch plans."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dmlrepro import DmlReproError
from dmlrepro.training import components
from dmlrepro.training.images import MetricLossObjective, m_per_class_plan, shuffled_plan
from dmlrepro.training.loop import Batch, Hook, Trainer


class _Net(nn.Module):
    embedding_dim = 4

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(6, 4)

    def forward(self, x):
        return nn.functional.normalize(self.linear(x), dim=1)


def _data(n=60, seed=0):
    g = np.random.default_rng(seed)
    labels = np.repeat(np.arange(6), n // 6)
    x = (g.normal(size=(n, 6)) + labels[:, None] * 0.5).astype(np.float32)
    return torch.from_numpy(x), labels


class _CountingHook(Hook):
    """Owns state that must survive a checkpoint, as a momentum encoder or a memory would."""

    def __init__(self):
        self.steps = 0

    def on_step_end(self, trainer, batch, loss):
        self.steps += 1

    def state_dict(self):
        return {"steps": self.steps}

    def load_state_dict(self, state):
        self.steps = state["steps"]


def _trainer(tmp_path, epochs=3, checkpoint_every=0, seed=0, monitor=True):
    torch.manual_seed(seed)
    x, labels = _data()
    model = _Net()
    objective = MetricLossObjective(components.build("losses", {"name": "MultiSimilarityLoss"}),
                                    components.build("miners", {"name": "MultiSimilarityMiner"}))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    rows = np.arange(len(labels))
    val = rows[::5]

    def load(planned):
        for r in planned:
            yield Batch(x[r], torch.from_numpy(labels[r]), r)

    def score(net):
        with torch.no_grad():
            e = net(x[val])
        d = torch.cdist(e, e).fill_diagonal_(float("inf"))
        return {"recall@1": float((labels[val][d.argmin(1).numpy()] == labels[val]).mean())}

    hook = _CountingHook()
    trainer = Trainer(model, objective, optimizer,
                      plan=lambda e: m_per_class_plan(rows, labels, m=3, batch_size=12, iterations=4, seed=seed, epoch=e),
                      load=load, epochs=epochs, checkpoint=tmp_path / "ckpt.pt", signature="test",
                      validate=score, selection_metric="recall@1", monitor=score if monitor else None, hooks=[hook],
                      checkpoint_every=checkpoint_every, progress=False)
    return trainer, hook


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_selection_keeps_the_best_validation_epoch(tmp_path):
    trainer, hook = _trainer(tmp_path)
    result = trainer.fit()
    scores = [row["val_recall@1"] for row in result.history]
    assert result.best_score == max(scores)
    assert result.best_epoch == 1 + scores.index(max(scores))
    assert hook.steps == 3 * 4
    assert all("test_recall@1" in row for row in result.history)


def test_the_test_monitor_changes_nothing_but_the_history(tmp_path):
    # the papers' `monitor_test: false` skips a test embedding per epoch; the model must not notice
    with_monitor, _ = _trainer(tmp_path / "a")
    without, _ = _trainer(tmp_path / "b", monitor=False)
    a, b = with_monitor.fit(), without.fit()
    assert all(torch.equal(v, _state(without.model)[k]) for k, v in _state(with_monitor.model).items())
    assert (a.best_epoch, a.best_score) == (b.best_epoch, b.best_score)
    assert not any("test_recall@1" in row for row in b.history)


def test_resume_after_an_interrupted_epoch_gives_the_same_model(tmp_path):
    reference, _ = _trainer(tmp_path / "a")
    reference.fit()

    class Stop(Exception):
        pass

    def stop_after(epoch):
        if epoch == 1:
            raise Stop

    first, _ = _trainer(tmp_path / "b")
    with pytest.raises(Stop):
        first.fit(after_epoch=stop_after)
    resumed, hook = _trainer(tmp_path / "b")
    result = resumed.fit()
    assert hook.steps == 3 * 4  # the hook's state came back with the checkpoint
    assert [r["loss"] for r in result.history] == pytest.approx([r["loss"] for r in reference.history])
    for k, v in _state(reference.model).items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k


def test_resume_in_the_middle_of_an_epoch(tmp_path):
    """Checkpoints every 2 iterations: a run killed after its 3rd step resumes at the 3rd batch."""
    reference, _ = _trainer(tmp_path / "a", checkpoint_every=2)
    reference.fit()

    class Killed(Exception):
        pass

    first, hook = _trainer(tmp_path / "b", checkpoint_every=2)

    def die(trainer, batch, loss):
        if trainer.epoch == 1 and trainer.iteration == 2:  # epoch 2, third batch: after the mid-epoch save
            raise Killed

    hook.on_step_end = lambda trainer, batch, loss: die(trainer, batch, loss)
    with pytest.raises(Killed):
        first.fit()
    saved = torch.load(tmp_path / "b" / "ckpt.pt", weights_only=False)
    assert (saved["epoch"], saved["iteration"]) == (1, 2)
    resumed, _ = _trainer(tmp_path / "b", checkpoint_every=2)
    resumed.fit()
    for k, v in _state(reference.model).items():
        assert torch.allclose(v, resumed.model.state_dict()[k], atol=1e-6), k


def test_a_checkpoint_of_another_configuration_is_ignored(tmp_path):
    trainer, _ = _trainer(tmp_path, epochs=1)
    trainer.fit()
    other, _ = _trainer(tmp_path, epochs=1)
    other.signature = "another"
    assert other._resume() is None


def test_components_resolve_pml_first_then_ours():
    loss = components.build("losses", {"name": "TripletMarginLoss", "margin": 0.3,
                                       "distance": {"name": "LpDistance", "power": 2}})
    assert loss.margin == 0.3 and loss.distance.power == 2
    proxy = components.build("losses", "ProxyNCALoss", num_classes=5, embedding_size=8)
    assert tuple(proxy.proxies.shape) == (5, 8)
    assert components.resolve("losses", "SoftmaxClassifierLoss").__module__.startswith("dmlrepro.")
    with pytest.raises(DmlReproError, match="unknown loss 'NoSuchLoss'"):
        components.build("losses", "NoSuchLoss")
    with pytest.raises(DmlReproError, match="bad parameters"):
        components.build("losses", {"name": "TripletMarginLoss", "marign": 0.1})


def test_m_per_class_plan_is_seeded_and_balanced():
    labels = np.repeat(np.arange(8), 10)
    rows = np.arange(100, 180)
    a = m_per_class_plan(rows, labels, m=4, batch_size=16, iterations=5, seed=1, epoch=2)
    b = m_per_class_plan(rows, labels, m=4, batch_size=16, iterations=5, seed=1, epoch=2)
    c = m_per_class_plan(rows, labels, m=4, batch_size=16, iterations=5, seed=1, epoch=3)
    assert len(a) == 5 and all(len(x) == 16 for x in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    for batch in a:
        _, counts = np.unique(labels[batch - 100], return_counts=True)
        assert (counts == 4).all()


def test_m_per_class_plan_refuses_a_class_smaller_than_m():
    labels = np.array([0] * 5 + [1] * 2 + [2] * 5)
    with pytest.raises(DmlReproError, match="class 1 has 2 images, fewer than m = 4"):
        m_per_class_plan(np.arange(12), labels, m=4, batch_size=8, iterations=2, seed=0, epoch=1)


def test_shuffled_plan_covers_every_row_once():
    batches = shuffled_plan(np.arange(50), batch_size=10, seed=0, epoch=1)
    assert sorted(np.concatenate(batches).tolist()) == list(range(50))


def test_max_grad_norm_bounds_each_sgd_step(tmp_path):
    # with SGD (no momentum) a step moves the parameters by lr x the clipped gradient: norm <= lr x max_grad_norm
    from dmlrepro.training.schedules import linear_warmup_decay
    torch.manual_seed(0)
    x, labels = _data()
    model = _Net()
    objective = MetricLossObjective(components.build("losses", {"name": "MultiSimilarityLoss"}))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    schedule = linear_warmup_decay(optimizer, total_steps=4, warmup_ratio=0.0)
    rows = np.arange(len(labels))
    moves, before = [], {}

    class Watch(Hook):
        def on_step_end(self, trainer, batch, loss):
            flat = torch.cat([p.detach().flatten() for p in model.parameters()])
            moves.append(float((flat - before["flat"]).norm()))
            before["flat"] = flat

    before["flat"] = torch.cat([p.detach().flatten() for p in model.parameters()])
    trainer = Trainer(model, objective, optimizer,
                      plan=lambda e: m_per_class_plan(rows, labels, m=3, batch_size=12, iterations=4, seed=0, epoch=e),
                      load=lambda planned: (Batch(x[r], torch.from_numpy(labels[r]), r) for r in planned),
                      epochs=1, checkpoint=tmp_path / "ckpt.pt", signature="clip", hooks=[Watch(), schedule],
                      max_grad_norm=1e-3, progress=False)
    trainer.fit()
    lrs = [0.5, 0.375, 0.25, 0.125]  # the lr each step used: linear decay to 0 over 4 steps
    assert len(moves) == 4 and all(m > 0 for m in moves)
    assert all(m <= lr * 1e-3 * (1 + 1e-4) for m, lr in zip(moves, lrs))
