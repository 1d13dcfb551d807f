# WSSET (papers.wsset): per dataset the pointsets and splits, the exact all-pairs WMD, one run per
# Table I/II row x split (transfer stages and Ours+Ext.'s external base included), the WMD kNN
# baseline, the figure studies (Figs. 4 to 6, the training budget), the optional validation search,
# then Tables I/II, the claims and the figures. Outputs under results/wsset/ (wsset_common.smk).

include: "wsset_common.smk"


wildcard_constraints:
    dataset="|".join(WSSET_DATASETS + WSSET_CORPORA),
    method="[a-z_]+",
    split=r"\d+",
    shard=r"\d+",


include: "wsset/data.smk"
include: "wsset/ot.smk"
include: "wsset/train.smk"
include: "wsset/evaluate.smk"
include: "wsset/report.smk"
include: "wsset/tuning.smk"


# claims first: the report opens with the paper's claims and their verdicts
REPORT["tables"] += [
    "results/wsset/tables/claims.md",
    "results/wsset/tables/table1.md",
    "results/wsset/tables/table2.md",
    "results/wsset/tables/dml_metrics.md",
] + (["results/wsset/tables/budget_claims.md"] if "budget" in WSSET_STUDIES else [])
REPORT["figures"] += ["results/wsset/figures/table1_vs_paper.png", "results/wsset/figures/recall_at_k.png"] + study_figures()
REPORT["curves"] += all_curves()
TARGETS += ["results/wsset/tables/table1.md", "results/wsset/tables/table2.md"]
TARGETS += ["results/wsset/tables/tuning.md"] if WSSET_TUNING.get("methods") else []
