rule evaluate_split:
    input:
        unpack(finetune_predictions),
        unpack(token_inputs(activations="dataset")),
        meta="data/{dataset}/meta.csv",
        splits="results/{dataset}/splits.csv",
        features=f"{FEATURES}/labelled.npz",
        teacher="results/{dataset}/split{split}/teacher.pt",
        students=lambda wildcards: expand("results/{dataset}/split{split}/students/{variant}.pt",
                                          variant=variants_of(wildcards), **wildcards),
    output:
        predictions="results/{dataset}/split{split}/predictions.csv",
        metrics="results/{dataset}/split{split}/metrics.csv",
        sensitivity="results/{dataset}/split{split}/sensitivity.csv",
        provenance="results/{dataset}/split{split}/evaluation.provenance.json",
    params:
        split="{split}",
        variants=variants_of,
        ridge_alphas=config["evaluation"]["ridge_alphas"],
        sensitivity=lambda wildcards: {"eps": config["evaluation"]["sensitivity_eps"],
                                       "large_gap": config["pairs"]["large_gap"], "tau": config["pairs"]["tau"],
                                       "k_fallback": config["pairs"]["k_fallback"],
                                       "training": training_probes(wildcards)},
    log:
        "logs/{dataset}/split{split}/evaluate_split.log",
    benchmark:
        "benchmarks/{dataset}/split{split}/evaluate_split.tsv"
    resources:
        mem_mb=4000,
        runtime=10,
    conda:
        ENV
    script:
        SCRIPT


rule summarize:
    input:
        metrics=per_split("results/{dataset}/split{split}/metrics.csv"),
        sensitivity=per_split("results/{dataset}/split{split}/sensitivity.csv"),
    output:
        metrics="results/{dataset}/metrics.csv",
        summary="results/{dataset}/summary.csv",
        markdown="results/{dataset}/summary.md",
        sensitivity="results/{dataset}/sensitivity.csv",
    params:
        dataset="{dataset}",
        backbone=BACKBONE,
        mode=feature_mode(),
        reference=config["ablation"]["reference"],
        test_fraction=config["splits"]["test_fraction"],
        family=[v for v in VARIANTS if v != config["ablation"]["reference"]],
        finetuned_reference=FINETUNED_REFERENCE,
        finetuned_family=[m for m in FINETUNED if m != FINETUNED_REFERENCE],
        bootstrap=config["evaluation"]["bootstrap"],
    log:
        "logs/{dataset}/summarize.log",
    benchmark:
        "benchmarks/{dataset}/summarize.tsv"
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV
    script:
        SCRIPT


rule claims:
    input:
        unpack(claims_inputs),
        metrics="results/{dataset}/metrics.csv",
        summary="results/{dataset}/summary.csv",
        sensitivity=per_split("results/{dataset}/split{split}/sensitivity.csv"),
        predictions=per_split("results/{dataset}/split{split}/predictions.csv"),
    output:
        table="results/{dataset}/claims.csv",
        readable=report("results/{dataset}/claims_readable.csv", caption="../report/claims.rst", category="1. Claims",
                        labels={"dataset": "{dataset}"}),
        markdown="results/{dataset}/claims.md",
        headline="results/{dataset}/headline.csv",
    params:
        dataset="{dataset}",
        backbone=BACKBONE,
        blocks=claims_blocks(),
        test_fraction=config["splits"]["test_fraction"],
        claimed_gain=lambda wildcards: config["comparison"]["claimed_gain"].get(DATASETS[wildcards.dataset]["kind"]),
        student=config["student"],
        synthetic_seeds=config["evaluation"]["synthetic_seeds"],
        bootstrap=config["evaluation"]["bootstrap"],
        headline=["ridge", "teacher", config["ablation"]["reference"], "full", *filter(None, [FINETUNED_REFERENCE]),
                  finetuned_name("full")],
    log:
        "logs/{dataset}/claims.log",
    benchmark:
        "benchmarks/{dataset}/claims.tsv"
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        ENV
    script:
        SCRIPT


rule evaluate_cross:
    input:
        unpack(cross_model_inputs),
        unpack(token_inputs(train_activations="train", test_activations="test")),
        train_meta="data/{train}/meta.csv",
        train_splits="results/{train}/splits.csv",
        train_features=labelled_features("{train}"),
        test_meta="data/{test}/meta.csv",
        test_features=labelled_features("{test}"),
    output:
        predictions="results/cross_dataset/{train}/{test}/split{split}/predictions.csv",
        metrics="results/cross_dataset/{train}/{test}/split{split}/metrics.csv",
        provenance="results/cross_dataset/{train}/{test}/split{split}/provenance.json",
    wildcard_constraints:
        train="[A-Za-z0-9_-]+",
        test="[A-Za-z0-9_-]+",
    params:
        split="{split}",
        models=CROSS["models"],
        students=lambda wildcards: [m for m in CROSS["models"] if m in VARIANTS],
        finetuned=[m for m in CROSS["models"] if m in FINETUNED],
        ridge_alphas=config["evaluation"]["ridge_alphas"],
        crops=config["crops"],
        batch_size=config["backbone"]["batch_size"],
        finetune={"device": config["finetune"]["device"]},
    log:
        "logs/cross_dataset/{train}/{test}/evaluate_cross_split{split}.log",
    benchmark:
        "benchmarks/cross_dataset/{train}/{test}/evaluate_cross_split{split}.tsv"
    resources:
        mem_mb=4000,
        runtime=10,
    conda:
        ENV
    script:
        SCRIPT


rule summarize_cross:
    input:
        metrics=cross_metrics,
        within=cross_within,
    output:
        table="results/cross_dataset/matrix.csv",
        markdown="results/cross_dataset/matrix.md",
    params:
        models=CROSS["models"],
        backbone=BACKBONE,
    log:
        "logs/cross_dataset/summarize_cross.log",
    benchmark:
        "benchmarks/cross_dataset/summarize_cross.tsv"
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV
    script:
        SCRIPT


rule sensitivity_sweep:
    input:
        unpack(token_inputs(activations="dataset")),
        meta="data/{dataset}/meta.csv",
        splits="results/{dataset}/splits.csv",
        features=f"{FEATURES}/labelled.npz",
        teacher=per_split("results/{dataset}/split{split}/teacher.pt"),
        students=every_student("results/{dataset}/split{split}/students/{variant}.pt"),
    output:
        sweep="results/{dataset}/sensitivity_sweep.csv",
    params:
        variants=list(VARIANTS),
        sweep=config["evaluation"]["sweep"],
        k_fallback=config["pairs"]["k_fallback"],
        large_gap=config["pairs"]["large_gap"],
    log:
        "logs/{dataset}/sensitivity_sweep.log",
    benchmark:
        "benchmarks/{dataset}/sensitivity_sweep.tsv"
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        ENV
    script:
        SCRIPT


rule compare_with_paper:
    input:
        summaries=expand("results/{dataset}/summary.csv", dataset=config["run"]),
    output:
        table=report("results/paper_comparison.csv", caption="../report/paper_comparison.rst", category="Paper comparison"),
        markdown="results/paper_comparison.md",
    params:
        comparison=config["comparison"],
        runs=comparison_runs(),
    log:
        "logs/compare_with_paper.log",
    benchmark:
        "benchmarks/compare_with_paper.tsv"
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        ENV
    script:
        SCRIPT
