# SSDML (papers.ssdml): per dataset a same-class split per seed, the Initial row (the randomly
# initialised network) and Algorithm-1 runs per method (w/ and w/o orth) and seed, then Tables 1
# and 4 with the paper's values and the claims.

include: "ssdml_common.smk"


wildcard_constraints:
    ssdml_dataset="|".join(SSDML["datasets"]),
    ssdml_method="|".join(SSDML["methods"]),
    ssdml_seed=r"\d+",
    ssdml_alpha=r"\d+(\.\d+)?",
    ssdml_point=r"\d+",


rule ssdml_split:
    input:
        lambda w: ssdml_raw(w.ssdml_dataset),
    output:
        [f"{SSDML_ROOT}/{{ssdml_dataset}}/splits/seed{s}.json" for s in SSDML_SEEDS],
    params:
        cli=DMLREPRO,
        protocol=lambda w: json.dumps(ssdml_split_protocol(w.ssdml_dataset), sort_keys=True),
        seeds=" ".join(str(s) for s in SSDML_SEEDS),
    log:
        f"logs/{SSDML_ROOT}/{{ssdml_dataset}}/splits.log",
    conda:
        "../../envs/train.yaml"
    shell:
        "{params.cli} image-split --dataset {wildcards.ssdml_dataset} --raw-root resources/images"
        " --protocol {params.protocol:q} --seeds {params.seeds} --out {output} > {log} 2>&1"


rule ssdml_train:
    input:
        raw=lambda w: ssdml_raw(w.ssdml_dataset),
        init=lambda w: ssdml_init(w.ssdml_dataset),
        split=f"{SSDML_ROOT}/{{ssdml_dataset}}/splits/seed{{ssdml_seed}}.json",
    output:
        metrics=f"{SSDML_ROOT}/{{ssdml_dataset}}/seed{{ssdml_seed}}/{{ssdml_method}}/metrics.json",
        history=f"{SSDML_ROOT}/{{ssdml_dataset}}/seed{{ssdml_seed}}/{{ssdml_method}}/history.csv",
        model=f"{SSDML_ROOT}/{{ssdml_dataset}}/seed{{ssdml_seed}}/{{ssdml_method}}/model.pt",
    params:
        cli=DMLREPRO,
        argv=lambda w: shlex.join(ssdml_run_argv(w.ssdml_dataset, w.ssdml_seed, w.ssdml_method)),
    log:
        f"logs/{SSDML_ROOT}/{{ssdml_dataset}}/seed{{ssdml_seed}}/{{ssdml_method}}.log",
    benchmark:
        f"benchmarks/logs/{SSDML_ROOT}/{{ssdml_dataset}}/seed{{ssdml_seed}}/{{ssdml_method}}.tsv"
    threads: lambda w: ssdml_resource(w.ssdml_dataset, "cpus", 1)
    resources:
        gpu=lambda w: int(ssdml_device(w.ssdml_dataset) != "cpu"),
        mem_mb=lambda w: ssdml_resource(w.ssdml_dataset, "mem_mb", 8000),
        runtime=lambda w: ssdml_resource(w.ssdml_dataset, "runtime", 240),
    conda:
        "../../envs/train.yaml"
    shell:
        "OMP_NUM_THREADS={threads} {params.cli} {params.argv} > {log} 2>&1"


# batch_rows: a seed's runs of every method in one job (one interpreter start; each run keeps its own log)
rule ssdml_train_seed:
    input:
        raw=lambda w: ssdml_raw(w.ssdml_dataset),
        init=lambda w: ssdml_init(w.ssdml_dataset),
        split=f"{SSDML_ROOT}/{{ssdml_dataset}}/splits/seed{{ssdml_seed}}.json",
    output:
        metrics=[f"{SSDML_ROOT}/{{ssdml_dataset}}/seed{{ssdml_seed}}/{m}/metrics.json" for m in ssdml_batch_methods()],
        history=[f"{SSDML_ROOT}/{{ssdml_dataset}}/seed{{ssdml_seed}}/{m}/history.csv" for m in ssdml_batch_methods()],
        model=[f"{SSDML_ROOT}/{{ssdml_dataset}}/seed{{ssdml_seed}}/{m}/model.pt" for m in ssdml_batch_methods()],
    wildcard_constraints:
        ssdml_dataset="|".join(SSDML_BATCHED) or "no-batched-dataset",
    params:
        cli=DMLREPRO,
        jobs=lambda w: image_batch_jobs([ssdml_run_argv(w.ssdml_dataset, w.ssdml_seed, m) for m in ssdml_batch_methods()]),
    log:
        f"logs/{SSDML_ROOT}/{{ssdml_dataset}}/seed{{ssdml_seed}}/batch.log",
    benchmark:
        f"benchmarks/logs/{SSDML_ROOT}/{{ssdml_dataset}}/seed{{ssdml_seed}}/batch.tsv"
    threads: lambda w: ssdml_resource(w.ssdml_dataset, "cpus", 1)
    resources:
        gpu=lambda w: int(ssdml_device(w.ssdml_dataset) != "cpu"),
        mem_mb=lambda w: ssdml_resource(w.ssdml_dataset, "mem_mb", 8000),
        runtime=lambda w: len(ssdml_batch_methods()) * ssdml_resource(w.ssdml_dataset, "runtime", 240),
    conda:
        "../../envs/train.yaml"
    shell:
        "OMP_NUM_THREADS={threads} {params.cli} batch --jobs {params.jobs:q} > {log} 2>&1"


# a batched seed's runs come from its batch job, a method scoped to fewer datasets from its own
ruleorder: ssdml_train_seed > ssdml_train


rule ssdml_initial:
    input:
        raw=lambda w: ssdml_raw(w.ssdml_dataset),
        init=lambda w: ssdml_init(w.ssdml_dataset),
        split=f"{SSDML_ROOT}/{{ssdml_dataset}}/splits/seed{{ssdml_seed}}.json",
    output:
        f"{SSDML_ROOT}/{{ssdml_dataset}}/seed{{ssdml_seed}}/initial.json",
    params:
        cli=DMLREPRO,
        model=lambda w: json.dumps(ssdml_cfg(w.ssdml_dataset).get("model", {}), sort_keys=True),
        method=lambda w: json.dumps(ssdml_cfg(w.ssdml_dataset).get("method", {}), sort_keys=True),
        space=lambda w: ssdml_cfg(w.ssdml_dataset)["train"].get("retrieval_space", "after_L"),
        train=lambda w: json.dumps({k: v for k, v in ssdml_cfg(w.ssdml_dataset)["train"].items()
                                    if k in ("pretrain", "labels_per_class", "optimizer", "momentum")}, sort_keys=True),
        ks=lambda w: ssdml_ks(w.ssdml_dataset),
        device=lambda w: ssdml_device(w.ssdml_dataset),
        init=lambda w: ssdml_init_arg(w.ssdml_dataset),
    log:
        f"logs/{SSDML_ROOT}/{{ssdml_dataset}}/seed{{ssdml_seed}}/initial.log",
    resources:
        gpu=lambda w: int(ssdml_device(w.ssdml_dataset) != "cpu"),
    conda:
        "../../envs/train.yaml"
    shell:
        "OMP_NUM_THREADS=1 {params.cli} ssdml-initial --dataset {wildcards.ssdml_dataset} --raw-root resources/images"
        " --split {input.split} --seed {wildcards.ssdml_seed} --model {params.model:q} --method {params.method:q}"
        " --retrieval-space {params.space} --train {params.train:q}"
        " --recall-ks {params.ks} --device {params.device} {params.init} --out {output} > {log} 2>&1"


rule ssdml_tables:
    input:
        ssdml_metrics(),
    output:
        table1_md=f"{SSDML_ROOT}/tables/table1.md",
        table1_csv=report(f"{SSDML_ROOT}/tables/table1.csv", category="SSDML", caption="../../report/ssdml.rst"),
        table4_md=f"{SSDML_ROOT}/tables/table4.md",
        table4_csv=report(f"{SSDML_ROOT}/tables/table4.csv", category="SSDML", caption="../../report/ssdml.rst"),
        claims_md=f"{SSDML_ROOT}/tables/claims.md",
        claims_csv=f"{SSDML_ROOT}/tables/claims.csv",
        fine=[f"{SSDML_ROOT}/tables/table{t}.{x}" for t in (2, 3, 5) for x in ("md", "csv")] if ssdml_fine_grained() else [],
    params:
        cli=DMLREPRO,
        datasets=" ".join(SSDML["datasets"]),
        fine=" ".join(f"--table{t}-{x} {SSDML_ROOT}/tables/table{t}.{x}" for t in (2, 3, 5) for x in ("md", "csv"))
        if ssdml_fine_grained() else "",
        notes=" ".join(f"--note {shlex.quote(n)}" for n in SSDML.get("notes", [])),
    log:
        f"logs/{SSDML_ROOT}/tables.log",
    conda:
        "../../envs/report.yaml"
    shell:
        "{params.cli} ssdml-tables --metrics {input} --datasets {params.datasets} {params.notes}"
        " --table1-csv {output.table1_csv} --table1-md {output.table1_md}"
        " --table4-csv {output.table4_csv} --table4-md {output.table4_md}"
        " --claims-csv {output.claims_csv} --claims-md {output.claims_md} {params.fine} > {log} 2>&1"


rule ssdml_alpha:
    input:
        raw=lambda w: ssdml_raw(w.ssdml_dataset),
        init=lambda w: ssdml_init(w.ssdml_dataset),
        split=f"{SSDML_ROOT}/{{ssdml_dataset}}/splits/seed{{ssdml_seed}}.json",
    output:
        metrics=f"{SSDML_ROOT}/{{ssdml_dataset}}/seed{{ssdml_seed}}/alpha/{{ssdml_alpha}}/metrics.json",
        history=f"{SSDML_ROOT}/{{ssdml_dataset}}/seed{{ssdml_seed}}/alpha/{{ssdml_alpha}}/history.csv",
    params:
        cli=DMLREPRO,
        argv=lambda w: shlex.join(ssdml_alpha_argv(w.ssdml_dataset, w.ssdml_seed, w.ssdml_alpha)),
    log:
        f"logs/{SSDML_ROOT}/{{ssdml_dataset}}/seed{{ssdml_seed}}/alpha/{{ssdml_alpha}}.log",
    benchmark:
        f"benchmarks/logs/{SSDML_ROOT}/{{ssdml_dataset}}/seed{{ssdml_seed}}/alpha/{{ssdml_alpha}}.tsv"
    threads: lambda w: ssdml_resource(w.ssdml_dataset, "cpus", 1)
    resources:
        gpu=lambda w: int(ssdml_device(w.ssdml_dataset) != "cpu"),
        mem_mb=lambda w: ssdml_resource(w.ssdml_dataset, "mem_mb", 8000),
        runtime=lambda w: ssdml_resource(w.ssdml_dataset, "runtime", 240),
    conda:
        "../../envs/train.yaml"
    shell:
        "OMP_NUM_THREADS={threads} {params.cli} {params.argv} > {log} 2>&1"


if ssdml_figure2():
    _FIG2 = ssdml_figure2()

    if _FIG2["dataset"] in SSDML_BATCHED:
        # batch_rows: the α sweep in one job (one interpreter start; each run keeps its own log)
        rule ssdml_alpha_sweep:
            input:
                raw=ssdml_raw(_FIG2["dataset"]),
                init=ssdml_init(_FIG2["dataset"]),
                split=ssdml_split(_FIG2["dataset"], _FIG2["seed"]),
            output:
                metrics=ssdml_alpha_metrics(),
                history=[p.replace("metrics.json", "history.csv") for p in ssdml_alpha_metrics()],
            params:
                cli=DMLREPRO,
                jobs=image_batch_jobs([ssdml_alpha_argv(_FIG2["dataset"], _FIG2["seed"], a) for a in ssdml_alphas()]),
            log:
                f"logs/{SSDML_ROOT}/{_FIG2['dataset']}/seed{_FIG2['seed']}/alpha/batch.log",
            benchmark:
                f"benchmarks/logs/{SSDML_ROOT}/{_FIG2['dataset']}/seed{_FIG2['seed']}/alpha/batch.tsv"
            threads: ssdml_resource(_FIG2["dataset"], "cpus", 1)
            resources:
                gpu=int(ssdml_device(_FIG2["dataset"]) != "cpu"),
                mem_mb=ssdml_resource(_FIG2["dataset"], "mem_mb", 8000),
                runtime=len(ssdml_alphas()) * ssdml_resource(_FIG2["dataset"], "runtime", 240),
            conda:
                "../../envs/train.yaml"
            shell:
                "OMP_NUM_THREADS={threads} {params.cli} batch --jobs {params.jobs:q} > {log} 2>&1"

        ruleorder: ssdml_alpha_sweep > ssdml_alpha

    rule ssdml_figure2:
        input:
            raw=ssdml_raw(_FIG2["dataset"]),
            split=f"{SSDML_ROOT}/{_FIG2['dataset']}/splits/seed{_FIG2['seed']}.json",
            ours=[ssdml_run_file(_FIG2["dataset"], s, "ours", "history.csv") for s in SSDML_SEEDS],
            no_orth=[ssdml_run_file(_FIG2["dataset"], s, "ours_no_orth", "history.csv") for s in SSDML_SEEDS],
            model_ours=ssdml_run_file(_FIG2["dataset"], _FIG2["seed"], "ours", "model.pt"),
            model_no_orth=ssdml_run_file(_FIG2["dataset"], _FIG2["seed"], "ours_no_orth", "model.pt"),
            alpha=ssdml_alpha_metrics(),
        output:
            png=report(f"{SSDML_ROOT}/figures/figure2.png", category="SSDML", caption="../../report/ssdml.rst"),
            pdf=f"{SSDML_ROOT}/figures/figure2.pdf",
        params:
            cli=DMLREPRO,
            dataset=_FIG2["dataset"],
            seed=_FIG2["seed"],
            model=json.dumps(ssdml_cfg(_FIG2["dataset"]).get("model", {}), sort_keys=True),
            method=json.dumps(ssdml_cfg(_FIG2["dataset"]).get("method", {}), sort_keys=True),
            space=ssdml_cfg(_FIG2["dataset"])["train"].get("retrieval_space", "after_L"),
            points=_FIG2["tsne_points"],
            paper_alpha=ssdml_cfg(_FIG2["dataset"]).get("method", {}).get("alpha_deg", 40),
        log:
            f"logs/{SSDML_ROOT}/figure2.log",
        conda:
            "../../envs/report.yaml"
        shell:
            "OMP_NUM_THREADS=1 {params.cli} ssdml-figure2 --dataset {params.dataset} --raw-root resources/images"
            " --split {input.split} --seed {params.seed} --histories-ours {input.ours}"
            " --histories-no-orth {input.no_orth} --alpha-metrics {input.alpha} --model-ours {input.model_ours}"
            " --model-no-orth {input.model_no_orth} --model {params.model:q} --method {params.method:q}"
            " --retrieval-space {params.space} --points {params.points} --paper-alpha {params.paper_alpha}"
            " --out {output.png} > {log} 2>&1"


if ssdml_tuning():
    _TUNING = ssdml_tuning()

    # one grid point of a method: its Table-1 run on the tuning dataset and seed with the point's overrides
    rule ssdml_tune:
        input:
            raw=ssdml_raw(_TUNING["dataset"]),
            init=ssdml_init(_TUNING["dataset"]),
            split=f"{SSDML_ROOT}/{_TUNING['dataset']}/splits/seed{_TUNING['seed']}.json",
        output:
            metrics=f"{ssdml_tuning_dir()}/{{ssdml_method}}/point{{ssdml_point}}/metrics.json",
            history=f"{ssdml_tuning_dir()}/{{ssdml_method}}/point{{ssdml_point}}/history.csv",
        params:
            cli=DMLREPRO,
            dataset=_TUNING["dataset"],
            seed=_TUNING["seed"],
            cfg=lambda w: json.dumps(ssdml_tuning_params(w.ssdml_method, w.ssdml_point), sort_keys=True),
            ks=ssdml_ks(_TUNING["dataset"]),
            device=ssdml_device(_TUNING["dataset"]),
            init=ssdml_init_arg(_TUNING["dataset"]),
            out_dir=subpath(output.metrics, parent=True),
        log:
            f"logs/{ssdml_tuning_dir()}/{{ssdml_method}}/point{{ssdml_point}}.log",
        benchmark:
            f"benchmarks/logs/{ssdml_tuning_dir()}/{{ssdml_method}}/point{{ssdml_point}}.tsv"
        threads: ssdml_resource(_TUNING["dataset"], "cpus", 1)
        resources:
            gpu=int(ssdml_device(_TUNING["dataset"]) != "cpu"),
            mem_mb=ssdml_resource(_TUNING["dataset"], "mem_mb", 8000),
            runtime=ssdml_resource(_TUNING["dataset"], "runtime", 240),
        conda:
            "../../envs/train.yaml"
        shell:
            "OMP_NUM_THREADS={threads} {params.cli} ssdml-train --dataset {params.dataset}"
            " --raw-root resources/images --split {input.split} --seed {params.seed}"
            " --method {wildcards.ssdml_method} --params {params.cfg:q} --recall-ks {params.ks}"
            " --device {params.device} {params.init} --out-dir {params.out_dir} --tuning-point {wildcards.ssdml_point}"
            " > {log} 2>&1"

    rule ssdml_tuning_table:
        input:
            ssdml_tuning_metrics(),
        output:
            md=f"{SSDML_ROOT}/tables/tuning.md",
            csv=f"{SSDML_ROOT}/tables/tuning.csv",
        params:
            cli=DMLREPRO,
            grid=json.dumps(_TUNING["grid"], sort_keys=True),
        log:
            f"logs/{SSDML_ROOT}/tuning.log",
        conda:
            "../../envs/report.yaml"
        shell:
            "{params.cli} ssdml-tuning-table --metrics {input} --grid {params.grid:q}"
            " --out-csv {output.csv} --out-md {output.md} > {log} 2>&1"


PAPER_TARGETS += ssdml_targets()
