# Inputs every paper may read: raw files (mirror or download, sha256 verified), prepared image
# datasets, ImageNet weights.


rule fetch_raw:
    output:
        "resources/raw/{relpath}",
    params:
        cli=DMLREPRO,
        mirror=config.get("data", {}).get("mirror") or "",
        no_download="" if config.get("data", {}).get("allow_download", True) else "--no-download",
    log:
        "logs/fetch/{relpath}.log",
    conda:
        "../envs/data.yaml"
    shell:
        "{params.cli} fetch --relpath {wildcards.relpath:q} --dest resources/raw --mirror {params.mirror:q}"
        " {params.no_download} > {log:q} 2>&1"


rule prepare_images:
    # image datasets: archives extracted (atomically) and counts checked against the papers' splits
    input:
        lambda w: image_raw_inputs(w.image_data),
    output:
        "resources/images/{image_data}.json",
    params:
        cli=DMLREPRO,
        source=lambda w: image_source_args(w.image_data),
    log:
        "logs/images/{image_data}/prepare.log",
    conda:
        "../envs/data.yaml"
    shell:
        "{params.cli} image-prepare --dataset {wildcards.image_data} {params.source}"
        " --dest resources/images --stamp {output} > {log} 2>&1"


rule fetch_weights:
    # ImageNet weights of a backbone (models/images catalog: URL and checksum)
    output:
        "resources/weights/imagenet/{weights_file}",
    params:
        cli=DMLREPRO,
        name=lambda w: weights_name(f"imagenet/{w.weights_file}"),
        mirror=config.get("data", {}).get("mirror") or "",
        no_download="" if config.get("data", {}).get("allow_download", True) else "--no-download",
    log:
        "logs/weights/{weights_file}.log",
    conda:
        "../envs/data.yaml"
    shell:
        "{params.cli} fetch-weights --name {params.name} --dest resources/weights --mirror {params.mirror:q}"
        " {params.no_download} > {log} 2>&1"
