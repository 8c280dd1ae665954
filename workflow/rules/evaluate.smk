rule evaluate_split:
    input:
        meta="data/{dataset}/meta.csv",
        splits="results/{dataset}/splits.csv",
        features=f"{FEATURES}/labelled.npz",
        teacher="results/{dataset}/split{split}/teacher.pt",
        student="results/{dataset}/split{split}/student.pt",
    output:
        predictions="results/{dataset}/split{split}/predictions.csv",
        metrics="results/{dataset}/split{split}/metrics.csv",
    params:
        split="{split}",
        ridge_alphas=config["evaluation"]["ridge_alphas"],
    log:
        "logs/{dataset}/split{split}/evaluate_split.log",
    benchmark:
        "benchmarks/{dataset}/split{split}/evaluate_split.tsv"
    resources:
        mem_mb=4000,
        runtime=10,
    script:
        SCRIPT


rule summarize:
    input:
        metrics=per_split("results/{dataset}/split{split}/metrics.csv"),
    output:
        metrics="results/{dataset}/metrics.csv",
        summary="results/{dataset}/summary.csv",
        markdown="results/{dataset}/summary.md",
    params:
        dataset="{dataset}",
        backbone=BACKBONE,
    log:
        "logs/{dataset}/summarize.log",
    benchmark:
        "benchmarks/{dataset}/summarize.tsv"
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        SCRIPT
