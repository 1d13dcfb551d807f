# The image foundation's baseline (papers.image_foundation): per dataset a split per seed, the
# backbone's initial weights (pretrained on another dataset, or ImageNet weights from the catalog),
# metric-learning runs per method and seed, the Initial row, a table and a figure.

include: "image_foundation_common.smk"


wildcard_constraints:
    image_dataset="|".join(IMAGE_FOUNDATION["datasets"]),
    image_method="|".join(IMAGE_FOUNDATION["methods"]),
    seed=r"\d+",


rule image_foundation_split:
    input:
        lambda w: if_raw(w.image_dataset),
    output:
        [f"{IF_ROOT}/{{image_dataset}}/splits/seed{s}.json" for s in IF_SEEDS],
    params:
        cli=DMLREPRO,
        protocol=lambda w: json.dumps(if_cfg(w.image_dataset)["protocol"], sort_keys=True),
        seeds=" ".join(str(s) for s in IF_SEEDS),
    log:
        f"logs/{IF_ROOT}/{{image_dataset}}/splits.log",
    conda:
        "../../envs/train.yaml"
    shell:
        "{params.cli} image-split --dataset {wildcards.image_dataset} --raw-root resources/images"
        " --protocol {params.protocol:q} --seeds {params.seeds} --out {output} > {log} 2>&1"


rule image_foundation_pretrain:
    input:
        lambda w: if_raw(if_cfg(w.image_dataset)["pretrain"]["dataset"]),
    output:
        f"{IF_ROOT}/{{image_dataset}}/pretrained.pt",
    params:
        cli=DMLREPRO,
        source=lambda w: if_cfg(w.image_dataset)["pretrain"]["dataset"],
        cfg=lambda w: json.dumps(if_cfg(w.image_dataset)["pretrain"], sort_keys=True),
        device=lambda w: if_device(w.image_dataset),
    log:
        f"logs/{IF_ROOT}/{{image_dataset}}/pretrain.log",
    benchmark:
        f"benchmarks/logs/{IF_ROOT}/{{image_dataset}}/pretrain.tsv"
    threads: 1
    resources:
        gpu=lambda w: int(if_device(w.image_dataset) != "cpu"),
    conda:
        "../../envs/train.yaml"
    shell:
        "OMP_NUM_THREADS={threads} {params.cli} image-pretrain --dataset {params.source} --raw-root resources/images"
        " --params {params.cfg:q} --device {params.device} --out {output} > {log} 2>&1"


rule image_foundation_train:
    input:
        raw=lambda w: if_raw(w.image_dataset),
        split=f"{IF_ROOT}/{{image_dataset}}/splits/seed{{seed}}.json",
        init=lambda w: if_init(w.image_dataset),
    output:
        metrics=f"{IF_ROOT}/{{image_dataset}}/seed{{seed}}/{{image_method}}/metrics.json",
        history=f"{IF_ROOT}/{{image_dataset}}/seed{{seed}}/{{image_method}}/history.csv",
        model=f"{IF_ROOT}/{{image_dataset}}/seed{{seed}}/{{image_method}}/model.pt",
    wildcard_constraints:
        image_dataset="|".join(d for d in IMAGE_FOUNDATION["datasets"] if d not in IF_BATCHED) or "no-unbatched-dataset",
    params:
        cli=DMLREPRO,
        argv=lambda w: shlex.join(if_train_argv(w.image_dataset, w.seed, w.image_method)),
    log:
        f"logs/{IF_ROOT}/{{image_dataset}}/seed{{seed}}/{{image_method}}.log",
    benchmark:
        f"benchmarks/logs/{IF_ROOT}/{{image_dataset}}/seed{{seed}}/{{image_method}}.tsv"
    threads: lambda w: if_resource(w.image_dataset, "cpus", 1)
    resources:
        gpu=lambda w: int(if_device(w.image_dataset) != "cpu"),
        mem_mb=lambda w: if_resource(w.image_dataset, "mem_mb", 8000),
        runtime=lambda w: if_resource(w.image_dataset, "runtime", 240),
    conda:
        "../../envs/train.yaml"
    shell:
        "OMP_NUM_THREADS={threads} {params.cli} {params.argv} > {log} 2>&1"


# batch_rows: every method of one seed in one job (one interpreter start; each run keeps its own log)
rule image_foundation_train_seed:
    input:
        raw=lambda w: if_raw(w.image_dataset),
        split=f"{IF_ROOT}/{{image_dataset}}/splits/seed{{seed}}.json",
        init=lambda w: if_init(w.image_dataset),
    output:
        metrics=[f"{IF_ROOT}/{{image_dataset}}/seed{{seed}}/{m}/metrics.json" for m in IF_METHODS],
        history=[f"{IF_ROOT}/{{image_dataset}}/seed{{seed}}/{m}/history.csv" for m in IF_METHODS],
        model=[f"{IF_ROOT}/{{image_dataset}}/seed{{seed}}/{m}/model.pt" for m in IF_METHODS],
    wildcard_constraints:
        image_dataset="|".join(IF_BATCHED) or "no-batched-dataset",
    params:
        cli=DMLREPRO,
        jobs=lambda w: image_batch_jobs(if_train_argv(w.image_dataset, w.seed, m) for m in IF_METHODS),
    log:
        f"logs/{IF_ROOT}/{{image_dataset}}/seed{{seed}}/batch.log",
    benchmark:
        f"benchmarks/logs/{IF_ROOT}/{{image_dataset}}/seed{{seed}}/batch.tsv"
    threads: lambda w: if_resource(w.image_dataset, "cpus", 1)
    resources:
        gpu=lambda w: int(if_device(w.image_dataset) != "cpu"),
        mem_mb=lambda w: if_resource(w.image_dataset, "mem_mb", 8000),
        runtime=lambda w: len(IF_METHODS) * if_resource(w.image_dataset, "runtime", 240),
    conda:
        "../../envs/train.yaml"
    shell:
        "OMP_NUM_THREADS={threads} {params.cli} batch --jobs {params.jobs:q} > {log} 2>&1"


rule image_foundation_initial:
    input:
        raw=lambda w: if_raw(w.image_dataset),
        split=f"{IF_ROOT}/{{image_dataset}}/splits/seed{{seed}}.json",
        init=lambda w: if_init(w.image_dataset),
    output:
        f"{IF_ROOT}/{{image_dataset}}/seed{{seed}}/initial.json",
    params:
        cli=DMLREPRO,
        model=lambda w: json.dumps(if_cfg(w.image_dataset)["model"], sort_keys=True),
        init=lambda w, input: f"--init {input.init}" if input.init else "",
        ks=lambda w: if_ks(w.image_dataset),
        device=lambda w: if_device(w.image_dataset),
    log:
        f"logs/{IF_ROOT}/{{image_dataset}}/seed{{seed}}/initial.log",
    resources:
        gpu=lambda w: int(if_device(w.image_dataset) != "cpu"),
    conda:
        "../../envs/train.yaml"
    shell:
        "OMP_NUM_THREADS=1 {params.cli} image-initial --dataset {wildcards.image_dataset} --raw-root resources/images"
        " --split {input.split} --seed {wildcards.seed} --model {params.model:q} {params.init}"
        " --recall-ks {params.ks} --device {params.device} --out {output} > {log} 2>&1"


rule image_foundation_table:
    input:
        metrics=lambda w: if_metrics(w.image_dataset),
        histories=lambda w: if_histories(w.image_dataset),
    output:
        md=f"{IF_ROOT}/tables/{{image_dataset}}.md",
        csv=report(f"{IF_ROOT}/tables/{{image_dataset}}.csv", category="Image foundation",
                   caption="../../report/image_foundation.rst"),
        figure=report(f"{IF_ROOT}/figures/{{image_dataset}}_curves.png", category="Image foundation",
                      caption="../../report/image_foundation.rst"),
    params:
        cli=DMLREPRO,
        ks=lambda w: if_ks(w.image_dataset),
        note=lambda w: if_data_note(w.image_dataset),
        notes=lambda w: if_table_notes(w.image_dataset),
    log:
        f"logs/{IF_ROOT}/{{image_dataset}}/table.log",
    conda:
        "../../envs/report.yaml"
    shell:
        "{params.cli} image-table --metrics {input.metrics} --histories {input.histories} --recall-ks {params.ks}"
        " --data-note {params.note:q} --csv {output.csv} --md {output.md} --figure {output.figure}"
        " --note 'Selection on validation R@1 (held out from the training part); the test split is never read for it.'"
        " --note 'R@1 if selected on test: the best epoch on test, as the public anchors report; shown only to measure that habit.'"
        " {params.notes} > {log} 2>&1"


PAPER_TARGETS += if_targets()
