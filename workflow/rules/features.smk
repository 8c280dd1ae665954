rule extract_features:
    input:
        meta=subset_meta,
        weights=backbone_weights,
    output:
        features=f"{FEATURES}/{{subset}}.npz",
        stats=f"{FEATURES}/{{subset}}.stats.json",
    wildcard_constraints:
        subset="labelled|pool",
    params:
        backbone=config["backbone"],
        crops=config["crops"],
    log:
        f"logs/{{dataset}}/extract_features/{BACKBONE}_{CROPS}_{{subset}}.log",
    benchmark:
        f"benchmarks/{{dataset}}/extract_features/{BACKBONE}_{CROPS}_{{subset}}.tsv"
    threads: 4
    resources:
        mem_mb=8000,
        runtime=120,
    conda:
        ENV
    script:
        SCRIPT


rule extract_activations:
    input:
        meta=subset_meta,
        weights=backbone_weights,
    output:
        activations=f"{ACTIVATIONS}/{{subset}}.npz",
        stats=f"{ACTIVATIONS}/{{subset}}.stats.json",
    wildcard_constraints:
        subset="labelled|pool",
    params:
        backbone=config["backbone"],
        crops=config["crops"],
        from_block=config["partial"]["from_block"],
    log:
        f"logs/{{dataset}}/extract_activations/{BACKBONE}_{CROPS}_{CUT}_{{subset}}.log",
    benchmark:
        f"benchmarks/{{dataset}}/extract_activations/{BACKBONE}_{CROPS}_{CUT}_{{subset}}.tsv"
    threads: 4
    resources:
        mem_mb=8000,
        runtime=120,
    conda:
        ENV
    script:
        SCRIPT
