# Stage 4: kNN accuracy, Recall@K (paper's definition) and the usual DML metrics per run.


rule evaluate_embedder:
    input:
        pointsets="results/{dataset}/pointsets.npz",
        splits="results/{dataset}/splits.npz",
        embeddings="results/{dataset}/split{split}/{method}/embeddings.npy",
    output:
        "results/{dataset}/split{split}/{method}/metrics.json",
    wildcard_constraints:
        method="|".join(LEARNED_METHODS),
    params:
        cli=DMLREPRO,
        ks=recall_ks,
        knn_k=config["evaluation"].get("knn_k", 10),
    log:
        "logs/{dataset}/split{split}/{method}/evaluate.log",
    conda:
        "../envs/evaluate.yaml"
    shell:
        "{params.cli} evaluate --dataset {wildcards.dataset} --method {wildcards.method} --split {wildcards.split}"
        " --pointsets {input.pointsets} --splits {input.splits} --embeddings {input.embeddings}"
        " --recall-ks {params.ks} --knn-k {params.knn_k} --out {output} > {log} 2>&1"


rule evaluate_wmd_knn:
    input:
        pointsets="results/{dataset}/pointsets.npz",
        splits="results/{dataset}/splits.npz",
        emd="results/{dataset}/emd.npy",
    output:
        "results/{dataset}/split{split}/wmd_knn/metrics.json",
    params:
        cli=DMLREPRO,
        ks=recall_ks,
        knn_k=config["evaluation"].get("knn_k", 10),
    log:
        "logs/{dataset}/split{split}/wmd_knn/evaluate.log",
    conda:
        "../envs/evaluate.yaml"
    shell:
        "{params.cli} evaluate --dataset {wildcards.dataset} --method wmd_knn --split {wildcards.split}"
        " --pointsets {input.pointsets} --splits {input.splits} --emd {input.emd}"
        " --recall-ks {params.ks} --knn-k {params.knn_k} --out {output} > {log} 2>&1"
