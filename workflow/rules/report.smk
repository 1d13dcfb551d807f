# Stage 5: Tables I/II next to the paper's numbers, figures, and one HTML report.


rule tables:
    input:
        all_metrics,
    output:
        table1=report("results/tables/table1.csv", category="Tables", caption="../report/table1.rst"),
        table1_md="results/tables/table1.md",
        table2=report("results/tables/table2.csv", category="Tables", caption="../report/table2.rst"),
        table2_md="results/tables/table2.md",
        dml=report("results/tables/dml_metrics.csv", category="Tables", caption="../report/dml.rst"),
        dml_md="results/tables/dml_metrics.md",
    params:
        cli=DMLREPRO,
        cfg=json.dumps({k: config[k] for k in ("model", "train")}, sort_keys=True),
        out_dir=subpath(output.table1, parent=True),
    log:
        "logs/report/tables.log",
    conda:
        "../envs/report.yaml"
    shell:
        "{params.cli} tables --metrics {input} --out-dir {params.out_dir} --config {params.cfg:q} > {log} 2>&1"


rule training_curve:
    input:
        "results/{dataset}/split{split}/{method}/history.csv",
    output:
        report("results/figures/curves/{dataset}_{method}_split{split}.png", category="Training curves",
               subcategory="{dataset}", caption="../report/curve.rst"),
    params:
        cli=DMLREPRO,
    log:
        "logs/report/curve_{dataset}_{method}_split{split}.log",
    conda:
        "../envs/report.yaml"
    shell:
        "{params.cli} figures --history {input} --out {output} --title '{wildcards.dataset} {wildcards.method} split {wildcards.split}'"
        " > {log} 2>&1"


rule comparison_figures:
    input:
        table1="results/tables/table1.csv",
        table2="results/tables/table2.csv",
    output:
        comparison=report("results/figures/table1_vs_paper.png", category="Figures", caption="../report/comparison.rst"),
        recall=report("results/figures/recall_at_k.png", category="Figures", caption="../report/recall.rst"),
    params:
        cli=DMLREPRO,
    log:
        "logs/report/comparison.log",
    conda:
        "../envs/report.yaml"
    shell:
        "{params.cli} figures --table1 {input.table1} --table2 {input.table2}"
        " --comparison-out {output.comparison} --recall-out {output.recall} > {log} 2>&1"


rule html_report:
    input:
        tables=["results/tables/table1.md", "results/tables/table2.md", "results/tables/dml_metrics.md"],
        figures=["results/figures/table1_vs_paper.png", "results/figures/recall_at_k.png"],
        curves=all_curves,
    output:
        report("results/report.html", category="Report", caption="../report/html.rst"),
    params:
        cli=DMLREPRO,
    log:
        "logs/report/html.log",
    conda:
        "../envs/report.yaml"
    shell:
        "{params.cli} report --tables {input.tables} --figures {input.figures} {input.curves} --out {output} > {log} 2>&1"
