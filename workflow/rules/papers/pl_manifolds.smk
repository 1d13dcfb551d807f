# Paper 003, piecewise-linear manifolds (papers.pl_manifolds): per dataset a zero-shot split per
# seed, the pretrained backbone (the image foundation's when pretrained the same way), the Initial
# row (image-initial), unsupervised runs per embedding dimension, method and seed (Table 1's Ours
# and STML*, Table 3's ablations, Fig. 3's points), Table 2 on the pretrained embeddings, then
# Tables 1-3, Fig. 3 and the claims.

include: "pl_manifolds_common.smk"


wildcard_constraints:
    plm_dataset="|".join(PL_MANIFOLDS["datasets"]),
    plm_run="|".join(plm_run_names()),
    plm_dim=r"\d+",
    plm_seed=r"\d+",


rule pl_manifolds_split:
    input:
        lambda w: plm_raw(w.plm_dataset),
    output:
        [f"{PLM_ROOT}/{{plm_dataset}}/splits/seed{s}.json" for s in PLM_SEEDS],
    params:
        cli=DMLREPRO,
        protocol=lambda w: json.dumps(plm_cfg(w.plm_dataset)["protocol"], sort_keys=True),
        seeds=" ".join(str(s) for s in PLM_SEEDS),
    log:
        f"logs/{PLM_ROOT}/{{plm_dataset}}/splits.log",
    conda:
        "../../envs/train.yaml"
    shell:
        "{params.cli} image-split --dataset {wildcards.plm_dataset} --raw-root resources/images"
        " --protocol {params.protocol:q} --seeds {params.seeds} --out {output} > {log} 2>&1"


rule pl_manifolds_pretrain:
    # only where the image foundation does not pretrain the same backbone the same way (plm_init)
    input:
        lambda w: plm_raw(plm_cfg(w.plm_dataset)["pretrain"]["dataset"]),
    output:
        f"{PLM_ROOT}/{{plm_dataset}}/pretrained.pt",
    params:
        cli=DMLREPRO,
        source=lambda w: plm_cfg(w.plm_dataset)["pretrain"]["dataset"],
        cfg=lambda w: json.dumps(plm_cfg(w.plm_dataset)["pretrain"], sort_keys=True),
        device=lambda w: plm_device(w.plm_dataset),
    log:
        f"logs/{PLM_ROOT}/{{plm_dataset}}/pretrain.log",
    benchmark:
        f"benchmarks/logs/{PLM_ROOT}/{{plm_dataset}}/pretrain.tsv"
    threads: 1
    resources:
        gpu=lambda w: int(plm_device(w.plm_dataset) != "cpu"),
    conda:
        "../../envs/train.yaml"
    shell:
        "OMP_NUM_THREADS={threads} {params.cli} image-pretrain --dataset {params.source} --raw-root resources/images"
        " --params {params.cfg:q} --device {params.device} --out {output} > {log} 2>&1"


rule pl_manifolds_train:
    input:
        raw=lambda w: plm_raw(w.plm_dataset),
        split=f"{PLM_ROOT}/{{plm_dataset}}/splits/seed{{plm_seed}}.json",
        init=lambda w: plm_init(w.plm_dataset),
    output:
        metrics=f"{PLM_ROOT}/{{plm_dataset}}/d{{plm_dim}}/seed{{plm_seed}}/{{plm_run}}/metrics.json",
        history=f"{PLM_ROOT}/{{plm_dataset}}/d{{plm_dim}}/seed{{plm_seed}}/{{plm_run}}/history.csv",
        model=f"{PLM_ROOT}/{{plm_dataset}}/d{{plm_dim}}/seed{{plm_seed}}/{{plm_run}}/model.pt",
    wildcard_constraints:
        plm_dataset="|".join(d for d in PL_MANIFOLDS["datasets"] if d not in PLM_BATCHED) or "no-unbatched-dataset",
    params:
        cli=DMLREPRO,
        argv=lambda w: shlex.join(plm_train_argv(w.plm_dataset, w.plm_dim, w.plm_seed, w.plm_run)),
    log:
        f"logs/{PLM_ROOT}/{{plm_dataset}}/d{{plm_dim}}/seed{{plm_seed}}/{{plm_run}}.log",
    benchmark:
        f"benchmarks/logs/{PLM_ROOT}/{{plm_dataset}}/d{{plm_dim}}/seed{{plm_seed}}/{{plm_run}}.tsv"
    threads: lambda w: plm_resource(w.plm_dataset, "cpus", 1)
    resources:
        gpu=lambda w: int(plm_device(w.plm_dataset) != "cpu"),
        mem_mb=lambda w: plm_resource(w.plm_dataset, "mem_mb", 8000),
        runtime=lambda w: plm_resource(w.plm_dataset, "runtime", 240),
    conda:
        "../../envs/train.yaml"
    shell:
        "OMP_NUM_THREADS={threads} {params.cli} {params.argv} > {log} 2>&1"


# batch_rows: every run of one seed (each dimension, row and Fig. 3 point) in one job, one interpreter
# start; each run keeps its own log. A seed's runs differ between datasets and seeds (Fig. 3's seeds,
# Table 3's dimension), and a rule's outputs are fixed, so each batch is its own rule. Its init and
# jobs are looked up when planned (the loop's values bound as defaults): a shared pretraining is
# another paper's, whose block may be validated after this one.
for _dataset, _seed, _runs in plm_batches():

    rule:
        name:
            f"pl_manifolds_train_{_dataset}_seed{_seed}"
        input:
            raw=plm_raw(_dataset),
            split=f"{PLM_ROOT}/{_dataset}/splits/seed{_seed}.json",
            init=lambda w, d=_dataset: plm_init(d),
        output:
            metrics=[f"{plm_run_dir(_dataset, dim, _seed, run)}/metrics.json" for dim, run in _runs],
            history=[f"{plm_run_dir(_dataset, dim, _seed, run)}/history.csv" for dim, run in _runs],
            model=[f"{plm_run_dir(_dataset, dim, _seed, run)}/model.pt" for dim, run in _runs],
        params:
            cli=DMLREPRO,
            jobs=lambda w, d=_dataset, s=_seed, r=_runs: image_batch_jobs(plm_train_argv(d, dim, s, run) for dim, run in r),
        log:
            f"logs/{PLM_ROOT}/{_dataset}/seed{_seed}/batch.log",
        benchmark:
            f"benchmarks/logs/{PLM_ROOT}/{_dataset}/seed{_seed}/batch.tsv"
        threads: plm_resource(_dataset, "cpus", 1)
        resources:
            gpu=int(plm_device(_dataset) != "cpu"),
            mem_mb=plm_resource(_dataset, "mem_mb", 8000),
            runtime=len(_runs) * plm_resource(_dataset, "runtime", 240),
        conda:
            "../../envs/train.yaml"
        shell:
            "OMP_NUM_THREADS={threads} {params.cli} batch --jobs {params.jobs:q} > {log} 2>&1"


rule pl_manifolds_initial:
    input:
        raw=lambda w: plm_raw(w.plm_dataset),
        split=f"{PLM_ROOT}/{{plm_dataset}}/splits/seed{{plm_seed}}.json",
        init=lambda w: plm_init(w.plm_dataset),
    output:
        f"{PLM_ROOT}/{{plm_dataset}}/seed{{plm_seed}}/initial.json",
    params:
        cli=DMLREPRO,
        model=lambda w: json.dumps(plm_cfg(w.plm_dataset)["model"], sort_keys=True),
        init=lambda w, input: f"--init {input.init}" if input.init else "",
        ks=lambda w: " ".join(map(str, plm_ks(w.plm_dataset))),
        device=lambda w: plm_device(w.plm_dataset),
    log:
        f"logs/{PLM_ROOT}/{{plm_dataset}}/seed{{plm_seed}}/initial.log",
    resources:
        gpu=lambda w: int(plm_device(w.plm_dataset) != "cpu"),
    conda:
        "../../envs/train.yaml"
    shell:
        "OMP_NUM_THREADS=1 {params.cli} image-initial --dataset {wildcards.plm_dataset} --raw-root resources/images"
        " --split {input.split} --seed {wildcards.plm_seed} --model {params.model:q} {params.init}"
        " --recall-ks {params.ks} --device {params.device} --out {output} > {log} 2>&1"


rule pl_manifolds_supervision:
    input:
        raw=lambda w: plm_raw(w.plm_dataset),
        split=f"{PLM_ROOT}/{{plm_dataset}}/splits/seed{PLM_SEEDS[0]}.json",
        init=lambda w: plm_init(w.plm_dataset),
    output:
        f"{PLM_ROOT}/{{plm_dataset}}/table2.json",
    params:
        cli=DMLREPRO,
        cfg=lambda w: json.dumps({"model": plm_cfg(w.plm_dataset)["model"],
                                  "table2": plm_cfg(w.plm_dataset)["table2"]}, sort_keys=True),
        init=lambda w, input: f"--init {input.init}" if input.init else "",
        seed=PLM_SEEDS[0],
        device=lambda w: plm_device(w.plm_dataset),
    log:
        f"logs/{PLM_ROOT}/{{plm_dataset}}/table2.log",
    benchmark:
        f"benchmarks/logs/{PLM_ROOT}/{{plm_dataset}}/table2.tsv"
    resources:
        gpu=lambda w: int(plm_device(w.plm_dataset) != "cpu"),
        mem_mb=lambda w: plm_resource(w.plm_dataset, "mem_mb", 8000),
    conda:
        "../../envs/train.yaml"
    shell:
        "OMP_NUM_THREADS=1 {params.cli} pl-supervision --dataset {wildcards.plm_dataset} --raw-root resources/images"
        " --split {input.split} --seed {params.seed} --params {params.cfg:q} {params.init}"
        " --device {params.device} --out {output} > {log} 2>&1"


rule pl_manifolds_tables:
    input:
        metrics=plm_metrics(),
        initial=plm_initial(),
        supervision=plm_supervision(),
    output:
        table1=f"{PLM_ROOT}/tables/table1.md",
        table1_csv=report(f"{PLM_ROOT}/tables/table1.csv", category="PL manifolds (paper 003)",
                          caption="../../report/pl_manifolds.rst"),
        table2=f"{PLM_ROOT}/tables/table2.md",
        table2_csv=report(f"{PLM_ROOT}/tables/table2.csv", category="PL manifolds (paper 003)",
                          caption="../../report/pl_manifolds.rst"),
        table3=f"{PLM_ROOT}/tables/table3.md",
        table3_csv=report(f"{PLM_ROOT}/tables/table3.csv", category="PL manifolds (paper 003)",
                          caption="../../report/pl_manifolds.rst"),
        figure3=report(f"{PLM_ROOT}/figures/figure3.png", category="PL manifolds (paper 003)",
                       caption="../../report/pl_manifolds.rst"),
        figure3_csv=f"{PLM_ROOT}/figures/figure3.csv",
        claims=f"{PLM_ROOT}/tables/claims.md",
        claims_csv=f"{PLM_ROOT}/tables/claims.csv",
    params:
        cli=DMLREPRO,
        ks=json.dumps({d: plm_ks(d) for d in PL_MANIFOLDS["datasets"]}),
        data_notes=json.dumps({d: plm_data_note(d) for d in PL_MANIFOLDS["datasets"]}),
        grid=json.dumps(PLM_GRID),
        notes=plm_notes(),
    log:
        f"logs/{PLM_ROOT}/tables.log",
    conda:
        "../../envs/report.yaml"
    shell:
        "{params.cli} pl-tables --metrics {input.metrics} --initial {input.initial}"
        " --supervision {input.supervision} --recall-ks {params.ks:q} --data-notes {params.data_notes:q}"
        " --figure3-grid {params.grid:q} {params.notes}"
        " --table1 {output.table1} --table1-csv {output.table1_csv} --table2 {output.table2}"
        " --table2-csv {output.table2_csv} --table3 {output.table3} --table3-csv {output.table3_csv}"
        " --figure3 {output.figure3} --figure3-csv {output.figure3_csv}"
        " --claims {output.claims} --claims-csv {output.claims_csv} > {log} 2>&1"


PAPER_TARGETS += plm_targets()
