rule export_model:
    input:
        unpack(export_inputs),
        model="results/{dataset}/splitall/students/full.pt",
        provenance="results/{dataset}/splitall/students/full.provenance.json",
        meta="data/{dataset}/meta.csv",
        licence="data/{dataset}/licence.json",
        summary="results/{dataset}/summary.csv",
    output:
        bundle=directory("results/{dataset}/model"),
    params:
        name="{dataset}",
        backbone=config["backbone"],
        crops=config["crops"],
        settings=deploy_settings,
        credit=dataset_credit,
        published=lambda wildcards: config["comparison"]["published"].get(DATASETS[wildcards.dataset]["kind"]),
    log:
        "logs/{dataset}/export_model.log",
    benchmark:
        "benchmarks/{dataset}/export_model.tsv"
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV
    script:
        SCRIPT


rule ship_model:
    input:
        bundle="results/{dataset}/model",
    output:
        shipped=directory("src/qfm_iqm/models/{dataset}"),
    log:
        "logs/{dataset}/ship_model.log",
    benchmark:
        "benchmarks/{dataset}/ship_model.tsv"
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV
    script:
        SCRIPT


# Copy the run's bundles into the package, as the models that ship with it: snakemake ship --configfile ...
rule ship:
    input:
        expand("src/qfm_iqm/models/{dataset}", dataset=config["run"]),
