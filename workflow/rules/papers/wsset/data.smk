# WSSET's stage 1: raw text (fetched by the shared fetch_raw) -> pointsets + splits per dataset.


rule build_pointsets:
    input:
        raw_inputs,
    output:
        pointsets="results/wsset/{dataset}/pointsets.npz",
        splits="results/wsset/{dataset}/splits.npz",
    params:
        cli=DMLREPRO,
        cfg=lambda w: build_cfg(w.dataset),
    log:
        "logs/{dataset}/pointsets.log",
    benchmark:
        "benchmarks/logs/{dataset}/pointsets.tsv"
    conda:
        "../../../envs/data.yaml"
    shell:
        "{params.cli} pointsets --dataset {wildcards.dataset} --params {params.cfg:q} --raw-root resources/raw"
        " --out-pointsets {output.pointsets} --out-splits {output.splits} > {log} 2>&1"
