rule plot_scatter:
    input:
        predictions=per_split("results/{dataset}/split{split}/predictions.csv"),
    output:
        png=report("results/{dataset}/figures/scatter_{model}.png", caption="../report/scatter.rst", category="Predictions"),
        pdf="results/{dataset}/figures/scatter_{model}.pdf",
    wildcard_constraints:
        model="|".join(SCATTER_MODELS),
    params:
        model="{model}",
        dataset="{dataset}",
        style=config["figures"],
    log:
        "logs/{dataset}/plot_scatter_{model}.log",
    benchmark:
        "benchmarks/{dataset}/plot_scatter_{model}.tsv"
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        SCRIPT


rule plot_pairs:
    input:
        sample="results/{dataset}/split0/pair_sample.csv",
    output:
        png=report("results/{dataset}/figures/pair_distance.png", caption="../report/pair_distance.rst", category="Observation"),
        pdf="results/{dataset}/figures/pair_distance.pdf",
    params:
        dataset="{dataset}",
        style=config["figures"],
    log:
        "logs/{dataset}/plot_pairs.log",
    benchmark:
        "benchmarks/{dataset}/plot_pairs.tsv"
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        SCRIPT
