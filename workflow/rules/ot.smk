# Stage 2: exact all-pairs WMD in shards (one job each, resumable), then one symmetric matrix.


rule emd_shard:
    input:
        "results/{dataset}/pointsets.npz",
    output:
        "results/{dataset}/emd/shard_{shard}_of_{n}.npz",
    params:
        cli=DMLREPRO,
        checkpoint_seconds=config.get("ot", {}).get("checkpoint_seconds", 60),
    log:
        "logs/{dataset}/emd/shard_{shard}_of_{n}.log",
    benchmark:
        "benchmarks/logs/{dataset}/emd_shard_{shard}_of_{n}.tsv"
    threads: config.get("ot", {}).get("threads", 1)
    resources:
        runtime=240,
    conda:
        "../envs/ot.yaml"
    shell:
        "{params.cli} emd-shard --pointsets {input} --shard {wildcards.shard} --n-shards {wildcards.n}"
        " --out {output} --checkpoint-seconds {params.checkpoint_seconds} --processes {threads} > {log} 2>&1"


rule merge_emd:
    input:
        emd_shards,
    output:
        emd="results/{dataset}/emd.npy",
        rwmd="results/{dataset}/rwmd.npy",
    params:
        cli=DMLREPRO,
    log:
        "logs/{dataset}/emd_merge.log",
    conda:
        "../envs/ot.yaml"
    shell:
        "{params.cli} emd-merge --shards {input} --emd-out {output.emd} --rwmd-out {output.rwmd} > {log} 2>&1"
