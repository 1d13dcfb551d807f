# Stage 4: kNN accuracy, Recall@K (paper's definition) and the usual DML metrics of the exact-WMD
# baseline (learned runs are scored by their training job), and Fig. 5's query timing.


rule evaluate_wmd_knn:
    input:
        pointsets="results/wsset/{dataset}/pointsets.npz",
        splits="results/wsset/{dataset}/splits.npz",
        emd="results/wsset/{dataset}/emd.npy",
    output:
        "results/wsset/{dataset}/split{split}/wmd_knn/metrics.json",
    params:
        cli=DMLREPRO,
        ks=recall_ks,
        knn_k=WSSET["evaluation"].get("knn_k", 10),
    log:
        "logs/{dataset}/split{split}/wmd_knn/evaluate.log",
    conda:
        "../../../envs/evaluate.yaml"
    shell:
        "{params.cli} evaluate --dataset {wildcards.dataset} --method wmd_knn --split {wildcards.split}"
        " --pointsets {input.pointsets} --splits {input.splits} --emd {input.emd}"
        " --recall-ks {params.ks} --knn-k {params.knn_k} --out {output} > {log} 2>&1"


# Fig. 5: time per stage of one similarity search (text -> pointset, encoding, distances, total)
rule query_time:
    input:
        raw=raw_inputs,
        gallery="results/wsset/{dataset}/pointsets.npz",
        model=lambda w: f"results/wsset/{WSSET_STUDIES['query_time'].get('model_from', WSSET_DATASETS[0])}/split0/wsset/model.pt",
    output:
        table="results/wsset/query_time/{dataset}.csv",
        summary="results/wsset/query_time/{dataset}.json",
    params:
        cli=DMLREPRO,
        cfg=lambda w: build_cfg(w.dataset),
        n_queries=WSSET_STUDIES.get("query_time", {}).get("n_queries", 5),
        weight_feature=WSSET["model"].get("weight_feature", "count"),
    log:
        "logs/{dataset}/query_time.log",
    benchmark:
        "benchmarks/logs/{dataset}/query_time.tsv"
    conda:
        "../../../envs/evaluate.yaml"
    shell:
        "{params.cli} query-time --dataset {wildcards.dataset} --params {params.cfg:q} --raw-root resources/raw"
        " --gallery {input.gallery} --model {input.model} --weight-feature {params.weight_feature}"
        " --n-queries {params.n_queries} --table-out {output.table} --summary-out {output.summary} > {log} 2>&1"
