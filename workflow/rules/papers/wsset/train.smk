# Stage 3: train one embedder per dataset x split x method (checkpointed, resumable), and score it
# on its test split in the same job (metrics.json, as the evaluate command; one interpreter start
# per run instead of two). Transfer stages (Ours+Int., Ours+Ext.) take their starting model as input.
# A run's paths, inputs and command come from wsset_common.smk (run_outputs, run_log, run_inputs,
# train_argv), shared with the batched runs below: results/wsset/{dataset}/split{split}/{method}/
# {model.pt, history.csv, embeddings.npy, metrics.json}, logged to logs/{dataset}/split{split}/{method}/train.log.


rule train_embedder:
    input:
        unpack(lambda w: run_inputs(run_of(w))),
    output:
        **run_outputs(WssetRun("{dataset}", "{split}", "{method}")),
    wildcard_constraints:
        method="|".join(TRAINED_METHODS),
    params:
        cli=DMLREPRO,
        argv=lambda w, threads: shlex.join(train_argv(run_of(w), threads)),
    threads: WSSET["train"].get("threads", 1)
    resources:
        gpu=lambda w: 1 if WSSET["train"].get("device", "cpu") != "cpu" else 0,
        runtime=1440,
    log:
        run_log(WssetRun("{dataset}", "{split}", "{method}")),
    benchmark:
        "benchmarks/logs/{dataset}/split{split}/{method}/train.tsv"
    conda:
        "../../../envs/train.yaml"
    shell:
        "{params.cli} {params.argv} > {log} 2>&1"


# Figure studies: the same training at a study point, a smaller train set (Fig. 4) or another c
# (Fig. 6); the run directory results/wsset/{dataset}/{point}/split{split}/{method}/ is named by
# the point's key, its setting looked up in the config
use rule train_embedder as train_study_embedder with:
    output:
        **run_outputs(WssetRun("{dataset}", "{split}", "{method}", point="{point}")),
    wildcard_constraints:
        method="|".join(TRAINED_METHODS),
        point=point_pattern("small_data", "c_grid"),
    log:
        run_log(WssetRun("{dataset}", "{split}", "{method}", point="{point}")),
    benchmark:
        "benchmarks/logs/{dataset}/{point}/split{split}/{method}/train.tsv"


# Training-budget study (papers/wsset/studies.py): one run of the largest budget per encoder
# (results/wsset/{dataset}/budget/{encoder}/split{split}/{method}/), the encoder's model overrides
# looked up by its key, the test accuracy of every epoch recorded
use rule train_embedder as train_budget_embedder with:
    output:
        **run_outputs(WssetRun("{dataset}", "{split}", "{method}", encoder="{encoder}")),
    wildcard_constraints:
        method="|".join(TRAINED_METHODS),
        encoder="|".join(WSSET_STUDIES.get("budget", {}).get("encoders", {})) or "no-budget-study",
    log:
        run_log(WssetRun("{dataset}", "{split}", "{method}", encoder="{encoder}")),
    benchmark:
        "benchmarks/logs/{dataset}/budget/{encoder}/split{split}/{method}/train.tsv"


# batch_runs (papers.wsset.batch_runs; wsset_common.smk batch_rules): the runs of one split of
# Tables I/II, or of one split of a figure study, in one job. `dmlrepro batch` runs each run's
# train_argv in one interpreter, bases before their transfer stages, each run with its own log;
# the outputs are the runs' own files, so every later rule reads what the single jobs would write.
for batch_rule in batch_rules():

    rule:
        name:
            batch_rule.name
        input:
            batch_inputs(batch_rule),
        output:
            **batch_outputs(batch_rule),
        wildcard_constraints:
            **batch_rule.constraints,
        params:
            cli=DMLREPRO,
            jobs=batch_jobs(batch_rule),
        priority: 10  # the longest jobs after the EMD shards: started first, the short ones fill in around them
        threads: WSSET["train"].get("threads", 1)
        resources:
            gpu=lambda w: 1 if WSSET["train"].get("device", "cpu") != "cpu" else 0,
            runtime=lambda w, rule=batch_rule: 1440 * len(batch_of(rule, w)),
        log:
            f"logs/{batch_rule.where}/batch.log",
        benchmark:
            f"benchmarks/logs/{batch_rule.where}/batch.tsv"
        conda:
            "../../../envs/train.yaml"
        shell:
            "{params.cli} batch --jobs {params.jobs:q} > {log} 2>&1"

    workflow.ruleorder(batch_rule.name, batch_rule.single_rule)  # a batched run's files: from its batch


# Ours+Ext. step 1: WSSET on every document of an unlabelled external corpus (no selection)
rule train_external_base:
    input:
        pointsets="results/wsset/{corpus}/pointsets.npz",
        emd="results/wsset/{corpus}/emd.npy",
    output:
        model="results/wsset/{corpus}/external_base/model.pt",
        history="results/wsset/{corpus}/external_base/history.csv",
        embeddings="results/wsset/{corpus}/external_base/embeddings.npy",
    wildcard_constraints:
        corpus="|".join(WSSET_CORPORA) or "no-external-corpus",
    params:
        cli=DMLREPRO,
        cfg=lambda w: json.dumps({"method_params": study_method_params("wsset", ""), "model": WSSET["model"],
                                  "train": method_train_cfg("wsset_ext")}, sort_keys=True),
        out_dir=subpath(output.model, parent=True),
    priority: 20  # short, but Ours+Ext.'s runs, and with batch_runs the longest batches, wait for it
    threads: WSSET["train"].get("threads", 1)
    resources:
        gpu=lambda w: 1 if WSSET["train"].get("device", "cpu") != "cpu" else 0,
        runtime=1440,
    log:
        "logs/{corpus}/external_base/train.log",
    benchmark:
        "benchmarks/logs/{corpus}/external_base/train.tsv"
    conda:
        "../../../envs/train.yaml"
    shell:
        "{params.cli} train --dataset {wildcards.corpus} --method wsset --all-documents"
        " --pointsets {input.pointsets} --emd {input.emd} --params {params.cfg:q}"
        " --out-dir {params.out_dir} --threads {threads} > {log} 2>&1"


# BERT_BASE (Tables I/II): fine-tune a pretrained language model on the raw text. Needs a GPU and
# internet (weights downloaded at run time); config/paper.yaml lists it, the embedded default not.
rule bert_finetune:
    input:
        raw=bert_raw_inputs,
        pointsets="results/wsset/{dataset}/pointsets.npz",
        splits="results/wsset/{dataset}/splits.npz",
    output:
        embeddings="results/wsset/{dataset}/split{split}/bert_base/embeddings.npy",
        history="results/wsset/{dataset}/split{split}/bert_base/history.csv",
        metrics="results/wsset/{dataset}/split{split}/bert_base/metrics.json",
    params:
        cli=DMLREPRO,
        cfg=lambda w: json.dumps(WSSET.get("bert", {}), sort_keys=True),
        split_cfg=lambda w: json.dumps(dataset_cfg(w.dataset).get("splits", {}), sort_keys=True),
        corpus=lambda w: catalog_name(w.dataset),
        out_dir=subpath(output.embeddings, parent=True),
        ks=recall_ks,
        knn_k=WSSET["evaluation"].get("knn_k", 10),
        flags=study_flags,
        data_note=data_note,
    threads: WSSET["train"].get("threads", 1)
    resources:
        gpu=1,
        runtime=720,
    log:
        "logs/{dataset}/split{split}/bert_base/train.log",
    benchmark:
        "benchmarks/logs/{dataset}/split{split}/bert_base/train.tsv"
    conda:
        "../../../envs/bert.yaml"
    shell:
        "{params.cli} bert --dataset {wildcards.dataset} --corpus {params.corpus} --split {wildcards.split}"
        " --raw-root resources/raw --pointsets {input.pointsets} --splits {input.splits}"
        " --split-params {params.split_cfg:q} --params {params.cfg:q} --out-dir {params.out_dir} {params.flags}"
        " --metrics-out {output.metrics} --recall-ks {params.ks} --knn-k {params.knn_k}"
        " --data-note={params.data_note:q} > {log} 2>&1"


# Fig. 4's dashed language-model line: BERT fine-tuned on the same small-data subsample
use rule bert_finetune as bert_study_finetune with:
    output:
        embeddings="results/wsset/{dataset}/{point}/split{split}/bert_base/embeddings.npy",
        history="results/wsset/{dataset}/{point}/split{split}/bert_base/history.csv",
        metrics="results/wsset/{dataset}/{point}/split{split}/bert_base/metrics.json",
    wildcard_constraints:
        point=point_pattern("small_data"),
    log:
        "logs/{dataset}/{point}/split{split}/bert_base/train.log",
    benchmark:
        "benchmarks/logs/{dataset}/{point}/split{split}/bert_base/train.tsv"
