rule train_teacher:
    input:
        unpack(split_table),
        unpack(model_weights(config["teacher"]["arch"])),
        meta="data/{dataset}/meta.csv",
        features=model_cache(config["teacher"]["arch"]),
    output:
        model="results/{dataset}/split{split}/teacher.pt",
        log="results/{dataset}/split{split}/teacher_log.csv",
        provenance="results/{dataset}/split{split}/teacher.provenance.json",
    params:
        split="{split}",
        teacher=config["teacher"],
        model=model_settings(config["teacher"]["arch"]),
    log:
        "logs/{dataset}/split{split}/train_teacher.log",
    benchmark:
        "benchmarks/{dataset}/split{split}/train_teacher.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        ENV
    script:
        SCRIPT


rule label_pool:
    input:
        pool_meta="data/{dataset}/pool/meta.csv",
        pool_features=model_cache(config["teacher"]["arch"], "pool"),
        teacher="results/{dataset}/split{split}/teacher.pt",
    output:
        labels="results/{dataset}/split{split}/pool_labels.csv",
    log:
        "logs/{dataset}/split{split}/label_pool.log",
    benchmark:
        "benchmarks/{dataset}/split{split}/label_pool.tsv"
    resources:
        mem_mb=4000,
        runtime=10,
    conda:
        ENV
    script:
        SCRIPT


rule train_student:
    input:
        unpack(split_table),
        unpack(student_inputs),
        meta="data/{dataset}/meta.csv",
    output:
        model="results/{dataset}/split{split}/students/{variant}.pt",
        log="results/{dataset}/split{split}/students/{variant}_log.csv",
        info="results/{dataset}/split{split}/students/{variant}.json",
        provenance="results/{dataset}/split{split}/students/{variant}.provenance.json",
    wildcard_constraints:
        variant="|".join(VARIANTS),
    params:
        split="{split}",
        student=lambda wildcards: active_settings(VARIANTS[wildcards.variant]),
        model=lambda wildcards: model_settings(VARIANTS[wildcards.variant]["arch"]),
        seeds=config["evaluation"]["seeds"],
    log:
        "logs/{dataset}/split{split}/train_student_{variant}.log",
    benchmark:
        "benchmarks/{dataset}/split{split}/train_student_{variant}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    conda:
        ENV
    script:
        SCRIPT


rule finetune_student:
    input:
        unpack(split_table),
        unpack(finetune_inputs),
        meta="data/{dataset}/meta.csv",
    output:
        model="results/{dataset}/split{split}/{finetuned}/model.pt",
        log="results/{dataset}/split{split}/{finetuned}/log.csv",
        info="results/{dataset}/split{split}/{finetuned}/info.json",
        predictions="results/{dataset}/split{split}/{finetuned}/predictions.csv",
        provenance="results/{dataset}/split{split}/{finetuned}/provenance.json",
    wildcard_constraints:
        finetuned="|".join(FINETUNED) or "(?!)",
    params:
        split="{split}",
        name="{finetuned}",
        student=lambda wildcards: active_settings(FINETUNED[wildcards.finetuned]),
        model=lambda wildcards: model_settings(FINETUNED[wildcards.finetuned]["arch"]),
        finetune=FINETUNE_TRAINING,
        backbone=config["backbone"],
        crops=config["crops"],
    log:
        "logs/{dataset}/split{split}/finetune_student_{finetuned}.log",
    benchmark:
        "benchmarks/{dataset}/split{split}/finetune_student_{finetuned}.tsv"
    threads: 4
    resources:
        mem_mb=16000,
        runtime=240,
        gpu=1 if config["finetune"]["device"] != "cpu" else 0,
    conda:
        ENV
    script:
        SCRIPT


rule finetune_sensitivity:
    input:
        unpack(split_table),
        models=lambda wildcards: expand("results/{dataset}/split{split}/{finetuned}/model.pt",
                                        finetuned=finetuned_of(wildcards), **wildcards),
        meta="data/{dataset}/meta.csv",
        features=f"{FEATURES}/labelled.npz",
    output:
        sensitivity="results/{dataset}/split{split}/finetune_sensitivity.csv",
    params:
        split="{split}",
        names=finetuned_of,
        crops=config["crops"],
        test_crops=config["finetune"]["test_crops"],
        probes=finetune_probes,
        sensitivity={"large_gap": config["pairs"]["large_gap"], "tau": config["pairs"]["tau"],
                     "k_fallback": config["pairs"]["k_fallback"]},
        batch_size=config["backbone"]["batch_size"],
        device=config["finetune"]["device"],
    log:
        "logs/{dataset}/split{split}/finetune_sensitivity.log",
    benchmark:
        "benchmarks/{dataset}/split{split}/finetune_sensitivity.tsv"
    resources:
        mem_mb=8000,
        runtime=30,
        gpu=1 if config["finetune"]["device"] != "cpu" else 0,
    conda:
        ENV
    script:
        SCRIPT
