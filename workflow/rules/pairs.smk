rule pair_observation:
    input:
        meta="data/{dataset}/meta.csv",
        splits="results/{dataset}/splits.csv",
        features=f"{FEATURES}/labelled.npz",
    output:
        stats="results/{dataset}/split{split}/pair_stats.json",
        sample="results/{dataset}/split{split}/pair_sample.csv",
    params:
        split="{split}",
        observation={k: config["pairs"][k] for k in ("large_gap", "n_random", "seed")},
    log:
        "logs/{dataset}/split{split}/pair_observation.log",
    benchmark:
        "benchmarks/{dataset}/split{split}/pair_observation.tsv"
    resources:
        mem_mb=4000,
        runtime=10,
    conda:
        ENV
    script:
        SCRIPT


rule mine_pairs:
    input:
        unpack(split_table),
        unpack(mining_inputs),
        meta="data/{dataset}/meta.csv",
        features=f"{FEATURES}/labelled.npz",
    output:
        pairs="results/{dataset}/split{split}/pairs/{strategy}_{memory}.csv",
    wildcard_constraints:
        strategy="farthest|random|topk_mean",
        memory="train|train_pool",
    params:
        split="{split}",
        strategy="{strategy}",
        memory="{memory}",
        matcher=matcher_params,
    log:
        "logs/{dataset}/split{split}/mine_pairs_{strategy}_{memory}.log",
    benchmark:
        "benchmarks/{dataset}/split{split}/mine_pairs_{strategy}_{memory}.tsv"
    resources:
        mem_mb=4000,
        runtime=10,
    conda:
        ENV
    script:
        SCRIPT
