# Stage 3: train one embedder per dataset x split x method (checkpointed, resumable), and score it
# on its test split in the same job (metrics.json, as the evaluate command; one interpreter start
# per run instead of two). Transfer stages (Ours+Int., Ours+Ext.) take their starting model as input.


rule train_embedder:
    input:
        unpack(train_inputs),
    output:
        model="results/wsset/{dataset}/split{split}/{method}/model.pt",
        history="results/wsset/{dataset}/split{split}/{method}/history.csv",
        embeddings="results/wsset/{dataset}/split{split}/{method}/embeddings.npy",
        metrics="results/wsset/{dataset}/split{split}/{method}/metrics.json",
    wildcard_constraints:
        method="|".join(TRAINED_METHODS),
    params:
        cli=DMLREPRO,
        cfg=train_params,
        flags=train_flags,
        out_dir=subpath(output.model, parent=True),
        ks=recall_ks,
        knn_k=WSSET["evaluation"].get("knn_k", 10),
        data_note=data_note,
    threads: WSSET["train"].get("threads", 1)
    resources:
        gpu=lambda w: 1 if WSSET["train"].get("device", "cpu") != "cpu" else 0,
        runtime=1440,
    log:
        "logs/{dataset}/split{split}/{method}/train.log",
    benchmark:
        "benchmarks/logs/{dataset}/split{split}/{method}/train.tsv"
    conda:
        "../../../envs/train.yaml"
    shell:
        "{params.cli} train --dataset {wildcards.dataset} --method {wildcards.method} --split {wildcards.split}"
        " --pointsets {input.pointsets} --splits {input.splits} {params.flags} --params {params.cfg:q}"
        " --out-dir {params.out_dir} --threads {threads} --metrics-out {output.metrics} --recall-ks {params.ks}"
        " --knn-k {params.knn_k} --data-note={params.data_note:q} > {log} 2>&1"


# Figure studies: the same training at a study point, a smaller train set (Fig. 4) or another c
# (Fig. 6); the run directory is named by the point's key, its setting looked up in the config
use rule train_embedder as train_study_embedder with:
    output:
        model="results/wsset/{dataset}/{point}/split{split}/{method}/model.pt",
        history="results/wsset/{dataset}/{point}/split{split}/{method}/history.csv",
        embeddings="results/wsset/{dataset}/{point}/split{split}/{method}/embeddings.npy",
        metrics="results/wsset/{dataset}/{point}/split{split}/{method}/metrics.json",
    wildcard_constraints:
        method="|".join(TRAINED_METHODS),
        point=point_pattern("small_data", "c_grid"),
    log:
        "logs/{dataset}/{point}/split{split}/{method}/train.log",
    benchmark:
        "benchmarks/logs/{dataset}/{point}/split{split}/{method}/train.tsv"


# Training-budget study (papers/wsset/studies.py): one run of the largest budget per encoder, the
# encoder's model overrides looked up by its key, the test accuracy of every epoch recorded
use rule train_embedder as train_budget_embedder with:
    output:
        model="results/wsset/{dataset}/budget/{encoder}/split{split}/{method}/model.pt",
        history="results/wsset/{dataset}/budget/{encoder}/split{split}/{method}/history.csv",
        embeddings="results/wsset/{dataset}/budget/{encoder}/split{split}/{method}/embeddings.npy",
        metrics="results/wsset/{dataset}/budget/{encoder}/split{split}/{method}/metrics.json",
    wildcard_constraints:
        method="|".join(TRAINED_METHODS),
        encoder="|".join(WSSET_STUDIES.get("budget", {}).get("encoders", {})) or "no-budget-study",
    params:
        cli=DMLREPRO,
        cfg=budget_train_params,
        flags=train_flags,
        out_dir=subpath(output.model, parent=True),
        ks=recall_ks,
        knn_k=WSSET["evaluation"].get("knn_k", 10),
        data_note=lambda w: f"budget study, encoder {w.encoder}",
    log:
        "logs/{dataset}/budget/{encoder}/split{split}/{method}/train.log",
    benchmark:
        "benchmarks/logs/{dataset}/budget/{encoder}/split{split}/{method}/train.tsv"


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
