# Paper 002, "An Optimal Transport Approach to Deep Metric Learning" (papers.wasserstein): Table 1's
# ten rows and W-triplet + WCRAIG, trained per dataset and seed on per-image point clouds
# (wass-train), Table 1 and the coreset table per dataset, the paper's claims.

include: "wasserstein_common.smk"


wildcard_constraints:
    wass_dataset="|".join(WASSERSTEIN["datasets"]),
    wass_row="|".join(WASSERSTEIN["methods"]),
    seed=r"\d+",


rule wasserstein_split:
    input:
        lambda w: wass_raw(w.wass_dataset),
    output:
        [f"{WASS_ROOT}/{{wass_dataset}}/splits/seed{s}.json" for s in WASS_SEEDS],
    params:
        cli=DMLREPRO,
        protocol=lambda w: json.dumps(wass_cfg(w.wass_dataset)["protocol"], sort_keys=True),
        seeds=" ".join(str(s) for s in WASS_SEEDS),
    log:
        f"logs/{WASS_ROOT}/{{wass_dataset}}/splits.log",
    conda:
        "../../envs/train.yaml"
    shell:
        "{params.cli} image-split --dataset {wildcards.wass_dataset} --raw-root resources/images"
        " --protocol {params.protocol:q} --seeds {params.seeds} --out {output} > {log} 2>&1"


rule wasserstein_pretrain:
    # only where no configured image paper pretrains the same backbone the same way (wass_init)
    input:
        lambda w: wass_raw(wass_cfg(w.wass_dataset)["pretrain"]["dataset"]),
    output:
        f"{WASS_ROOT}/{{wass_dataset}}/pretrained.pt",
    params:
        cli=DMLREPRO,
        source=lambda w: wass_cfg(w.wass_dataset)["pretrain"]["dataset"],
        cfg=lambda w: json.dumps(wass_cfg(w.wass_dataset)["pretrain"], sort_keys=True),
        device=lambda w: wass_device(w.wass_dataset),
    log:
        f"logs/{WASS_ROOT}/{{wass_dataset}}/pretrain.log",
    benchmark:
        f"benchmarks/logs/{WASS_ROOT}/{{wass_dataset}}/pretrain.tsv"
    threads: 1
    resources:
        gpu=lambda w: int(wass_device(w.wass_dataset) != "cpu"),
    conda:
        "../../envs/train.yaml"
    shell:
        "OMP_NUM_THREADS={threads} {params.cli} image-pretrain --dataset {params.source} --raw-root resources/images"
        " --params {params.cfg:q} --device {params.device} --out {output} > {log} 2>&1"


rule wasserstein_train:
    input:
        raw=lambda w: wass_raw(w.wass_dataset),
        split=f"{WASS_ROOT}/{{wass_dataset}}/splits/seed{{seed}}.json",
        init=lambda w: wass_init(w.wass_dataset),
    output:
        metrics=f"{WASS_ROOT}/{{wass_dataset}}/seed{{seed}}/{{wass_row}}/metrics.json",
        history=f"{WASS_ROOT}/{{wass_dataset}}/seed{{seed}}/{{wass_row}}/history.csv",
        model=f"{WASS_ROOT}/{{wass_dataset}}/seed{{seed}}/{{wass_row}}/model.pt",
    wildcard_constraints:
        wass_dataset="|".join(d for d in WASSERSTEIN["datasets"] if d not in WASS_BATCHED) or "no-unbatched-dataset",
    params:
        cli=DMLREPRO,
        argv=lambda w, input: shlex.join(wass_train_argv(w.wass_dataset, w.seed, w.wass_row, input.split, input.init)),
    log:
        f"logs/{WASS_ROOT}/{{wass_dataset}}/seed{{seed}}/{{wass_row}}.log",
    benchmark:
        f"benchmarks/logs/{WASS_ROOT}/{{wass_dataset}}/seed{{seed}}/{{wass_row}}.tsv"
    threads: lambda w: wass_resource(w.wass_dataset, "cpus", 1)
    resources:
        gpu=lambda w: int(wass_device(w.wass_dataset) != "cpu"),
        mem_mb=lambda w: wass_resource(w.wass_dataset, "mem_mb", 8000),
        runtime=lambda w: wass_resource(w.wass_dataset, "runtime", 240),
    conda:
        "../../envs/train.yaml"
    shell:
        "OMP_NUM_THREADS={threads} {params.cli} {params.argv} > {log} 2>&1"


# batch_rows: every row of one seed in one job (one interpreter start; each run keeps its own log)
rule wasserstein_train_seed:
    input:
        raw=lambda w: wass_raw(w.wass_dataset),
        split=f"{WASS_ROOT}/{{wass_dataset}}/splits/seed{{seed}}.json",
        init=lambda w: wass_init(w.wass_dataset),
    output:
        metrics=[f"{WASS_ROOT}/{{wass_dataset}}/seed{{seed}}/{row}/metrics.json" for row in WASS_ROWS],
        history=[f"{WASS_ROOT}/{{wass_dataset}}/seed{{seed}}/{row}/history.csv" for row in WASS_ROWS],
        model=[f"{WASS_ROOT}/{{wass_dataset}}/seed{{seed}}/{row}/model.pt" for row in WASS_ROWS],
    wildcard_constraints:
        wass_dataset="|".join(WASS_BATCHED) or "no-batched-dataset",
    params:
        cli=DMLREPRO,
        jobs=lambda w, input: image_batch_jobs(wass_train_argv(w.wass_dataset, w.seed, row, input.split, input.init) for row in WASS_ROWS),
    log:
        f"logs/{WASS_ROOT}/{{wass_dataset}}/seed{{seed}}/batch.log",
    benchmark:
        f"benchmarks/logs/{WASS_ROOT}/{{wass_dataset}}/seed{{seed}}/batch.tsv"
    threads: lambda w: wass_resource(w.wass_dataset, "cpus", 1)
    resources:
        gpu=lambda w: int(wass_device(w.wass_dataset) != "cpu"),
        mem_mb=lambda w: wass_resource(w.wass_dataset, "mem_mb", 8000),
        runtime=lambda w: len(WASS_ROWS) * wass_resource(w.wass_dataset, "runtime", 240),
    conda:
        "../../envs/train.yaml"
    shell:
        "OMP_NUM_THREADS={threads} {params.cli} batch --jobs {params.jobs:q} > {log} 2>&1"


rule wasserstein_table:
    input:
        lambda w: wass_metrics(w.wass_dataset),
    output:
        md=f"{WASS_ROOT}/tables/table1_{{wass_dataset}}.md",
        csv=report(f"{WASS_ROOT}/tables/table1_{{wass_dataset}}.csv", category="Wasserstein DML (paper 002)",
                   caption="../../report/wasserstein.rst"),
        coreset=f"{WASS_ROOT}/tables/coreset_{{wass_dataset}}.csv",
    params:
        cli=DMLREPRO,
        note=lambda w: wass_data_note(w.wass_dataset),
    log:
        f"logs/{WASS_ROOT}/{{wass_dataset}}/table.log",
    conda:
        "../../envs/report.yaml"
    shell:
        "{params.cli} wass-table --dataset {wildcards.wass_dataset} --metrics {input}"
        " --data-note {params.note:q} --csv {output.csv} --md {output.md} --coreset-csv {output.coreset}"
        " --note 'Test metrics (pooled embedding: the normalised mean point of each cloud) of the epoch selected on validation R@1; mean ± std over seeds, percent.'"
        " --note 'mAP is mAP@1000 with Roth et al.s normaliser (the paper does not say which mAP); MAP@R beside it.'"
        " > {log} 2>&1"


rule wasserstein_claims:
    input:
        wass_all_metrics(),
    output:
        md=f"{WASS_ROOT}/tables/claims.md",
        csv=report(f"{WASS_ROOT}/tables/claims.csv", category="Wasserstein DML (paper 002)",
                   caption="../../report/wasserstein.rst"),
    params:
        cli=DMLREPRO,
    log:
        f"logs/{WASS_ROOT}/claims.log",
    conda:
        "../../envs/report.yaml"
    shell:
        "{params.cli} wass-claims --metrics {input} --csv {output.csv} --md {output.md} > {log} 2>&1"


PAPER_TARGETS += wass_targets()
