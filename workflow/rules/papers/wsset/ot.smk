# Stage 2: exact all-pairs WMD in shards (one job each, resumable), then one symmetric matrix.


rule emd_shard:
    input:
        "results/wsset/{dataset}/pointsets.npz",
    output:
        "results/wsset/{dataset}/emd/shard_{shard}_of_{n}.npz",
    params:
        cli=DMLREPRO,
        checkpoint_seconds=WSSET.get("ot", {}).get("checkpoint_seconds", 60),
        engine=WSSET.get("ot", {}).get("engine", "exact"),
        sinkhorn=json.dumps(WSSET.get("ot", {}).get("sinkhorn", {}), sort_keys=True),
        device=WSSET.get("ot", {}).get("device", "cpu"),
    log:
        "logs/{dataset}/emd/shard_{shard}_of_{n}.log",
    benchmark:
        "benchmarks/logs/{dataset}/emd_shard_{shard}_of_{n}.tsv"
    # the longest jobs, and every WSSET run waits for them: start them first, so that the short
    # image-paper jobs fill the cores around them instead of leaving one idle at the end
    priority: 50
    threads: WSSET.get("ot", {}).get("threads", 1)
    resources:
        runtime=240,
        gpu=lambda w: 1 if WSSET.get("ot", {}).get("device", "cpu") not in ("cpu", "auto") else 0,
    conda:
        "../../../envs/ot.yaml"
    shell:
        # torch reads OMP_WAIT_POLICY at start: spinning OpenMP threads made CPU Sinkhorn crawl
        "OMP_WAIT_POLICY=PASSIVE {params.cli} emd-shard --pointsets {input} --shard {wildcards.shard}"
        " --n-shards {wildcards.n} --out {output} --checkpoint-seconds {params.checkpoint_seconds}"
        " --processes {threads} --engine {params.engine} --sinkhorn-options {params.sinkhorn:q}"
        " --device {params.device} > {log} 2>&1"


rule merge_emd:
    input:
        emd_shards,
    output:
        emd="results/wsset/{dataset}/emd.npy",
        rwmd="results/wsset/{dataset}/rwmd.npy",
    params:
        cli=DMLREPRO,
    priority: 50  # as its shards: every WSSET run waits for it
    log:
        "logs/{dataset}/emd_merge.log",
    conda:
        "../../../envs/ot.yaml"
    shell:
        "{params.cli} emd-merge --shards {input} --emd-out {output.emd} --rwmd-out {output.rwmd} > {log} 2>&1"
