# Stage 3: train one self-supervised embedder per dataset x split x method (checkpointed, resumable).


rule train_embedder:
    input:
        pointsets="results/{dataset}/pointsets.npz",
        splits="results/{dataset}/splits.npz",
        emd="results/{dataset}/emd.npy",
    output:
        model="results/{dataset}/split{split}/{method}/model.pt",
        history="results/{dataset}/split{split}/{method}/history.csv",
        embeddings="results/{dataset}/split{split}/{method}/embeddings.npy",
    wildcard_constraints:
        method="|".join(LEARNED_METHODS),
    params:
        cli=DMLREPRO,
        cfg=train_params,
        out_dir=subpath(output.model, parent=True),
    threads: config["train"].get("threads", 1)
    resources:
        gpu=lambda w: 1 if config["train"].get("device", "cpu") != "cpu" else 0,
        runtime=1440,
    log:
        "logs/{dataset}/split{split}/{method}/train.log",
    benchmark:
        "benchmarks/logs/{dataset}/split{split}/{method}/train.tsv"
    conda:
        "../envs/train.yaml"
    shell:
        "{params.cli} train --dataset {wildcards.dataset} --method {wildcards.method} --split {wildcards.split}"
        " --pointsets {input.pointsets} --splits {input.splits} --emd {input.emd} --params {params.cfg:q}"
        " --out-dir {params.out_dir} --threads {threads} > {log} 2>&1"
