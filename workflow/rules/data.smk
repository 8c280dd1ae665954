rule convert_weights:
    output:
        weights=f"results/weights/{BACKBONE}.pth",
        sha256=f"results/weights/{BACKBONE}.sha256",
    params:
        backbone=BACKBONE,
    log:
        f"logs/convert_weights/{BACKBONE}.log",
    benchmark:
        f"benchmarks/convert_weights/{BACKBONE}.tsv"
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV
    script:
        SCRIPT


rule build_demo_dataset:
    output:
        meta="data/{dataset}/meta.csv",
        licence="data/{dataset}/licence.json",
        images=directory("data/{dataset}/images"),
    wildcard_constraints:
        dataset=names_of_kind("demo"),
    params:
        dataset=acquisition_cfg,
    log:
        "logs/{dataset}/build_demo_dataset.log",
    benchmark:
        "benchmarks/{dataset}/build_demo_dataset.tsv"
    resources:
        mem_mb=2000,
        runtime=20,
    conda:
        ENV
    script:
        SCRIPT


rule acquire_dataset:
    output:
        record="data/{dataset}/raw/acquired.json",
    wildcard_constraints:
        dataset=names_of_kind(*data.PUBLISHED, where=acquired),
    params:
        dataset="{dataset}",
        kind=lambda wildcards: DATASETS[wildcards.dataset]["kind"],
        source=source_cfg,
        downloads="data/{dataset}/downloads",
        policy=config["acquire"]["policy"],
        lock=config["acquire"]["lock"],
    log:
        "logs/{dataset}/acquire_dataset.log",
    benchmark:
        "benchmarks/{dataset}/acquire_dataset.tsv"
    resources:
        mem_mb=2000,
        runtime=600,
    conda:
        ENV
    script:
        SCRIPT


rule prepare_dataset:
    input:
        unpack(source_inputs),
    output:
        meta="data/{dataset}/meta.csv",
        licence="data/{dataset}/licence.json",
    wildcard_constraints:
        dataset=names_of_kind("labels", *data.PUBLISHED, where=lambda cfg: "resize" not in cfg),
    params:
        dataset=acquisition_cfg,
    log:
        "logs/{dataset}/prepare_dataset.log",
    benchmark:
        "benchmarks/{dataset}/prepare_dataset.tsv"
    resources:
        mem_mb=2000,
        runtime=20,
    conda:
        ENV
    script:
        SCRIPT


use rule prepare_dataset as prepare_resized_dataset with:
    output:
        meta="data/{dataset}/meta.csv",
        licence="data/{dataset}/licence.json",
        images=directory("data/{dataset}/images"),
    wildcard_constraints:
        dataset=names_of_kind(*data.PUBLISHED, where=lambda cfg: "resize" in cfg),
    log:
        "logs/{dataset}/prepare_resized_dataset.log",
    benchmark:
        "benchmarks/{dataset}/prepare_resized_dataset.tsv"
    threads: 4
    resources:
        mem_mb=4000,
        runtime=240,


rule build_expansion_pool:
    output:
        meta="data/{dataset}/pool/meta.csv",
        images=directory("data/{dataset}/pool/images"),
    params:
        pool=lambda wildcards: DATASETS[wildcards.dataset]["pool"],
    log:
        "logs/{dataset}/build_expansion_pool.log",
    benchmark:
        "benchmarks/{dataset}/build_expansion_pool.tsv"
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        ENV
    script:
        SCRIPT


rule make_splits:
    input:
        meta="data/{dataset}/meta.csv",
    output:
        splits="results/{dataset}/splits.csv",
    params:
        n_splits=lambda wildcards: n_splits(wildcards.dataset),
        scheme=lambda wildcards: DATASETS[wildcards.dataset]["split"],
        test_fraction=config["splits"]["test_fraction"],
        seed=config["splits"]["seed"],
    log:
        "logs/{dataset}/make_splits.log",
    benchmark:
        "benchmarks/{dataset}/make_splits.tsv"
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV
    script:
        SCRIPT
