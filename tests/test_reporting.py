"""Paper values, tables from synthetic metric records, figures and the HTML report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from conftest import PAPERS_DIR, markdown_rows


from dmlrepro import DmlReproError
from dmlrepro.papers.wsset.paper_values import (
    DATASETS,
    METHOD_ORDER,
    METHODS,
    PAPER_RECALL_KS,
    PAPER_TABLE1,
    PAPER_TABLE1_PRINTED,
    PAPER_TABLE2,
    PAPER_TABLE2_PRINTED,
    paper_knn_accuracy,
    paper_recall,
    paper_row_label,
)
from dmlrepro.papers.wsset.tables import build_dml_table, build_table1, build_table2, paper_value_notes
from dmlrepro.reporting.tables import load_records, write_table

TARGETS = PAPERS_DIR / "TARGETS.md"

# ----------------------------------------------------------------------------- paper values


def test_paper_values_spot_checks():
    assert PAPER_TABLE1["wmd_knn"]["bbcsport"] == 95.0
    assert PAPER_TABLE1_PRINTED["wmd_knn"]["bbcsport"] == "95.0"
    assert PAPER_TABLE1["wsset"] == {"bbcsport": 96.36, "recipe": 51.87, "amazon": 92.17, "twitter": 70.71}
    assert PAPER_TABLE1["bert_base"]["recipe"] is None
    assert PAPER_TABLE1["ours_ext"]["recipe"] == 63.31 and PAPER_TABLE1["ours_ext"]["twitter"] == 78.11
    assert set(METHODS["ours_ext"].uncertain_table1) == {"recipe", "twitter"} and "OCR" in METHODS["ours_ext"].note
    assert all(v is None for v in PAPER_TABLE1["dspn_tl"].values())
    assert all(v is None for v in PAPER_TABLE1["sset"].values()) and PAPER_TABLE2["sset"] == {}
    assert PAPER_RECALL_KS == {
        "bbcsport": [5, 15, 30, 45], "recipe": [25, 50, 100, 200],
        "amazon": [50, 100, 300, 500], "twitter": [50, 100, 200, 300],
    }
    assert PAPER_TABLE2["dspn_tl"]["twitter"] == {50: 5.44, 100: 10.95, 200: 21.93, 300: 32.94}
    assert "recipe" not in PAPER_TABLE2["bert_base"]
    assert paper_recall("ours_ext", "amazon", 500) == 78.65
    assert paper_recall("udml_ss", "amazon", 500) is None
    assert paper_knn_accuracy("repset", "recipe", printed=True) == "61.43"
    # Table II has 9/8/9/9 rows for BBCSport/Recipe/Amazon/Twitter
    assert [sum(ds in PAPER_TABLE2[m] for m in METHOD_ORDER) for ds in DATASETS] == [9, 8, 9, 9]
    assert [m for m in METHOD_ORDER if PAPER_TABLE1_PRINTED[m]["bbcsport"]] == [
        "wmd_knn", "exemplar", "udml_ss", "approx_emd", "wsset", "deepsets_ce", "deepsets_tl",
        "selfattn_ce", "selfattn_tl", "repset", "dspn_ce", "ours_int", "bert_base", "ours_ext",
    ]
    assert paper_row_label("wsset") == "Ours (WSSET)" and paper_row_label("wmd_knn") == "WMD"
    assert paper_row_label("new_ablation") == "new_ablation"
    assert (METHODS["bert_base"].sup, METHODS["bert_base"].ext) == (True, True)
    assert (METHODS["wsset"].sup, METHODS["wsset"].ext) == (False, False)
    assert (METHODS["ours_int"].sup, METHODS["ours_int"].ext) == (True, False)



@pytest.mark.skipif(not TARGETS.is_file(), reason="TARGETS.md not available")
def test_paper_values_equal_targets_md():
    """Every transcribed value equals the printed one in TARGETS.md (PAPER 000, §1)."""
    text = TARGETS.read_text(encoding="utf-8")
    sec = text.split("### 000-§1 Tables", 1)[1].split("### 000-§1b", 1)[0]
    t1, t2 = sec.split("**TABLE II", 1)
    label_to_key = {m.label: m.key for m in METHODS.values()}
    label_to_key["Ours"] = "wsset"
    flag = {"✓": True, "✗": False}
    rows1 = markdown_rows(t1)
    assert len(rows1) == 14
    for label, cells in rows1.items():
        key = label_to_key[label]
        assert (flag[cells[0]], flag[cells[1]]) == (METHODS[key].sup, METHODS[key].ext), label
        printed = [c.replace("[?]", "").strip() for c in cells[2:]]
        ours = [PAPER_TABLE1_PRINTED[key][ds] or "–" for ds in DATASETS]
        assert printed == ours, label
    blocks = re.split(r"\n(BBCSports:|Recipe \(no BERT row\):|Amazon:|Twitter:)\n", t2)
    names = {"BBCSports:": "bbcsport", "Recipe (no BERT row):": "recipe", "Amazon:": "amazon", "Twitter:": "twitter"}
    seen = 0
    for name, block in zip(blocks[1::2], blocks[2::2]):
        ds = names[name]
        rows = markdown_rows(block)
        assert set(label_to_key[lbl] for lbl in rows) == {m for m in METHOD_ORDER if ds in PAPER_TABLE2_PRINTED[m]}
        for label, cells in rows.items():
            key = label_to_key[label]
            assert cells[2:] == [PAPER_TABLE2_PRINTED[key][ds][k] for k in PAPER_RECALL_KS[ds]], (ds, label)
            seen += 1
    assert seen == 35


# ----------------------------------------------------------------------------- synthetic records


def _rec(method, dataset, split, knn, recall=None, p1=50.0, mapr=20.0, source="synthetic"):
    ks = PAPER_RECALL_KS.get(dataset, [1, 2, 3, 4])
    return {
        "dataset": dataset, "method": method, "split": split, "knn_accuracy": knn,
        "recall_at": {str(k): v for k, v in zip(ks, recall or [1.0, 2.0, 3.0, 4.0])},
        "precision_at_1": p1, "map_at_r": mapr, "data_source": source,
    }


@pytest.fixture()
def records():
    recs = []
    # sset first on purpose: it must still be listed after the paper's methods
    for s, v in enumerate([90.0, 92.0, 94.0]):
        recs.append(_rec("sset", "bbcsport", s, v))
    for s, v in enumerate([70.0, 71.0, 72.5]):
        recs.append(_rec("sset", "twitter", s, v - 1))
    bbc_recall = [[9.0, 25.0, 45.0, 58.0], [9.2, 26.0, 46.0, 59.0], [9.4, 27.0, 47.0, 60.0]]
    for s, v in enumerate([95.0, 96.0, 97.0]):
        recs.append(_rec("wsset", "bbcsport", s, v, recall=bbc_recall[s], p1=[90.0, 91.0, 95.0][s], mapr=[40.0, 42.0, 44.0][s]))
    for s, v in enumerate([70.0, 71.0, 72.5]):
        recs.append(_rec("wsset", "twitter", s, v, source="kusner-mat"))
    for s in range(3):
        recs.append(_rec("wmd_knn", "bbcsport", s, 95.0))
    return recs


def test_table1_hand_checked(records):
    t = build_table1(records)
    assert list(t.columns) == ["Method", "Sup", "Ext", "Dataset", "Ours", "ours_mean", "ours_std", "n_splits", "Paper", "Δ", "Data"]
    assert list(zip(t["Method"], t["Dataset"])) == [
        ("WMD", "BBCSport"),
        ("Ours (WSSET)", "BBCSport"), ("Ours (WSSET)", "Twitter"),
        ("SSET (WSSET, w=1)", "BBCSport"), ("SSET (WSSET, w=1)", "Twitter"),
    ]
    r = t.set_index(["Method", "Dataset"])
    # WMD: 95, 95, 95 -> 95.00 ± 0.00; paper printed "95.0"; diff +0.00
    assert r.loc[("WMD", "BBCSport"), "Ours"] == "95.00 ± 0.00"
    assert r.loc[("WMD", "BBCSport"), "Paper"] == "95.0"
    assert r.loc[("WMD", "BBCSport"), "Δ"] == "+0.00"
    # wsset bbcsport: 95, 96, 97 -> mean 96, sample std 1; paper 96.36 -> -0.36
    row = r.loc[("Ours (WSSET)", "BBCSport")]
    assert (row["Ours"], row["Paper"], row["Δ"], row["n_splits"]) == ("96.00 ± 1.00", "96.36", "-0.36", 3)
    assert row["ours_mean"] == pytest.approx(96.0) and row["ours_std"] == pytest.approx(1.0)
    assert (row["Sup"], row["Ext"]) == ("✗", "✗")
    # wsset twitter: 70, 71, 72.5 -> mean 71.1667; squared deviations 1.3611+0.0278+1.7778=3.1667,
    # /2 = 1.5833, sqrt = 1.2583; paper 70.71 -> +0.4567
    row = r.loc[("Ours (WSSET)", "Twitter")]
    assert (row["Ours"], row["Paper"], row["Δ"], row["Data"]) == ("71.17 ± 1.26", "70.71", "+0.46", "kusner-mat")
    # sset: no paper value
    row = r.loc[("SSET (WSSET, w=1)", "BBCSport")]
    assert (row["Ours"], row["Paper"], row["Δ"]) == ("92.00 ± 2.00", "–", "–")
    assert r.loc[("SSET (WSSET, w=1)", "Twitter"), "Ours"] == "70.17 ± 1.26"


def test_table1_single_split_and_uncertain_paper_value():
    t = build_table1([_rec("ours_ext", "recipe", 0, 60.0), _rec("ours_ext", "recipe_small", 0, 10.0)])
    row = t.iloc[0]
    assert (row["Ours"], row["Paper"], row["Δ"]) == ("60.00 ± n/a", "63.31 [?]", "-3.31")
    assert pd.isna(row["ours_std"])
    assert (t.iloc[1]["Dataset"], t.iloc[1]["Paper"]) == ("recipe_small", "–")
    t2 = build_table2([_rec("ours_ext", "recipe_small", 0, 10.0)])  # not a paper dataset: its own Ks
    assert list(t2["K"]) == [1, 2, 3, 4] and list(t2["Ours"]) == ["1.00 ± n/a", "2.00 ± n/a", "3.00 ± n/a", "4.00 ± n/a"]


def test_table1_include_missing_paper_rows(records):
    t = build_table1(records, include_missing_paper_rows=True)
    assert len(t) == 5 + (14 * 4 - 1) - 3  # all printed cells (BERT has no Recipe) minus 3 that we ran
    assert t.iloc[0]["Method"] == "WMD" and t.iloc[0]["Dataset"] == "BBCSport" and t.iloc[0]["n_splits"] == 3
    assert t.iloc[1]["Method"] == "WMD" and t.iloc[1]["Ours"] == "not run" and t.iloc[1]["Paper"] == "58.42"
    assert list(t["Method"])[-2:] == ["SSET (WSSET, w=1)"] * 2


def test_table2_hand_checked(records):
    t = build_table2(records)
    assert "K" in t.columns
    assert len(t) == 5 * 4
    wb = t[(t["Method"] == "Ours (WSSET)") & (t["Dataset"] == "BBCSport")].set_index("K")
    assert list(wb.index) == [5, 15, 30, 45]
    # K=5: 9.0, 9.2, 9.4 -> 9.20 ± 0.20, paper 9.10 -> +0.10
    assert (wb.loc[5, "Ours"], wb.loc[5, "Paper"], wb.loc[5, "Δ"]) == ("9.20 ± 0.20", "9.10", "+0.10")
    # K=45: 58, 59, 60 -> 59.00 ± 1.00, paper 58.97 -> +0.03
    assert (wb.loc[45, "Ours"], wb.loc[45, "Paper"], wb.loc[45, "Δ"]) == ("59.00 ± 1.00", "58.97", "+0.03")
    tw = t[(t["Method"] == "Ours (WSSET)") & (t["Dataset"] == "Twitter")]
    assert list(tw["K"]) == [50, 100, 200, 300] and list(tw["Paper"]) == ["5.78", "11.35", "22.00", "32.58"]
    assert (tw.iloc[0]["Ours"], tw.iloc[0]["Δ"]) == ("1.00 ± 0.00", "-4.78")
    assert set(t[t["Method"].str.startswith("SSET")]["Paper"]) == {"–"}


def test_table2_k_measured_by_some_splits_only_names_the_file(tmp_path):
    paths = []
    for split in (0, 1):
        rec = _rec("wsset", "amazon", split, 90.0)
        if split == 1:
            del rec["recall_at"]["300"]
        paths.append(tmp_path / f"amazon_wsset_{split}.json")
        paths[-1].write_text(json.dumps(rec))
    with pytest.raises(DmlReproError, match=r"amazon_wsset_1\.json.*recall_at.*K=300"):
        build_table2(paths)


def test_table2_shows_unmeasured_paper_k_and_extra_k():
    rec = _rec("wsset", "amazon", 0, 90.0)
    del rec["recall_at"]["300"]
    rec["recall_at"]["7"] = 1.5
    t = build_table2([rec]).set_index("K")
    assert (t.loc[300, "Ours"], t.loc[300, "Paper"], t.loc[300, "Δ"]) == ("–", "35.95", "–")
    assert (t.loc[7, "Ours"], t.loc[7, "Paper"]) == ("1.50 ± n/a", "–")


def test_dml_table(records):
    t = build_dml_table(records)
    row = t[(t["Method"] == "Ours (WSSET)") & (t["Dataset"] == "BBCSport")].iloc[0]
    # P@1 90, 91, 95 -> mean 92, deviations -2,-1,3 -> var (4+1+9)/2 = 7 -> std 2.6458
    assert row["R@1"] == "92.00 ± 2.65"
    assert row["MAP@R"] == "42.00 ± 2.00"
    assert "Paper" not in t.columns


def test_record_validation_and_loading(tmp_path, records):
    paths = []
    for i, r in enumerate(records):
        p = tmp_path / f"m{i}.json"
        p.write_text(json.dumps(r))
        paths.append(p)
    loaded = load_records(paths)
    assert loaded[0]["_source"] == str(paths[0])
    pd.testing.assert_frame_equal(build_table1(paths), build_table1(records))
    bad = dict(records[0])
    del bad["map_at_r"]
    with pytest.raises(DmlReproError, match="lacks key 'map_at_r'"):
        build_table1([bad])
    bad = dict(records[0], split="0")
    with pytest.raises(DmlReproError, match=r"key 'split' has value '0'"):
        build_table1([bad])
    with pytest.raises(DmlReproError, match=r"duplicate metric record .*m0\.json and .*m0\.json"):
        build_table1([paths[0], paths[0]])
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(DmlReproError, match="broken.json: not valid JSON"):
        load_records([tmp_path / "broken.json"])


def test_write_table(tmp_path, records):
    t = build_table1(records)
    notes = ["Split 0-2 of Kusner's .mat files.", *paper_value_notes()]
    write_table(t, tmp_path / "t1.csv", tmp_path / "t1.md", "Table I: kNN accuracy", notes)
    back = pd.read_csv(tmp_path / "t1.csv", keep_default_na=False, dtype=str)
    assert list(back.columns) == list(t.columns) and len(back) == len(t)
    assert back.iloc[0]["Paper"] == "95.0"
    md = (tmp_path / "t1.md").read_text(encoding="utf-8")
    assert md.startswith("# Table I: kNN accuracy\n")
    assert "| WMD " in md and "95.0 " in md and "96.00 ± 1.00" in md and "ours_mean" not in md
    assert "## Notes" in md and "- Split 0-2 of Kusner's .mat files." in md and "OCR" in md
    assert not list(tmp_path.glob(".t1*"))  # no temporary files left


# ----------------------------------------------------------------------------- figures and report


def _is_png(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 1000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figures_and_html_report(tmp_path, records):
    from dmlrepro.papers.wsset.figures import plot_paper_comparison, plot_recall_curves
    from dmlrepro.reporting.figures import plot_training_curve
    from dmlrepro.reporting.report import write_html_report

    hist = tmp_path / "history.csv"
    hist.write_text(
        "epoch,loss,val_accuracy,n_triplets,seconds\n"
        "1,0.50,,64,1.0\n2,0.40,80.0,64,1.0\n3,0.35,,60,1.0\n4,0.30,85.5,58,1.0\n5,0.29,85.5,58,1.0\n6,0.28,84.0,57,1.0\n"
    )
    res = plot_training_curve(hist, tmp_path / "fig" / "curve.png", "WSSET bbcsport split 0")
    assert res["best_epoch"] == 4 and res["best_val_accuracy"] == 85.5
    assert _is_png(tmp_path / "fig" / "curve.png") and (tmp_path / "fig" / "curve.pdf").stat().st_size > 0

    t1, t2 = build_table1(records, include_missing_paper_rows=True), build_table2(records)
    plot_paper_comparison(t1, tmp_path / "fig" / "bars.png")
    plot_recall_curves(t2, tmp_path / "fig" / "recall.png")
    assert _is_png(tmp_path / "fig" / "bars.png") and _is_png(tmp_path / "fig" / "recall.png")
    with pytest.raises(DmlReproError, match="lacks column"):
        plot_paper_comparison(t1.drop(columns=["Paper"]), tmp_path / "x.png")

    write_table(t1, tmp_path / "t1.csv", tmp_path / "t1.md", "Table I", ["a <note> & more"])
    out = write_html_report(
        tmp_path / "report.html",
        tables=[("Table I", tmp_path / "t1.md"), ("DML metrics", build_dml_table(records))],
        figures=[("Recall curves", tmp_path / "fig" / "recall.png", "solid = ours, dashed = paper")],
        notes=["WMD uses <exact> EMD"],
    )
    html = out.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    assert "<table>" in html and "<td>96.00 ± 1.00</td>" in html and "<td>95.0</td>" in html
    assert "92.00 ± 2.65" in html  # DataFrame table
    assert "ours_mean" not in html and "r_at_1_mean" not in html
    assert "data:image/png;base64," in html and "solid = ours, dashed = paper" in html
    assert "a &lt;note&gt; &amp; more" in html and "WMD uses &lt;exact&gt; EMD" in html
    with pytest.raises(DmlReproError, match="PNG not found"):
        write_html_report(tmp_path / "r2.html", [], [("x", tmp_path / "missing.png", "")], [])


def test_html_report_opens_with_the_claims_section(tmp_path, records):
    from dmlrepro.papers.wsset.report import results_frame
    from dmlrepro.reporting.claims import ClaimSpec, Rows, evaluate_claims, write_claims
    from dmlrepro.reporting.report import write_html_report

    paths = []
    for i, rec in enumerate(records):
        paths.append(tmp_path / f"m{i}.json")
        paths[-1].write_text(json.dumps(rec))
    specs = [ClaimSpec("ours>wmd", "Ours beats WMD.", "§VI-B", "Table I", "knn_accuracy",
                       Rows("wsset", "bbcsport"), Rows("wmd_knn", "bbcsport"))]
    claims = evaluate_claims(specs, results_frame(paths))
    write_claims(claims, tmp_path / "claims.csv", tmp_path / "claims.md")
    write_table(build_table1(records), tmp_path / "table1.csv", tmp_path / "table1.md", "Table I: kNN accuracy")
    # as the CLI calls it: each section titled by its file name
    html = write_html_report(tmp_path / "r.html", [("claims", tmp_path / "claims.md"),
                                                   ("table1", tmp_path / "table1.md")], []).read_text()
    headings = re.findall(r"<h2>(.*?)</h2>", html)
    assert headings == ["Claims", "Table I: kNN accuracy"]
    assert "Ours beats WMD." in html and claims["verdict"].iloc[0] in html
