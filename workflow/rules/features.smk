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
    script:
        SCRIPT
