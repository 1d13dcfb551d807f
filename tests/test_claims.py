"""Claims as data: verdicts on hand-built per-split tables, expansion over settings/Ks/datasets,
the results table from metrics.json files, the written claims.{csv,md}, and WSSET's claims list."""

import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest

from conftest import PAPERS_DIR

from dmlrepro import DmlReproError
from dmlrepro.papers.wsset.report import results_frame
from dmlrepro.reporting.claims import (
    DOES_NOT_HOLD, HOLDS, NOT_RUN, RESULT_COLUMNS, UNDECIDED, ClaimSpec, Rows, evaluate_claims, verdict, write_claims,
)

PAPER = PAPERS_DIR / "wsset-self-supervised-dml-pointsets.md"


def table(rows):
    """rows: (dataset, method, values per split, metric[, study, setting])."""
    out = []
    for ds, method, values, metric, *study in rows:
        name, setting = (study + [math.nan])[:2] if study else ("", math.nan)
        out += [{"dataset": ds, "method": method, "study": name, "setting": setting, "split": i, "metric": metric,
                 "value": v} for i, v in enumerate(values)]
    return pd.DataFrame(out, columns=list(RESULT_COLUMNS))


def claim(a, b, metric="knn_accuracy", cid="c", direction="higher"):
    return ClaimSpec(cid, "A beats B.", "§0", "Table I", metric, a, b, direction)


def one(result):
    assert len(result) == 1
    return result.iloc[0]


# A = 90, 92, 94 (mean 92, std 2); the B values below put B's interval apart from or across A's
@pytest.mark.parametrize("b_values,expected", [
    ([85.0, 86.0, 87.0], HOLDS),             # 92 ± 2 vs 86 ± 1: gap 6 > 3
    ([97.0, 98.0, 99.0], DOES_NOT_HOLD),     # 92 ± 2 vs 98 ± 1: B better, gap 6 > 3
    ([88.0, 89.0, 90.0], UNDECIDED),         # 92 ± 2 vs 89 ± 1: gap 3 = 2 + 1, intervals touch
    ([92.0, 93.0, 94.0], UNDECIDED),         # 92 ± 2 vs 93 ± 1: overlap, B's mean higher
])
def test_verdicts_on_a_hand_built_table(b_values, expected):
    t = table([("bbcsport", "wsset", [90.0, 92.0, 94.0], "knn_accuracy"),
               ("bbcsport", "wmd_knn", b_values, "knn_accuracy")])
    row = one(evaluate_claims([claim(Rows("wsset", "bbcsport"), Rows("wmd_knn", "bbcsport"))], t))
    assert row["verdict"] == expected
    assert row["A mean ± std"] == "92.00 ± 2.00" and row["n runs"] == "3 / 3"
    assert row["a_mean"] == pytest.approx(92.0) and row["a_std"] == pytest.approx(2.0)


def test_overlap_undecided_and_lower_is_better():
    t = table([("twitter", "a", [10.0, 14.0], "knn_accuracy"), ("twitter", "b", [13.0, 15.0], "knn_accuracy")])
    # 12 ± 2.83 vs 14 ± 1.41: overlap
    assert one(evaluate_claims([claim(Rows("a", "twitter"), Rows("b", "twitter"))], t))["verdict"] == UNDECIDED
    t = table([("twitter", "a", [1.0, 1.2], "time"), ("twitter", "b", [5.0, 5.2], "time")])
    spec = claim(Rows("a", "twitter"), Rows("b", "twitter"), metric="time", direction="lower")
    assert one(evaluate_claims([spec], t))["verdict"] == HOLDS
    assert verdict(2.0, 0.1, 1.0, 0.1, higher_is_better=False) == DOES_NOT_HOLD


def test_not_run_when_a_side_has_no_runs():
    t = table([("bbcsport", "wsset", [90.0, 92.0], "knn_accuracy")])
    row = one(evaluate_claims([claim(Rows("wsset", "bbcsport"), Rows("exemplar", "bbcsport"))], t))
    assert row["verdict"] == NOT_RUN and row["B mean ± std"] == NOT_RUN and row["n runs"] == "2 / 0"
    assert row["A"] == "wsset, bbcsport" and row["B"] == "exemplar, bbcsport"
    # the metric measured on one side only
    t = table([("bbcsport", "a", [1.0], "R@5"), ("bbcsport", "b", [0.0], "R@15")])
    assert one(evaluate_claims([claim(Rows("a", "bbcsport"), Rows("b", "bbcsport"), "R@5")], t))["verdict"] == NOT_RUN


def test_single_run_is_a_point():
    t = table([("bbcsport", "a", [91.0], "knn_accuracy"), ("bbcsport", "b", [90.0, 90.2], "knn_accuracy")])
    row = one(evaluate_claims([claim(Rows("a", "bbcsport"), Rows("b", "bbcsport"))], t))
    assert row["A mean ± std"] == "91.00 ± n/a" and row["verdict"] == HOLDS  # 91 vs 90.1 ± 0.14


def test_study_settings_pairwise_product_and_every_k():
    t = table([
        ("twitter", "int", [80.0, 81.0], "knn_accuracy", "small_data", 10.0),
        ("twitter", "tl", [70.0, 71.0], "knn_accuracy", "small_data", 10.0),
        ("twitter", "int", [60.0, 61.0], "knn_accuracy", "small_data", 30.0),
        ("twitter", "tl", [75.0, 76.0], "knn_accuracy", "small_data", 30.0),
        ("twitter", "tl", [75.0, 76.0], "knn_accuracy", "small_data", 90.0),  # no A run at 90
    ])
    res = evaluate_claims([claim(Rows("int", "twitter", "small_data"), Rows("tl", "twitter", "small_data"))], t)
    assert list(res["A"]) == ["int, twitter, small_data 10", "int, twitter, small_data 30"]
    assert list(res["B"]) == ["tl, twitter, small_data 10", "tl, twitter, small_data 30"]
    assert list(res["verdict"]) == [HOLDS, DOES_NOT_HOLD]
    # a range on both sides: still pairwise, only inside the range
    ranged = claim(Rows("int", "twitter", "small_data", (30, math.inf)), Rows("tl", "twitter", "small_data", (30, math.inf)))
    assert list(evaluate_claims([ranged], t)["A"]) == ["int, twitter, small_data 30"]
    # different selections: every A setting against every B setting, each R@K on both sides, each dataset
    grid = table([
        ("recipe", "wsset", [9.0, 9.1], "R@25", "c_grid", 7.0), ("recipe", "wsset", [9.0, 9.1], "R@50", "c_grid", 7.0),
        ("recipe", "wsset", [5.0, 5.1], "R@25", "c_grid", 30.0), ("recipe", "wsset", [9.5, 9.6], "R@50", "c_grid", 30.0),
        ("recipe", "wsset", [5.0, 5.1], "R@25", "c_grid", 100.0), ("recipe", "wsset", [5.0, 5.1], "knn_accuracy", "c_grid", 100.0),
    ])
    spec = claim(Rows("wsset", None, "c_grid", (7, 13)), Rows("wsset", None, "c_grid", (math.nextafter(13, math.inf), math.inf)), "R@*")
    res = evaluate_claims([spec], grid)
    got = [(r.A.split(", ")[-1], r.B.split(", ")[-1], r.metric, r.verdict) for r in res.itertuples()]
    assert got == [("c_grid 7", "c_grid 30", "R@25", HOLDS), ("c_grid 7", "c_grid 30", "R@50", DOES_NOT_HOLD),
                   ("c_grid 7", "c_grid 100", "R@25", HOLDS)]
    assert set(res["A"].str.split(", ").str[1]) == {"recipe"}
    # nothing matched: one row that says what was asked for
    row = one(evaluate_claims([spec], t))
    assert row["verdict"] == NOT_RUN and row["A"] == "wsset, each dataset, c_grid 7–13"
    assert row["B"] == "wsset, each dataset, c_grid > 13"


def test_labels_and_bad_specs():
    t = table([("bbcsport", "wsset", [90.0, 92.0], "knn_accuracy"), ("bbcsport", "wmd_knn", [80.0, 81.0], "knn_accuracy")])
    spec = claim(Rows("wsset", "bbcsport"), Rows("wmd_knn", "bbcsport"))
    row = one(evaluate_claims([spec], t, row_label=str.upper, dataset_label=str.title))
    assert row["A"] == "WSSET, Bbcsport" and row["claim"] == "A beats B." and row["source"] == "§0"
    with pytest.raises(DmlReproError, match="duplicate claim id 'c'"):
        evaluate_claims([spec, spec], t)
    with pytest.raises(DmlReproError, match="lacks column"):
        evaluate_claims([spec], t.drop(columns=["study"]))
    with pytest.raises(DmlReproError, match="direction"):
        claim(Rows("a", "x"), Rows("b", "x"), direction="up")
    with pytest.raises(DmlReproError, match="a setting needs a study"):
        Rows("a", "x", setting=7.0)
    with pytest.raises(DmlReproError, match="each dataset"):
        claim(Rows("a", None, "c_grid"), Rows("b", "x", "c_grid"))


def _metric(path: Path, **rec) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    base = {"recall_at": {"5": 10.0, "15": 20.0}, "precision_at_1": 90.0, "map_at_r": 50.0, "data_source": "test"}
    path.write_text(json.dumps({**base, **rec}))
    return path


def test_results_frame_write_claims_and_command_line(tmp_path):
    r = tmp_path / "results"
    runs = [_metric(r / f"bbcsport/split{s}/{m}/metrics.json", dataset="bbcsport", method=m, split=s, knn_accuracy=acc)
            for m, accs in (("wsset", (96.0, 97.0)), ("wmd_knn", (90.0, 91.0))) for s, acc in enumerate(accs)]
    # a study point's setting comes with the run (the workflow's manifest), whatever its directory is called
    study = [{"point": "few", "setting": 10, "metrics": str(_metric(r / f"twitter/few/split0/{m}/metrics.json",
                                                                     dataset="twitter", method=m, split=0, knn_accuracy=a))}
             for m, a in (("ours_int", 70.0), ("selfattn_tl", 60.0))]
    frame = results_frame(runs, {"small_data": study, "c_grid": []})
    assert list(frame.columns) == list(RESULT_COLUMNS) and len(frame) == 4 * 3 + 2 * 3
    assert set(frame.loc[frame["study"] == "small_data", "setting"]) == {10.0}
    assert frame.loc[(frame["method"] == "wsset") & (frame["metric"] == "R@15"), "value"].tolist() == [20.0, 20.0]

    out_csv, out_md = tmp_path / "t" / "claims.csv", tmp_path / "t" / "claims.md"
    from dmlrepro.cli import main
    assert main(["claims", "--metrics", *map(str, runs), "--small-data-runs", json.dumps(study), "--csv-out", str(out_csv),
                 "--md-out", str(out_md)]) == 0
    claims = pd.read_csv(out_csv)
    row = claims[claims["id"] == "T1-ours>wmd-bbcsport"].iloc[0]
    assert row["verdict"] == HOLDS and row["A mean ± std"] == "96.50 ± 0.71" and row["A"] == "Ours (WSSET), BBCSport"
    assert claims.loc[claims["id"] == "F4-ours_int>selfattn_tl-twitter", "verdict"].tolist() == [HOLDS]
    md = out_md.read_text()
    assert md.startswith("# Claims") and "| T1-ours>wmd-bbcsport " in md and "a_mean" not in md
    assert "## Not run" in md and "- T1-ours>exemplar-bbcsport: Ours (WSSET), BBCSport vs Exemplar, BBCSport" in md
    # R@5 and R@15 are equal for both methods: undecided
    assert re.search(r"2 holds, 0 does not hold, 2 undecided \(±1 std overlap\), \d+ not run", md)
    # bad input: one line naming the file, exit 2
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert main(["claims", "--metrics", str(bad), "--csv-out", str(out_csv), "--md-out", str(out_md)]) == 2
    no_setting = json.dumps([{"point": "few", "metrics": study[0]["metrics"]}])
    assert main(["claims", "--small-data-runs", no_setting, "--csv-out", str(out_csv), "--md-out", str(out_md)]) == 2


def test_write_claims_without_any_run(tmp_path):
    res = evaluate_claims([claim(Rows("a", "x"), Rows("b", "x"))], table([]))
    write_claims(res, tmp_path / "c.csv", tmp_path / "c.md")
    md = (tmp_path / "c.md").read_text()
    assert "0 holds" in md and "1 not run" in md and "- c: a, x vs b, x (knn_accuracy)" in md


# ----------------------------------------------------------------------------- WSSET's claims

def _normalise(text: str) -> str:
    text = re.sub(r"\s*\[\d+\]", "", text)  # citations
    text = re.sub(r"[${}]", "", text)  # $BERT_{BASE}$
    return re.sub(r"\s+", " ", text)


def test_wsset_claims_are_well_formed():
    from dmlrepro.papers.wsset.paper_values import DATASETS, METHODS, PAPER_RECALL_KS
    from dmlrepro.papers.wsset.claims import CLAIMS
    assert len({c.id for c in CLAIMS}) == len(CLAIMS) > 50
    for c in CLAIMS:
        for side in (c.a, c.b):
            assert side.method in METHODS and (side.dataset is None or side.dataset in DATASETS), c.id
        if c.metric.startswith("R@") and c.metric != "R@*":
            assert int(c.metric[2:]) in PAPER_RECALL_KS[c.a.dataset], c.id
    ids = {c.id for c in CLAIMS}
    assert {"T1-ours>wmd-bbcsport", "T1-ours>approx_emd-bbcsport", "T1-ours_int>selfattn_tl-bbcsport",
            "T1-ours_ext>ours_int-amazon", "F6-c7to13>higher-c"} <= ids


def test_wsset_claims_agree_with_the_papers_own_tables():
    """Each Table I/II claim holds on the paper's published numbers (a transcription check)."""
    from dmlrepro.papers.wsset.paper_values import PAPER_TABLE1, PAPER_TABLE2
    from dmlrepro.papers.wsset.claims import CLAIMS
    for c in CLAIMS:
        if c.reads == "Table I":
            a, b = PAPER_TABLE1[c.a.method][c.a.dataset], PAPER_TABLE1[c.b.method][c.b.dataset]
            assert a is not None and b is not None and a > b, (c.id, a, b)
        elif c.reads == "Table II":
            a_block, b_block = PAPER_TABLE2[c.a.method][c.a.dataset], PAPER_TABLE2[c.b.method][c.b.dataset]
            ks = sorted(a_block) if c.metric == "R@*" else [int(c.metric[2:])]
            assert all(a_block[k] > b_block[k] for k in ks), c.id


@pytest.mark.skipif(not PAPER.is_file(), reason="the WSSET paper's text is not available")
def test_wsset_claim_texts_are_quotes_from_the_paper():
    from dmlrepro.papers.wsset.claims import CLAIMS, QUERY_TIME_CLAIM
    paper = _normalise(PAPER.read_text(encoding="utf-8"))
    for text in {c.text for c in CLAIMS} | {QUERY_TIME_CLAIM}:
        for piece in text.split(" ... "):
            assert _normalise(piece).rstrip(".") in paper, piece


def test_figure_captions_come_from_the_claims_list():
    from dmlrepro.papers.wsset.study_figures import PAPER_CLAIMS
    from dmlrepro.papers.wsset.claims import CLAIMS, QUERY_TIME_CLAIM
    fig4 = [c.text for c in CLAIMS if c.reads == "Fig. 4"]
    assert all(t in PAPER_CLAIMS["small_data"] for t in fig4)
    assert QUERY_TIME_CLAIM in PAPER_CLAIMS["query_time"] and "905.9" in PAPER_CLAIMS["query_time"]
    assert next(c.text for c in CLAIMS if c.reads == "Fig. 6") in PAPER_CLAIMS["c_grid"]


def test_study_command_reads_each_points_setting_from_its_manifest(tmp_path):
    """Fig. 6's summary and figure: the setting (c) of each run is the manifest's, looked up by the
    workflow from the point's key; the directory names carry nothing."""
    from dmlrepro.cli import main
    runs = [{"point": key, "setting": c, "metrics": str(_metric(tmp_path / f"twitter/{key}/split{s}/wsset/metrics.json",
                                                                dataset="twitter", method="wsset", split=s,
                                                                knn_accuracy=50.0 + s, recall_at={"3": c + s}))}
            for key, c in (("small_c", 7), ("large_c", 30)) for s in range(2)]
    out = tmp_path / "fig6.csv"
    assert main(["study", "--kind", "c_grid", "--runs", json.dumps(runs), "--summary-out", str(out),
                 "--figure-out", str(tmp_path / "fig6.png")]) == 0
    summary = pd.read_csv(out)
    r3 = summary[summary["metric"] == "R@3"].set_index("setting")
    assert r3.loc[7.0, "mean"] == 7.5 and r3.loc[30.0, "mean"] == 30.5 and set(r3["n_splits"]) == {2}
    assert (tmp_path / "fig6.png").stat().st_size > 1000
    assert main(["study", "--kind", "c_grid", "--runs", '{"not": "a list"}', "--summary-out", str(out),
                 "--figure-out", str(tmp_path / "fig6.png")]) == 2
