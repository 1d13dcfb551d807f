# One HTML report of every configured paper: the tables and figures a paper lists in REPORT (WSSET's,
# under their own names, claims first), then each paper's PAPER_TARGETS.


rule html_report:
    input:
        tables=lambda w: REPORT["tables"],
        figures=lambda w: REPORT["figures"],
        curves=lambda w: REPORT["curves"],
        papers=lambda w: PAPER_TARGETS,
    output:
        report("results/report.html", category="Report", caption="../report/html.rst"),
    params:
        cli=DMLREPRO,
    log:
        "logs/report/html.log",
    conda:
        "../envs/report.yaml"
    shell:
        "{params.cli} report --tables {input.tables} --figures {input.figures} {input.curves}"
        " --paper-outputs {input.papers} --out {output} > {log} 2>&1"
