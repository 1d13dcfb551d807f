"""Query time (Fig. 5): stage bookkeeping, correctness of the timed searches, figure, errors.

Real data: 20 Amazon kitchen reviews (10 positive, 10 negative) as the gallery, other reviews as
queries, GloVe-50 subset, the 115-word stop list; a tiny randomly initialised model. No
timing is asserted, only that the timed code computes the right answers.
"""

from __future__ import annotations

import json

import numpy as np
import ot
import pandas as pd
import pytest
import torch

from dmlrepro import DmlReproError
from dmlrepro.data.build import build_text_pointsets
from dmlrepro.data.text_corpora import RawDocument, read_amazon
from dmlrepro.data.word_vectors import load_word_vectors
from dmlrepro.papers.wsset.query_time import (
    STAGES,
    ClassicEMDSearch,
    EmbeddingSearch,
    QueryPreprocessor,
    PrunedEMDSearch,
    ThresholdEMDSearch,
    queries_from_split,
    rank_top_k,
    run_query_time,
    time_query,
    write_query_time,
)
from dmlrepro.models.set_transformer import SetTransformerEmbedder, count_parameters
from dmlrepro.ot.emd import ground_cost, wmd
from dmlrepro.papers.wsset.query_time_figure import plot_query_time
from dmlrepro.papers.wsset.trainer import embed

# FastEMD (pyemd's C++ backend) rounds masses and costs to integers at 1e-6 of their maxima, so
# its error grows with the number of bins: about 1e-4 relative on long reviews, less here.
FASTEMD_RTOL = 5e-4


@pytest.fixture(scope="module")
def amazon(shared_data):
    folder = shared_data / "wmd-text" / "amazon" / "kitchen"
    docs = read_amazon([folder / "positive.review", folder / "negative.review"], label="sentiment")
    vectors = load_word_vectors("glove50_subset", shared_data)
    preprocess = QueryPreprocessor.from_config("amazon", {"stop_words": "default"}, shared_data, vectors=vectors)
    gallery_docs = docs[:10] + docs[1000:1010]
    gallery = build_text_pointsets(gallery_docs, vectors, set(preprocess.stop_words), dataset="amazon",
                                   stop_words_name=preprocess.stop_words_name)
    queries = docs[10:14] + docs[1010:1013]
    return {"gallery": gallery, "gallery_docs": gallery_docs, "queries": queries, "preprocess": preprocess}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return SetTransformerEmbedder(input_dim=51, layers=1, heads=3, ff_dim=32, dropout=0.1, head_dims=(16, 8)).eval()


@pytest.fixture(scope="module")
def run(amazon, model):
    return run_query_time(amazon["queries"], amazon["gallery"], None, model, amazon["preprocess"],
                          n_queries=3, seed=1, k=5, progress=False)


def test_stages_add_up_to_total(run, model):
    df, summary = run
    assert set(df["method"]) == {"classic_emd", "threshold_emd", "pruned_emd", "ours"}
    assert len(df) == 4 * 3 * len(STAGES)
    wide = df.pivot_table(index=["method", "query"], columns="stage", values="seconds")
    np.testing.assert_allclose(wide["preprocessing"] + wide["encoding"] + wide["distance"], wide["total"], rtol=1e-12)
    assert (df["seconds"] >= 0).all()
    totals = df[df["stage"] == "total"]
    assert (totals["wall_seconds"] >= totals["seconds"]).all()
    encoding = df[df["stage"] == "encoding"].set_index("method")
    emd_methods = ["classic_emd", "threshold_emd", "pruned_emd"]
    assert (encoding.loc[emd_methods, "seconds"] == 0).all()
    assert not encoding.loc[emd_methods, "applicable"].any()
    assert encoding.loc["ours", "applicable"].all() and (encoding.loc["ours", "seconds"] > 0).all()
    # the three timed queries are distinct and none is the warm-up
    assert len(set(summary["query_ids"])) == 3 and summary["warmup_query_id"] not in summary["query_ids"]
    assert summary["ours_parameters"] == count_parameters(model)
    assert summary["methods_not_run"] == ["bert"]
    for method in ("classic_emd", "threshold_emd", "pruned_emd"):
        assert summary["speedup_distance"][method] > 0
        assert summary["stages"][method]["distance"]["n"] == 3
    assert summary["paper_speedup_distance"] == {"classic_emd": 905.9, "threshold_emd": 39.625}


def test_query_preprocessing_matches_the_dataset_build(amazon):
    gallery = amazon["gallery"]
    for j in (0, 15):
        doc = amazon["gallery_docs"][j]
        query = amazon["preprocess"](doc.text, doc.doc_id)
        assert query.doc_words(0) == gallery.doc_words(j)
        np.testing.assert_array_equal(query.doc(0)[0], gallery.doc(j)[0])
        np.testing.assert_array_equal(query.doc(0)[1], gallery.doc(j)[1])


def test_emd_searches_compute_exact_wmd(amazon):
    gallery, preprocess = amazon["gallery"], amazon["preprocess"]
    doc = amazon["queries"][0]
    query = preprocess(doc.text, doc.doc_id)
    xq, wq = query.doc(0)
    reference = np.array([wmd(xq, wq, *gallery.doc(j)) for j in range(len(gallery))])
    pot = np.array([ot.emd2(wq / wq.sum(), w / w.sum(), ground_cost(xq, v))
                    for v, w in map(gallery.doc, range(len(gallery)))])
    np.testing.assert_allclose(reference, pot, rtol=1e-10)

    classic = time_query(ClassicEMDSearch(gallery), preprocess, doc.text, doc.doc_id, k=5)
    np.testing.assert_allclose(classic.result.distances, reference, rtol=1e-10)
    np.testing.assert_array_equal(classic.result.top_k, np.argsort(reference, kind="stable")[:5])

    fast = time_query(ThresholdEMDSearch(gallery, threshold=None), preprocess, doc.text, doc.doc_id, k=5)
    np.testing.assert_allclose(fast.result.distances, reference, rtol=FASTEMD_RTOL)

    # the pruned search: classic EMD's top k and their exact distances; the rest ruled out (inf)
    for k in (1, 5, len(gallery)):
        pruned = time_query(PrunedEMDSearch(gallery, k), preprocess, doc.text, doc.doc_id, k=k)
        np.testing.assert_array_equal(pruned.result.top_k, np.argsort(reference, kind="stable")[:k])
        np.testing.assert_allclose(pruned.result.distances[pruned.result.top_k], reference[pruned.result.top_k],
                                   rtol=1e-10)
        assert np.sum(np.isfinite(pruned.result.distances)) == k
    # a gallery document's own text finds itself at distance 0 (its words are all shared)
    own = amazon["gallery_docs"][3]
    pruned = time_query(PrunedEMDSearch(gallery, 2), preprocess, own.text, own.doc_id, k=2)
    assert pruned.result.top_k[0] == 3 and pruned.result.distances[3] == 0.0


def test_threshold_emd_uses_the_thresholded_ground_distance(amazon):
    gallery, preprocess = amazon["gallery"], amazon["preprocess"]
    doc = amazon["queries"][1]
    query = preprocess(doc.text, doc.doc_id)
    xq, wq = query.doc(0)
    t = 4.0
    expected = np.array([ot.emd2(wq / wq.sum(), w / w.sum(), np.minimum(ground_cost(xq, v), t))
                         for v, w in map(gallery.doc, range(len(gallery)))])
    cut = ThresholdEMDSearch(gallery, threshold=t).distances(query)
    np.testing.assert_allclose(cut, expected, rtol=FASTEMD_RTOL)
    assert np.all(cut <= ClassicEMDSearch(gallery).distances(query) * (1 + FASTEMD_RTOL))
    # a threshold above every word distance changes nothing
    np.testing.assert_allclose(ThresholdEMDSearch(gallery, threshold=1e6).distances(query),
                               ThresholdEMDSearch(gallery).distances(query), rtol=1e-12)


def test_ours_top_k_equals_brute_force(amazon, model):
    gallery, preprocess = amazon["gallery"], amazon["preprocess"]
    gallery_emb = embed(model, gallery, np.arange(len(gallery)))
    search = EmbeddingSearch(model, gallery_emb)
    for doc in amazon["queries"][:3]:
        timing = time_query(search, preprocess, doc.text, doc.doc_id, k=7)
        q = search.encode(preprocess(doc.text, doc.doc_id)).astype(np.float64)
        brute = np.array([np.sqrt(np.sum((g.astype(np.float64) - q) ** 2)) for g in gallery_emb])
        np.testing.assert_allclose(timing.result.distances, brute, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(timing.result.top_k, np.argsort(brute, kind="stable")[:7])
    # a gallery document's own text finds itself first: query encoding == gallery embedding
    doc = amazon["gallery_docs"][4]
    timing = time_query(search, preprocess, doc.text, doc.doc_id, k=3)
    assert timing.result.top_k[0] == 4 and timing.result.distances[4] < 1e-5


def test_rank_top_k_breaks_ties_by_index():
    d = np.array([3.0, 1.0, 2.0, 1.0, 0.5])
    np.testing.assert_array_equal(rank_top_k(d, 3), [4, 1, 3])
    np.testing.assert_array_equal(rank_top_k(d, 10), [4, 1, 3, 2, 0])


def test_results_and_figure_are_written(run, tmp_path):
    df, summary = run
    csv_path, json_path = tmp_path / "query_time.csv", tmp_path / "query_time.json"
    write_query_time(df, summary, csv_path, json_path)
    back = pd.read_csv(csv_path)
    assert len(back) == len(df) and list(back.columns) == list(df.columns)
    assert json.loads(json_path.read_text())["speedup_distance"] == summary["speedup_distance"]
    out = plot_query_time(csv_path, json_path, tmp_path / "fig5.png")
    assert out["png"].stat().st_size > 0 and out["pdf"].stat().st_size > 0
    out = plot_query_time(df, None, tmp_path / "fig5_no_summary.png")  # speed-ups recomputed from the table
    assert out["png"].is_file()


def test_empty_query_is_an_error_naming_it(amazon, model):
    bad = RawDocument(doc_id="kitchen/stopwords-only#1", label="x", text="The and of, to a in! zzzqqxv")
    queries = amazon["queries"][:2] + [bad]
    with pytest.raises(DmlReproError, match="kitchen/stopwords-only#1"):
        run_query_time(queries, amazon["gallery"], None, model, amazon["preprocess"], n_queries=2, progress=False)
    with pytest.raises(DmlReproError, match=r"query\[0\]"):
        amazon["preprocess"]("  ...  ", "query[0]")


def test_bad_inputs_are_errors(amazon, model):
    gallery, preprocess = amazon["gallery"], amazon["preprocess"]
    with pytest.raises(DmlReproError, match="n_queries \\+ 1"):
        run_query_time(amazon["queries"][:2], gallery, None, model, preprocess, n_queries=2, progress=False)
    with pytest.raises(DmlReproError, match="do not match"):
        run_query_time(amazon["queries"], gallery, np.zeros((3, 8)), model, preprocess, n_queries=1, progress=False)
    with pytest.raises(DmlReproError, match="threshold"):
        ThresholdEMDSearch(gallery, threshold=-1.0)
    other = QueryPreprocessor(preprocess.vectors, None)
    with pytest.raises(DmlReproError, match="stop list"):
        other.check_matches(gallery)


def test_gallery_subsample_and_queries_from_split(amazon, model):
    df, summary = run_query_time(amazon["queries"], amazon["gallery"], None, model, amazon["preprocess"],
                                 n_queries=1, gallery_size=7, methods=("ours",), progress=False)
    assert summary["gallery_size"] == 7 and set(df["method"]) == {"ours"}
    picked = queries_from_split(amazon["gallery_docs"], amazon["gallery"], [3, 12])
    assert [d.doc_id for d in picked] == [amazon["gallery"].doc_ids[3], amazon["gallery"].doc_ids[12]]
