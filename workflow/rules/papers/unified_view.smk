# Paper 004, "A unified view of deep metric learning" (papers.unified_view): Table 1's seven rows
# (loss x miner) trained per dataset and seed with the image foundation's steps (image-split,
# image-pretrain, image-train, image-initial for the Initial row), Table 1 per dataset, the paper's
# claims, Figure 1.

include: "unified_view_common.smk"


wildcard_constraints:
    uv_dataset="|".join(UNIFIED_VIEW["datasets"]),
    uv_row="|".join(UNIFIED_VIEW["methods"]),
    seed=r"\d+",


rule unified_view_split:
    input:
        lambda w: uv_raw(w.uv_dataset),
    output:
        [f"{UV_ROOT}/{{uv_dataset}}/splits/seed{s}.json" for s in UV_SEEDS],
    params:
        cli=DMLREPRO,
        protocol=lambda w: json.dumps(uv_cfg(w.uv_dataset)["protocol"], sort_keys=True),
        seeds=" ".join(str(s) for s in UV_SEEDS),
    log:
        f"logs/{UV_ROOT}/{{uv_dataset}}/splits.log",
    conda:
        "../../envs/train.yaml"
    shell:
        "{params.cli} image-split --dataset {wildcards.uv_dataset} --raw-root resources/images"
        " --protocol {params.protocol:q} --seeds {params.seeds} --out {output} > {log} 2>&1"


rule unified_view_pretrain:
    # only where the image foundation does not pretrain the same backbone the same way (uv_init)
    input:
        lambda w: uv_raw(uv_cfg(w.uv_dataset)["pretrain"]["dataset"]),
    output:
        f"{UV_ROOT}/{{uv_dataset}}/pretrained.pt",
    params:
        cli=DMLREPRO,
        source=lambda w: uv_cfg(w.uv_dataset)["pretrain"]["dataset"],
        cfg=lambda w: json.dumps(uv_cfg(w.uv_dataset)["pretrain"], sort_keys=True),
        device=lambda w: uv_device(w.uv_dataset),
    log:
        f"logs/{UV_ROOT}/{{uv_dataset}}/pretrain.log",
    benchmark:
        f"benchmarks/logs/{UV_ROOT}/{{uv_dataset}}/pretrain.tsv"
    threads: 1
    resources:
        gpu=lambda w: int(uv_device(w.uv_dataset) != "cpu"),
    conda:
        "../../envs/train.yaml"
    shell:
        "OMP_NUM_THREADS={threads} {params.cli} image-pretrain --dataset {params.source} --raw-root resources/images"
        " --params {params.cfg:q} --device {params.device} --out {output} > {log} 2>&1"


rule unified_view_train:
    input:
        raw=lambda w: uv_raw(w.uv_dataset),
        split=f"{UV_ROOT}/{{uv_dataset}}/splits/seed{{seed}}.json",
        init=lambda w: uv_init(w.uv_dataset),
    output:
        metrics=f"{UV_ROOT}/{{uv_dataset}}/seed{{seed}}/{{uv_row}}/metrics.json",
        history=f"{UV_ROOT}/{{uv_dataset}}/seed{{seed}}/{{uv_row}}/history.csv",
        model=f"{UV_ROOT}/{{uv_dataset}}/seed{{seed}}/{{uv_row}}/model.pt",
    wildcard_constraints:
        uv_dataset="|".join(d for d in UNIFIED_VIEW["datasets"] if d not in UV_BATCHED) or "no-unbatched-dataset",
    params:
        cli=DMLREPRO,
        argv=lambda w, input: shlex.join(uv_train_argv(w.uv_dataset, w.seed, w.uv_row, input.split, input.init)),
    log:
        f"logs/{UV_ROOT}/{{uv_dataset}}/seed{{seed}}/{{uv_row}}.log",
    benchmark:
        f"benchmarks/logs/{UV_ROOT}/{{uv_dataset}}/seed{{seed}}/{{uv_row}}.tsv"
    threads: lambda w: uv_resource(w.uv_dataset, "cpus", 1)
    resources:
        gpu=lambda w: int(uv_device(w.uv_dataset) != "cpu"),
        mem_mb=lambda w: uv_resource(w.uv_dataset, "mem_mb", 8000),
        runtime=lambda w: uv_resource(w.uv_dataset, "runtime", 240),
    conda:
        "../../envs/train.yaml"
    shell:
        "OMP_NUM_THREADS={threads} {params.cli} {params.argv} > {log} 2>&1"


# batch_rows: every row of one seed in one job (one interpreter start; each run keeps its own log)
rule unified_view_train_seed:
    input:
        raw=lambda w: uv_raw(w.uv_dataset),
        split=f"{UV_ROOT}/{{uv_dataset}}/splits/seed{{seed}}.json",
        init=lambda w: uv_init(w.uv_dataset),
    output:
        metrics=[f"{UV_ROOT}/{{uv_dataset}}/seed{{seed}}/{row}/metrics.json" for row in UV_ROWS],
        history=[f"{UV_ROOT}/{{uv_dataset}}/seed{{seed}}/{row}/history.csv" for row in UV_ROWS],
        model=[f"{UV_ROOT}/{{uv_dataset}}/seed{{seed}}/{row}/model.pt" for row in UV_ROWS],
    wildcard_constraints:
        uv_dataset="|".join(UV_BATCHED) or "no-batched-dataset",
    params:
        cli=DMLREPRO,
        jobs=lambda w, input: image_batch_jobs(uv_train_argv(w.uv_dataset, w.seed, row, input.split, input.init) for row in UV_ROWS),
    log:
        f"logs/{UV_ROOT}/{{uv_dataset}}/seed{{seed}}/batch.log",
    benchmark:
        f"benchmarks/logs/{UV_ROOT}/{{uv_dataset}}/seed{{seed}}/batch.tsv"
    threads: lambda w: uv_resource(w.uv_dataset, "cpus", 1)
    resources:
        gpu=lambda w: int(uv_device(w.uv_dataset) != "cpu"),
        mem_mb=lambda w: uv_resource(w.uv_dataset, "mem_mb", 8000),
        runtime=lambda w: len(UV_ROWS) * uv_resource(w.uv_dataset, "runtime", 240),
    conda:
        "../../envs/train.yaml"
    shell:
        "OMP_NUM_THREADS={threads} {params.cli} batch --jobs {params.jobs:q} > {log} 2>&1"


rule unified_view_initial:
    # only where the image foundation's Initial row is not the same measurement (uv_initial)
    input:
        raw=lambda w: uv_raw(w.uv_dataset),
        split=f"{UV_ROOT}/{{uv_dataset}}/splits/seed{{seed}}.json",
        init=lambda w: uv_init(w.uv_dataset),
    output:
        f"{UV_ROOT}/{{uv_dataset}}/seed{{seed}}/initial.json",
    params:
        cli=DMLREPRO,
        model=lambda w: json.dumps(uv_cfg(w.uv_dataset)["model"], sort_keys=True),
        init=lambda w, input: f"--init {input.init}" if input.init else "",
        ks=lambda w: uv_ks(w.uv_dataset),
        device=lambda w: uv_device(w.uv_dataset),
    log:
        f"logs/{UV_ROOT}/{{uv_dataset}}/seed{{seed}}/initial.log",
    benchmark:
        f"benchmarks/logs/{UV_ROOT}/{{uv_dataset}}/seed{{seed}}/initial.tsv"
    resources:
        gpu=lambda w: int(uv_device(w.uv_dataset) != "cpu"),
    conda:
        "../../envs/train.yaml"
    shell:
        "OMP_NUM_THREADS=1 {params.cli} image-initial --dataset {wildcards.uv_dataset} --raw-root resources/images"
        " --split {input.split} --seed {wildcards.seed} --model {params.model:q} {params.init}"
        " --recall-ks {params.ks} --device {params.device} --out {output} > {log} 2>&1"


rule unified_view_table:
    input:
        lambda w: uv_table_inputs(w.uv_dataset),
    output:
        md=f"{UV_ROOT}/tables/table1_{{uv_dataset}}.md",
        csv=report(f"{UV_ROOT}/tables/table1_{{uv_dataset}}.csv", category="Unified view (paper 004)",
                   caption="../../report/unified_view.rst"),
    params:
        cli=DMLREPRO,
        ks=lambda w: uv_ks(w.uv_dataset),
        note=lambda w: uv_data_note(w.uv_dataset),
    log:
        f"logs/{UV_ROOT}/{{uv_dataset}}/table.log",
    conda:
        "../../envs/report.yaml"
    shell:
        "{params.cli} uv-table --dataset {wildcards.uv_dataset} --metrics {input} --recall-ks {params.ks}"
        " --data-note {params.note:q} --csv {output.csv} --md {output.md}"
        " --note 'Test metrics of the epoch selected on validation R@1 (images held out from the training classes); mean ± std over seeds.'"
        " --note 'R@1 if selected on test: the best epoch on test, as the official code validates on the test set; shown only to measure that habit.'"
        " --note 'Initial: the pretrained backbone before metric learning (its pooled, L2-normalised features); one backbone for every seed, so its spread comes only from the clustering seed.'"
        " > {log} 2>&1"


rule unified_view_claims:
    input:
        uv_all_metrics(),
    output:
        md=f"{UV_ROOT}/tables/claims.md",
        csv=report(f"{UV_ROOT}/tables/claims.csv", category="Unified view (paper 004)",
                   caption="../../report/unified_view.rst"),
    params:
        cli=DMLREPRO,
    log:
        f"logs/{UV_ROOT}/claims.log",
    conda:
        "../../envs/report.yaml"
    shell:
        "{params.cli} uv-claims --metrics {input} --csv {output.csv} --md {output.md} > {log} 2>&1"


rule unified_view_figure1:
    output:
        png=report(UV_FIGURE1, category="Unified view (paper 004)", caption="../../report/unified_view.rst"),
        pdf=UV_FIGURE1.replace(".png", ".pdf"),
    params:
        cli=DMLREPRO,
    log:
        f"logs/{UV_ROOT}/figure1.log",
    conda:
        "../../envs/report.yaml"
    shell:
        "{params.cli} uv-figure1 --out {output.png} > {log} 2>&1"


PAPER_TARGETS += uv_targets()
