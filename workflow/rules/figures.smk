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
    conda:
        ENV
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
    conda:
        ENV
    script:
        SCRIPT


rule plot_observation:
    input:
        unpack(token_inputs(reads_tokens(VARIANTS["full"]["arch"]), activations="dataset")),
        meta="data/{dataset}/meta.csv",
        splits="results/{dataset}/splits.csv",
        features=f"{FEATURES}/labelled.npz",
        model="results/{dataset}/split0/students/full.pt",
    output:
        png=report("results/{dataset}/figures/observation_gated.png", caption="../report/observation_gated.rst", category="Observation"),
        pdf="results/{dataset}/figures/observation_gated.pdf",
    params:
        dataset="{dataset}",
        observation={k: config["pairs"][k] for k in ("large_gap", "n_random", "seed")},
        style=config["figures"],
    log:
        "logs/{dataset}/plot_observation.log",
    benchmark:
        "benchmarks/{dataset}/plot_observation.tsv"
    resources:
        mem_mb=2000,
        runtime=5,
    conda:
        ENV
    script:
        SCRIPT


rule plot_ablation:
    input:
        summary="results/{dataset}/summary.csv",
    output:
        png=report("results/{dataset}/figures/ablation.png", caption="../report/ablation.rst", category="Ablation"),
        pdf="results/{dataset}/figures/ablation.pdf",
    params:
        dataset="{dataset}",
        reference=config["ablation"]["reference"],
        style=config["figures"],
    log:
        "logs/{dataset}/plot_ablation.log",
    benchmark:
        "benchmarks/{dataset}/plot_ablation.tsv"
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV
    script:
        SCRIPT


rule plot_sensitivity:
    input:
        sensitivity="results/{dataset}/sensitivity.csv",
        sweep="results/{dataset}/sensitivity_sweep.csv",
    output:
        bars=report("results/{dataset}/figures/sensitivity.png", caption="../report/sensitivity.rst", category="Sensitivity"),
        bars_pdf="results/{dataset}/figures/sensitivity.pdf",
        sweep=report("results/{dataset}/figures/sensitivity_sweep.png", caption="../report/sensitivity.rst", category="Sensitivity"),
        sweep_pdf="results/{dataset}/figures/sensitivity_sweep.pdf",
    params:
        dataset="{dataset}",
        tau=config["pairs"]["tau"],
        eps=config["evaluation"]["sensitivity_eps"],
        style=config["figures"],
    log:
        "logs/{dataset}/plot_sensitivity.log",
    benchmark:
        "benchmarks/{dataset}/plot_sensitivity.tsv"
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV
    script:
        SCRIPT


rule plot_attention:
    input:
        meta="data/{dataset}/meta.csv",
        splits="results/{dataset}/splits.csv",
        weights=backbone_weights,
        models=expand("results/{{dataset}}/split0/students/{model}.pt", model=ATTENTION_MODELS),
    output:
        png=report("results/{dataset}/figures/attention.png", caption="../report/attention.rst", category="Attention"),
        pdf="results/{dataset}/figures/attention.pdf",
    params:
        dataset="{dataset}",
        models=ATTENTION_MODELS,
        backbone=config["backbone"],
        crops=config["crops"],
        style=config["figures"],
    log:
        "logs/{dataset}/plot_attention.log",
    benchmark:
        "benchmarks/{dataset}/plot_attention.tsv"
    resources:
        mem_mb=4000,
        runtime=10,
    conda:
        ENV
    script:
        SCRIPT


rule plot_cross:
    input:
        table="results/cross_dataset/matrix.csv",
    output:
        png=report("results/cross_dataset/heatmap.png", caption="../report/cross_heatmap.rst", category="Cross-dataset"),
        pdf="results/cross_dataset/heatmap.pdf",
    params:
        models=CROSS["models"],
        backbone=BACKBONE,
        style=config["figures"],
    log:
        "logs/cross_dataset/plot_cross.log",
    benchmark:
        "benchmarks/cross_dataset/plot_cross.tsv"
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV
    script:
        SCRIPT


rule report_benchmarks:
    input:
        evaluation_targets(),
        figure_targets(),
    output:
        table=report("results/benchmarks.csv", caption="../report/benchmarks.rst", category="Benchmarks"),
    params:
        folder="benchmarks",
        rules=[rule.name for rule in workflow.rules],
    log:
        "logs/report_benchmarks.log",
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV
    script:
        SCRIPT


rule report_config:
    input:
        evaluation_targets(),  # written last, so that a run that fails leaves no configuration page behind
    output:
        config=report("results/config.yaml", caption="../report/config.rst", category="Configuration"),
    params:
        config=config,
    log:
        "logs/report_config.log",
    resources:
        mem_mb=500,
        runtime=5,
    conda:
        ENV
    script:
        SCRIPT
