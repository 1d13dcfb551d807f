"""Paper values only beside the paper's task; the Data cell of relabelled and user datasets."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from dmlrepro.cli import data_source_label, task_difference
from dmlrepro.papers.wsset.notes import protocol_notes
from dmlrepro.papers.wsset.paper_values import PAPER_RECALL_KS, PAPER_TABLE1_PRINTED, PAPER_TABLE2_PRINTED
from dmlrepro.papers.wsset.run import evaluate_run
from dmlrepro.papers.wsset.tables import build_table1, build_table2
from dmlrepro.reporting.tables import NA, write_table

SENTIMENT = "relabelled by sentiment (2 classes)"


def _rec(dataset, split, knn, source="GloVe-50 rebuilt from raw text, 5 new splits", task_note=None,
         method="wsset"):
    rec = {"dataset": dataset, "method": method, "split": split, "knn_accuracy": knn,
           "recall_at": {str(k): 10.0 for k in PAPER_RECALL_KS.get(dataset, [1, 5])},
           "precision_at_1": 50.0, "map_at_r": 20.0, "data_source": source}
    if task_note:
        rec["task_note"] = task_note
    return rec


def _relabelled_amazon():
    src = "GloVe-50 rebuilt from raw text, 5 new splits, relabelled by sentiment"
    return [_rec("amazon", s, v, src, SENTIMENT) for s, v in enumerate([80.0, 82.0])]


def test_relabelled_dataset_gets_no_paper_value():
    bbc = [_rec("bbcsport", s, v) for s, v in enumerate([95.0, 97.0])]
    t1 = build_table1(bbc + _relabelled_amazon(), pending={"bert_base": "needs download"})
    ours = t1[t1["Method"] == t1.loc[t1["Dataset"] == "BBCSport", "Method"].iloc[0]]
    amazon = ours[ours["Dataset"] == "Amazon"].iloc[0]
    assert amazon["Paper"] == NA and amazon["Δ"] == NA  # the paper's 4-category value is not shown
    assert amazon["Data"].endswith("relabelled by sentiment")
    bbc_row = ours[ours["Dataset"] == "BBCSport"].iloc[0]
    assert bbc_row["Paper"] == PAPER_TABLE1_PRINTED["wsset"]["bbcsport"] and bbc_row["Δ"] != NA
    # rows of methods we could not run: no paper value on the relabelled dataset either
    pending = t1[t1["Ours"] == "needs download"]
    assert set(pending.loc[pending["Dataset"] == "Amazon", "Paper"]) == {NA}
    assert set(pending.loc[pending["Dataset"] == "BBCSport", "Paper"]) == {PAPER_TABLE1_PRINTED["bert_base"]["bbcsport"]}
    # listing the paper's rows we did not run skips the dataset whose task differs
    full = build_table1(bbc + _relabelled_amazon(), include_missing_paper_rows=True)
    assert set(full.loc[full["Dataset"] == "Amazon", "Paper"]) == {NA}
    assert (full.loc[full["Dataset"] == "BBCSport", "Ours"] == "not run").any()

    t2 = build_table2(bbc + _relabelled_amazon())
    assert set(t2.loc[t2["Dataset"] == "Amazon", "Paper"]) == {NA}
    assert set(t2.loc[t2["Dataset"] == "Amazon", "K"]) == set(PAPER_RECALL_KS["amazon"])
    bbc2 = t2[t2["Dataset"] == "BBCSport"]
    assert list(bbc2["Paper"]) == [PAPER_TABLE2_PRINTED["wsset"]["bbcsport"][k] for k in bbc2["K"]]
    # unchanged without the note: the same Amazon records compare with the paper
    plain = build_table1([_rec("amazon", 0, 80.0)])
    assert plain.iloc[0]["Paper"] == PAPER_TABLE1_PRINTED["wsset"]["amazon"]


def test_notes_say_why_and_markdown_shows_it(tmp_path):
    records = _relabelled_amazon() + [_rec("my_docs", 0, 60.0, "own corpus")]
    notes = protocol_notes(records, {})
    assert any(n.startswith("Amazon: no paper value") and SENTIMENT in n for n in notes)
    assert any(n.startswith("my_docs: not a dataset of the paper") for n in notes)
    df = build_table1(records)
    assert set(df["Paper"]) == {NA}
    write_table(df, tmp_path / "t1.csv", tmp_path / "t1.md", "Table I", notes)
    md = (tmp_path / "t1.md").read_text()
    assert "relabelled by sentiment" in md and SENTIMENT in md


def test_data_cell_has_no_stray_separator():
    # a user corpus whose pointsets carry no data_source: the note alone, not "; own corpus"
    assert build_table1([_rec("my_docs", 0, 60.0, "")]).iloc[0]["Data"] == ""
    rows = build_table1([_rec("my_docs", 0, 60.0, ""), _rec("my_docs", 1, 61.0, "own corpus")])
    assert rows.iloc[0]["Data"] == "own corpus"
    labels = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    splits = SimpleNamespace(train=[np.array([0, 1, 2, 3])], test=[np.array([4, 5, 6, 7])])
    emb = np.random.default_rng(0).normal(size=(8, 3)) + 3 * labels[:, None]
    for meta, note, want in [({}, "own corpus", "own corpus"),
                             ({"data_source": "GloVe-50"}, "", "GloVe-50"),
                             ({"data_source": "GloVe-50"}, "c = 1", "GloVe-50; c = 1")]:
        ps = SimpleNamespace(labels=labels, meta=meta)
        rec = evaluate_run(ps, splits, 0, "wsset", "my_docs", [1], 3, embeddings=emb, data_note=note)
        assert rec["data_source"] == want and "task_note" not in rec
    ps = SimpleNamespace(labels=labels, meta={"data_source": "x", "task_note": SENTIMENT})
    assert evaluate_run(ps, splits, 0, "wsset", "amazon", [1], 3, embeddings=emb)["task_note"] == SENTIMENT


def test_data_label_and_task_difference():
    assert data_source_label({"label": "sentiment"}, 5) == \
        "GloVe-50 rebuilt from raw text, 5 new splits, relabelled by sentiment"
    assert "relabelled" not in data_source_label({"label": "category"}, 5)
    labels4 = np.arange(8) % 4
    assert task_difference("amazon", {"label": "category"}, labels4, 4) == ""
    assert task_difference("amazon", {}, labels4, 4) == ""
    assert task_difference("amazon", {"label": "sentiment"}, np.arange(8) % 2, 2) == SENTIMENT
    assert task_difference("bbcsport", {"corpus": "r8"}, labels4, 4) == "corpus 'r8' under the name 'bbcsport'"
    assert task_difference("amazon", {"max_documents": 10}, np.zeros(8, int), 4) == \
        "the subsample holds 1 of the 4 classes"
