rule train_teacher:
    input:
        meta="data/{dataset}/meta.csv",
        splits="results/{dataset}/splits.csv",
        features=f"{FEATURES}/labelled.npz",
    output:
        model="results/{dataset}/split{split}/teacher.pt",
        log="results/{dataset}/split{split}/teacher_log.csv",
    params:
        split="{split}",
        teacher=config["teacher"],
    log:
        "logs/{dataset}/split{split}/train_teacher.log",
    benchmark:
        "benchmarks/{dataset}/split{split}/train_teacher.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    script:
        SCRIPT


rule train_student:
    input:
        meta="data/{dataset}/meta.csv",
        splits="results/{dataset}/splits.csv",
        features=f"{FEATURES}/labelled.npz",
        pool_meta="data/{dataset}/pool/meta.csv",
        pool_features=f"{FEATURES}/pool.npz",
        teacher="results/{dataset}/split{split}/teacher.pt",
        pairs="results/{dataset}/split{split}/pairs.csv",
    output:
        model="results/{dataset}/split{split}/student.pt",
        log="results/{dataset}/split{split}/student_log.csv",
        pool_labels="results/{dataset}/split{split}/pool_labels.csv",
    params:
        split="{split}",
        student=config["student"],
    log:
        "logs/{dataset}/split{split}/train_student.log",
    benchmark:
        "benchmarks/{dataset}/split{split}/train_student.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    script:
        SCRIPT
