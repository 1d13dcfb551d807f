# Validation search of each trained method's schedule (issue 18, part 2; docs/wsset.md, "Tuned
# schedules"): the config's `tuning` block trains the grid lr x epochs of one method in ONE job
# (one interpreter start, the pointsets loaded once) on the validation part of `tuning.splits`
# (carved from train; test is never read) and writes the grid and its choice. With
# `tuning.apply: true` the method's Table I/II runs on that dataset read the chosen lr and epochs
# from the result (train_inputs: "tuned"); otherwise the choice is copied into
# method_params.<m>.train by hand (the embedded default does that: config/wsset_tuning.yaml runs it).


rule tune_method:
    input:
        pointsets="results/wsset/{dataset}/pointsets.npz",
        splits="results/wsset/{dataset}/splits.npz",
        emd=lambda w: f"results/wsset/{w.dataset}/emd.npy" if method_spec(w.method).uses_emd else [],
    output:
        "results/wsset/{dataset}/tuning/{method}.json",
    wildcard_constraints:
        method="|".join(TRAINED_METHODS),
    params:
        cli=DMLREPRO,
        cfg=lambda w: json.dumps({"method_params": study_method_params(w.method, ""),
                                  "model": architecture_cfg(w.method), "train": method_train_cfg(w.method)},
                                 sort_keys=True),
        grid=json.dumps(WSSET_TUNING.get("grid", {}), sort_keys=True),
        splits=" ".join(str(k) for k in WSSET_TUNING.get("splits", [0])),
        emd=lambda w, input: f"--emd {input.emd}" if input.emd else "",
        work_dir=lambda w: f"results/wsset/{w.dataset}/tuning/{w.method}",
    threads: WSSET["train"].get("threads", 1)
    resources:
        gpu=lambda w: 1 if WSSET["train"].get("device", "cpu") != "cpu" else 0,
        runtime=1440,
    log:
        "logs/{dataset}/tuning/{method}.log",
    benchmark:
        "benchmarks/logs/{dataset}/tuning/{method}.tsv"
    conda:
        "../../../envs/train.yaml"
    shell:
        "{params.cli} tune --dataset {wildcards.dataset} --method {wildcards.method}"
        " --pointsets {input.pointsets} --splits {input.splits} {params.emd} --tuning-splits {params.splits}"
        " --grid {params.grid:q} --params {params.cfg:q} --work-dir {params.work_dir} --out {output}"
        " --threads {threads} > {log} 2>&1"


rule tuning_table:
    input:
        tuning_results(),
    output:
        "results/wsset/tables/tuning.md",
    params:
        cli=DMLREPRO,
    log:
        "logs/report/tuning.log",
    conda:
        "../../../envs/report.yaml"
    shell:
        "{params.cli} tuning-table --results {input} --out {output} > {log} 2>&1"
