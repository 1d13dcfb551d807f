# WSSET's stage 5: Tables I/II next to the paper's numbers, the claims, figures (the HTML report is shared).


rule tables:
    input:
        all_metrics,
    output:
        table1=report("results/wsset/tables/table1.csv", category="Tables", caption="../../../report/table1.rst"),
        table1_md="results/wsset/tables/table1.md",
        table2=report("results/wsset/tables/table2.csv", category="Tables", caption="../../../report/table2.rst"),
        table2_md="results/wsset/tables/table2.md",
        dml=report("results/wsset/tables/dml_metrics.csv", category="Tables", caption="../../../report/dml.rst"),
        dml_md="results/wsset/tables/dml_metrics.md",
    params:
        cli=DMLREPRO,
        cfg=json.dumps({k: WSSET[k] for k in ("model", "train")}
                       | ({"schedules": schedule_overrides()} if schedule_overrides() else {}), sort_keys=True),
        out_dir=subpath(output.table1, parent=True),
    log:
        "logs/report/tables.log",
    conda:
        "../../../envs/report.yaml"
    shell:
        "{params.cli} tables --metrics {input} --out-dir {params.out_dir} --config {params.cfg:q} > {log} 2>&1"


rule claims:
    # the paper's claims (dmlrepro/papers/wsset/claims.py) checked on the per-split results
    input:
        tables=all_metrics,
        small_data=study_metrics("small_data"),
        c_grid=study_metrics("c_grid"),
    output:
        csv=report("results/wsset/tables/claims.csv", category="Tables", caption="../../../report/claims.rst"),
        md="results/wsset/tables/claims.md",
    params:
        cli=DMLREPRO,
        small_data=study_manifest("small_data"),
        c_grid=study_manifest("c_grid"),
    log:
        "logs/report/claims.log",
    conda:
        "../../../envs/report.yaml"
    shell:
        "{params.cli} claims --metrics {input.tables} --small-data-runs {params.small_data:q}"
        " --c-grid-runs {params.c_grid:q} --csv-out {output.csv} --md-out {output.md} > {log} 2>&1"


rule training_curves:
    # one job for all runs: each curve is a second of plotting, but a job costs an interpreter start
    input:
        [f"{run}/history.csv" for run in learned_run_dirs()],
    output:
        [report(path, category="Training curves", caption="../../../report/curve.rst") for path in all_curves()],
    params:
        cli=DMLREPRO,
    log:
        "logs/report/training_curves.log",
    conda:
        "../../../envs/report.yaml"
    shell:
        "{params.cli} figures --history {input} --out {output} > {log} 2>&1"


rule comparison_figures:
    input:
        table1="results/wsset/tables/table1.csv",
        table2="results/wsset/tables/table2.csv",
    output:
        comparison=report("results/wsset/figures/table1_vs_paper.png", category="Figures", caption="../../../report/comparison.rst"),
        recall=report("results/wsset/figures/recall_at_k.png", category="Figures", caption="../../../report/recall.rst"),
    params:
        cli=DMLREPRO,
    log:
        "logs/report/comparison.log",
    conda:
        "../../../envs/report.yaml"
    shell:
        "{params.cli} figures --table1 {input.table1} --table2 {input.table2}"
        " --comparison-out {output.comparison} --recall-out {output.recall} > {log} 2>&1"


rule small_data_figure:
    input:
        study_metrics("small_data"),
    output:
        summary="results/wsset/tables/fig4_small_data.csv",
        figure=report("results/wsset/figures/fig4_small_data.png", category="Figures", caption="../../../report/small_data.rst"),
    params:
        cli=DMLREPRO,
        kind="small_data",
        runs=study_manifest("small_data"),
    log:
        "logs/report/small_data.log",
    conda:
        "../../../envs/report.yaml"
    shell:
        # the runs' settings by point key (study_manifest), not from their paths
        "{params.cli} study --kind {params.kind} --runs {params.runs:q} --summary-out {output.summary}"
        " --figure-out {output.figure} > {log} 2>&1"


use rule small_data_figure as c_grid_figure with:
    input:
        study_metrics("c_grid"),
    output:
        summary="results/wsset/tables/fig6_c_grid.csv",
        figure=report("results/wsset/figures/fig6_c_grid.png", category="Figures", caption="../../../report/c_grid.rst"),
    params:
        cli=DMLREPRO,
        kind="c_grid",
        runs=study_manifest("c_grid"),
    log:
        "logs/report/c_grid.log",


rule budget_figure:
    # the training-budget study: kNN accuracy against epochs and encoder, WMD kNN line, claims per budget
    input:
        histories=[f"{r.run_dir}/history.csv" for r in budget_runs()],
        metrics=[f"{r.run_dir}/metrics.json" for r in budget_runs()],
        wmd=budget_wmd_metrics(),
    output:
        per_split="results/wsset/tables/budget_per_split.csv",
        summary="results/wsset/tables/budget.csv",
        figure=report("results/wsset/figures/budget.png", category="Figures", caption="../../../report/budget.rst"),
        claims_csv="results/wsset/tables/budget_claims.csv",
        claims_md="results/wsset/tables/budget_claims.md",
    params:
        cli=DMLREPRO,
        runs=budget_manifest,
    log:
        "logs/report/budget.log",
    conda:
        "../../../envs/report.yaml"
    shell:
        "{params.cli} budget --runs {params.runs:q} --wmd {input.wmd}"
        " --per-split-out {output.per_split} --summary-out {output.summary} --figure-out {output.figure}"
        " --claims-csv {output.claims_csv} --claims-md {output.claims_md} > {log} 2>&1"


rule query_time_figure:
    input:
        table=lambda w: f"results/wsset/query_time/{WSSET_STUDIES['query_time']['dataset']}.csv",
        summary=lambda w: f"results/wsset/query_time/{WSSET_STUDIES['query_time']['dataset']}.json",
    output:
        report("results/wsset/figures/fig5_query_time.png", category="Figures", caption="../../../report/query_time.rst"),
    params:
        cli=DMLREPRO,
    log:
        "logs/report/query_time.log",
    conda:
        "../../../envs/report.yaml"
    shell:
        "{params.cli} figures --query-time {input.table} --query-time-summary {input.summary}"
        " --query-time-out {output} > {log} 2>&1"
