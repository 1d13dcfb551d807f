"""Your own text corpus: tsv, folders and jsonl declared in config, run by WSSET's methods to Table I
through the workflow, then the trained run applied to new documents (embed, search, exact WMD)."""
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from dmlrepro import DmlReproError
from dmlrepro.data.build import build_pointsets
from dmlrepro.data.text_corpora import RawDocument, amazon_sentiment_example, write_user_corpus

PER_CLASS = 30
FORMATS = {"tsv": "reviews.tsv", "folders": "reviews", "jsonl": "reviews.jsonl"}
PLAIN = {"vectors": "glove50_subset", "stop_words": "default"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, shared_data):
    """80 real Amazon kitchen reviews, relabelled by sentiment, in each format: {format: path}."""
    root = tmp_path_factory.mktemp("own_text")
    docs = amazon_sentiment_example(shared_data, PER_CLASS)
    return {fmt: write_user_corpus(docs, fmt, root / name) for fmt, name in FORMATS.items()}


def test_example_corpus_is_real_sentiment_labelled_amazon(shared_data, tmp_path):
    docs = amazon_sentiment_example(shared_data, 5)
    assert [d.label for d in docs] == ["negative"] * 5 + ["positive"] * 5
    assert docs[0].doc_id == "kitchen/negative.review#1" and len(docs[0].text) > 50
    from dmlrepro.cli import main  # the documented command writes the same documents
    assert main(["example-corpus", "--out", str(tmp_path / "r.tsv"), "--per-class", "5",
                 "--mirror", str(shared_data)]) == 0
    lines = (tmp_path / "r.tsv").read_text().splitlines()
    assert len(lines) == 10 and lines[0].startswith("negative\t") and lines[-1].startswith("positive\t")


def test_three_formats_give_identical_pointsets(corpus, shared_data):
    built = {fmt: build_pointsets("mine", {"source": fmt, "path": str(p), **PLAIN}, shared_data)
             for fmt, p in corpus.items()}
    first = built["tsv"][0]
    assert len(first) == 2 * PER_CLASS and list(first.label_names) == ["negative", "positive"]
    assert all(splits is None for _, splits in built.values())  # random splits, made by the pointsets step
    for fmt, (ps, _) in built.items():
        for key in ("vectors", "weights", "offsets", "labels", "label_names", "word_ids", "vocab"):
            assert np.array_equal(getattr(ps, key), getattr(first, key)), (fmt, key)
        assert ps.meta["own_corpus"]["format"] == fmt and ps.meta["preprocessing"] == {
            "vectors": "glove50_subset", "stop_words": "wmd-text/stop_words_115.txt"}
    assert built["tsv"][0].doc_ids[0] == "line:1" and built["jsonl"][0].doc_ids[0] == "line:1"
    assert built["folders"][0].doc_ids[0] == "negative/0000.txt"


def test_jsonl_keys_are_configurable(tmp_path, shared_data):
    lines = [{"body": f"the {w} was great and cheap", "y": y, "sku": f"s{i}"}
             for i, (w, y) in enumerate([("kettle", 1), ("pan", 0), ("knife", 1), ("pot", 0)])]
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    ps, _ = build_pointsets("mine", {"source": "jsonl", "path": str(path), "text_key": "body", "label_key": "y",
                                     "id_key": "sku", **PLAIN}, shared_data)
    assert list(ps.doc_ids) == ["s0", "s1", "s2", "s3"] and list(ps.label_names) == ["0", "1"]
    assert list(ps.labels) == [1, 0, 1, 0]


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


GOOD = "pos\tgood kettle\nneg\tbad pan\n"


@pytest.mark.parametrize("source,setup,named", [
    ("tsv", lambda d: _write(d / "c.tsv", GOOD + "no tab on this line\n"), r"c.tsv:3: no tab"),
    ("tsv", lambda d: _write(d / "c.tsv", GOOD + "\tan empty label\n"), r"c.tsv:3: empty label"),
    ("tsv", lambda d: _write(d / "c.tsv", "\n\n"), r"c.tsv: empty file"),
    ("tsv", lambda d: _write(d / "c.tsv", b"pos\tgood\nneg\tbad \xff\n"), r"c.tsv:2: not valid utf-8"),
    ("tsv", lambda d: _write(d / "c.tsv", "pos\tgood kettle\npos\tgood pan\n"), r"c.tsv: every document has the label 'pos'"),
    ("tsv", lambda d: d / "missing.tsv", r"missing.tsv"),
    ("folders", lambda d: d / "nowhere", r"nowhere: corpus folder not found"),
    ("folders", lambda d: (_write(d / "f/pos/1.txt", "good"), _write(d / "f/README", "x"))[0].parents[1],
     r"f/README: a file outside the class folders"),
    ("folders", lambda d: (_write(d / "f/pos/1.txt", "good"), (d / "f/neg").mkdir())[0].parents[1],
     r"f/neg: class folder without documents"),
    ("jsonl", lambda d: _write(d / "c.jsonl", '{"text": "good", "label": "pos"}\n{"text": "bad"'), r"c.jsonl:2: not valid JSON"),
    ("jsonl", lambda d: _write(d / "c.jsonl", '{"body": "good", "label": "pos"}\n'), r"c.jsonl:1: no key 'text'"),
    ("jsonl", lambda d: _write(d / "c.jsonl", '{"text": "good", "label": ["pos"]}\n'), r"c.jsonl:1: bad label \['pos'\]"),
    ("jsonl", lambda d: _write(d / "c.jsonl", '["good", "pos"]\n'), r"c.jsonl:1: expected a JSON object"),
    ("csv", lambda d: _write(d / "c.tsv", GOOD), r"unknown value 'csv'"),
])
def test_bad_input_is_a_one_line_error_naming_file_and_line(tmp_path, shared_data, source, setup, named):
    path = setup(tmp_path)
    with pytest.raises(DmlReproError, match=named) as err:
        build_pointsets("mine", {"source": source, "path": str(path), **PLAIN}, shared_data)
    assert "\n" not in str(err.value)


def test_no_word_in_the_vectors_names_the_vectors_file(tmp_path, shared_data):
    vectors = _write(tmp_path / "tiny.vec", "2 3\nzebra 0.1 0.2 0.3\nquark 0.3 0.2 0.1\n")  # word2vec text
    corpus = _write(tmp_path / "c.tsv", GOOD)
    with pytest.raises(DmlReproError, match=r"c.tsv: every document is empty .* has a vector in '.*tiny.vec'"):
        build_pointsets("mine", {"source": "tsv", "path": str(corpus), "vectors": str(vectors), "stop_words": None},
                        shared_data)
    # GloVe's own text format (no "count dim" line) is read too; a user's stop list is a path
    glove = _write(tmp_path / "glove.txt", "good 0.1 0.2 0.3\nbad 0.3 0.2 0.1\npan 0.5 0.5 0.5\n")
    stop = _write(tmp_path / "stop.txt", "pan\n")
    ps, _ = build_pointsets("mine", {"source": "tsv", "path": str(corpus), "vectors": str(glove),
                                     "stop_words": str(stop)}, shared_data)
    assert list(ps.vocab) == ["bad", "good"] and ps.dim == 3
    assert ps.meta["preprocessing"] == {"vectors": str(glove.resolve()), "stop_words": str(stop.resolve())}


# ------------------------------------------------------------------------------- the workflow
def own_config(tmp_path: Path, shared_data: Path, datasets: dict, **override) -> Path:
    wsset = {"datasets": datasets, "methods": ["wmd_knn", "wsset"],
             "model": {"layers": 1, "heads": 2, "ff_dim": 16, "dropout": 0.1, "head_dims": [16, 8], "d_model": 16},
             "train": {"epochs": 1, "batch_size": 16, "lr": 1.0e-3, "knn_k": 3, "device": "cpu", "threads": 1},
             "evaluation": {"knn_k": 3}, **override}
    cfg = {"data": {"mirror": str(shared_data), "allow_download": False}, "papers": {"wsset": wsset}}
    path = tmp_path / "own.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


MINE = {"mine": {"source": "tsv", "path": "x.tsv"}}


@pytest.mark.parametrize("datasets,override,named", [
    ({"mine": {"source": "tsv"}}, {}, "datasets.mine: source tsv needs path"),
    ({"bbcsport": {"source": "tsv", "path": "x.tsv"}}, {}, "datasets.bbcsport: the name of a catalogued dataset"),
    ({"mine": {"source": "text"}}, {}, "datasets.mine: not a dataset of the paper"),
    ({"my reviews": {"source": "tsv", "path": "x.tsv"}}, {}, "my reviews"),
    ({"bbcsport": {"source": "text", "path": "x.tsv"}}, {}, "datasets.bbcsport.path: only your own corpus"),
    (MINE, {"studies": {"query_time": {"dataset": "mine", "model_from": "mine"}}}, "studies.query_time.dataset"),
])
def test_config_errors_name_the_dataset(tmp_path, shared_data, datasets, override, named):
    from test_workflow import snakemake
    res = snakemake(tmp_path, "-n", "--configfile", str(own_config(tmp_path, shared_data, datasets, **override)))
    assert res.returncode != 0 and named in res.stdout + res.stderr


def test_documents_to_search_come_in_any_layout_labelled_or_not(tmp_path):
    from dmlrepro.papers.wsset.search import read_documents
    _write(tmp_path / "g/pos/a.txt", "good")
    _write(tmp_path / "g/loose.txt", "no class")
    docs, keys = read_documents(tmp_path / "g")
    assert [(d.doc_id, d.label) for d in docs] == [("loose.txt", ""), ("pos/a.txt", "pos")]
    assert keys == [str((tmp_path / "g/loose.txt").resolve()), str((tmp_path / "g/pos/a.txt").resolve())]
    # the class folder alone: the same file, the same key (so a query is never its own neighbour)
    assert read_documents(tmp_path / "g" / "pos")[1] == [keys[1]]
    _write(tmp_path / "q.tsv", "pos\tgood\njust text, no label\n")
    docs, keys = read_documents(tmp_path / "q.tsv")
    assert [(d.doc_id, d.label, d.text) for d in docs] == [("q.tsv:line:1", "pos", "good"),
                                                           ("q.tsv:line:2", "", "just text, no label")]
    assert keys[1] == f"{(tmp_path / 'q.tsv').resolve()}#line:2"
    docs, keys = read_documents(_write(tmp_path / "one.md", "a single document"))
    assert [(d.doc_id, d.label) for d in docs] == [("one.md", "")]
    with pytest.raises(DmlReproError, match="nowhere.tsv: not found"):
        read_documents(tmp_path / "nowhere.tsv")


@pytest.fixture(scope="module")
def own_run(tmp_path_factory, corpus, shared_data):
    """WMD kNN and WSSET (1 epoch) on the tsv corpus, one split, through snakemake to Table I."""
    from test_workflow import snakemake
    work = tmp_path_factory.mktemp("own_run")
    cfg = own_config(work, shared_data, {"my_reviews": {
        "source": "tsv", "path": str(corpus["tsv"]), "vectors": "glove50_subset", "stop_words": "default",
        "empty_documents": "error", "splits": {"n": 1, "test_size": 0.3, "val_size": 0.2, "seed": 0}, "emd_shards": 1}})
    res = snakemake(work, "--cores", "1", "results/wsset/tables/table1.md", "--configfile", str(cfg))
    assert res.returncode == 0, res.stderr[-3000:]
    return work


def test_your_corpus_runs_to_table_one_named_and_without_a_paper_column(own_run):
    table = (own_run / "results/wsset/tables/table1.md").read_text()
    header = next(line for line in table.splitlines() if line.startswith("| Method"))
    assert "Paper" not in header and "Δ" not in header
    import pandas as pd  # the CSV keeps the column, empty, for the comparison figure
    assert set(pd.read_csv(own_run / "results/wsset/tables/table1.csv")["Paper"]) == {"–"}
    for method in ("WMD", "Ours (WSSET)"):
        row = next(line for line in table.splitlines() if line.startswith(f"| {method} "))
        assert "| my_reviews |" in row and "own corpus reviews.tsv (tsv), GloVe-50, 1 new split |" in row
    assert "my_reviews: no paper value" in table and "your own corpus, tsv reviews.tsv" in table
    assert "rebuilt from raw text" not in table  # the BBCSport-specific data notes do not apply
    rec = json.loads((own_run / "results/wsset/my_reviews/split0/wsset/metrics.json").read_text())
    assert rec["n_train"] + rec["n_test"] == 2 * PER_CLASS and 0 <= rec["knn_accuracy"] <= 100


def _search(run_dir, gallery, query, *extra) -> list[list[str]]:
    from dmlrepro.cli import main
    out = Path(run_dir).parents[4] / "hits.tsv"  # the working directory
    assert main(["search", "--model", str(run_dir), "--gallery", str(gallery), "--query", str(query), *extra,
                 "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "query\trank\tneighbour\tneighbour_class\tdistance"
    return [line.split("\t") for line in lines[1:]]


def test_embed_applies_the_runs_preprocessing_and_encoder(own_run, corpus, tmp_path):
    from dmlrepro.cli import main
    run_dir = own_run / "results/wsset/my_reviews/split0/wsset"
    for fmt, path in corpus.items():
        out = tmp_path / f"{fmt}.npy"
        assert main(["embed", "--model", str(run_dir), "--input", str(path), "--out", str(out)]) == 0
        # the same documents, embedded as the training job embedded its dataset
        assert np.allclose(np.load(out), np.load(run_dir / "embeddings.npy"), atol=1e-5), fmt
        info = json.loads(out.with_suffix(".json").read_text())
        assert info["labels"] == ["negative"] * PER_CLASS + ["positive"] * PER_CLASS
    assert info["ids"][0] == "reviews.jsonl:line:1"


def test_search_by_embedding_finds_twins_and_never_the_query_itself(own_run, corpus):
    run_dir = own_run / "results/wsset/my_reviews/split0/wsset"
    rows = _search(run_dir, corpus["folders"], corpus["jsonl"], "-k", "3")
    assert len(rows) == 3 * 2 * PER_CLASS
    firsts = [r for r in rows if r[1] == "1"]
    # line n of the jsonl is file n of the folders: its twin, at distance 0 (different files)
    assert all(float(r[4]) < 1e-3 for r in firsts)
    assert [r[2] for r in firsts] == [f"{lab}/{n:04d}.txt" for n, lab in
                                      enumerate(["negative"] * PER_CLASS + ["positive"] * PER_CLASS)]
    rows = _search(run_dir, corpus["folders"], corpus["folders"] / "positive", "-k", "4")
    assert all(q != n.split("/")[-1] for q, _, n, _, _ in rows)  # the same file is not its own neighbour
    for q in {r[0] for r in rows}:
        dists = [float(r[4]) for r in rows if r[0] == q]
        assert len(dists) == 4 and dists == sorted(dists)


def test_exact_wmd_search_agrees_with_brute_force(own_run, corpus, tmp_path, shared_data):
    from dmlrepro.ot.emd import wmd
    from dmlrepro.papers.wsset.search import TextRun
    queries = [RawDocument("q0", "", "The blender broke after a week, a waste of money."),
               RawDocument("q1", "", "Great knife set, sharp and sturdy, I love it."),
               RawDocument("q2", "", "The pan heats evenly and cleans up easily.")]
    qfile = write_user_corpus(queries, "jsonl", tmp_path / "queries.jsonl")
    # WMD kNN's run has no model: exact WMD needs only the dataset's preprocessing
    run_dir = own_run / "results/wsset/my_reviews/split0/wmd_knn"
    rows = _search(run_dir, corpus["tsv"], qfile, "-k", "5", "--exact-wmd")
    run = TextRun(run_dir)
    gallery, query = run.documents(corpus["tsv"]), run.documents(qfile)
    for j in range(len(queries)):
        brute = np.array([wmd(*query.pointsets.doc(j), *gallery.pointsets.doc(i)) for i in range(len(gallery.ids))])
        order = np.lexsort((np.arange(len(brute)), brute))[:5]
        got = [r for r in rows if r[0] == f"queries.jsonl:line:{j + 1}"]
        assert [r[2] for r in got] == [gallery.ids[i] for i in order]
        assert np.allclose([float(r[4]) for r in got], brute[order], atol=1e-4)
        assert [r[3] for r in got] == [gallery.labels[i] for i in order]
    # a query that is a gallery line is not its own neighbour
    rows = _search(run_dir, corpus["tsv"], corpus["tsv"], "-k", "1", "--exact-wmd")
    assert len(rows) == 2 * PER_CLASS and all(q != n for q, _, n, _, _ in rows)
    from dmlrepro.cli import main
    assert main(["embed", "--model", str(run_dir), "--input", str(qfile), "--out", str(tmp_path / "e.npy")]) == 2


def test_the_shipped_example_config_plans_the_documented_run(tmp_path, shared_data):
    """config/own_text.yaml with the corpus `dmlrepro example-corpus` writes (README, docs/own-data.md)."""
    import shutil

    from dmlrepro.cli import main
    from test_workflow import REPO, job_counts, snakemake
    shutil.copy(REPO / "config" / "own_text.yaml", tmp_path / "own_text.yaml")
    assert main(["example-corpus", "--out", str(tmp_path / "reviews.tsv"), "--mirror", str(shared_data)]) == 0
    res = snakemake(tmp_path, "-n", "results/wsset/tables/table1.md", "--configfile", str(tmp_path / "own_text.yaml"))
    assert res.returncode == 0, res.stderr[-2000:]
    counts = job_counts(res.stdout)
    assert counts["build_pointsets"] == 1 and counts["train_embedder"] == 2 and counts["evaluate_wmd_knn"] == 2
