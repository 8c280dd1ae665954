from qfm_iqm.config import active_settings, matching_on, resolve_variants, validate


SCHEMA = workflow.source_path("../schemas/config.schema.yaml")
validate(config, SCHEMA)

SCRIPT = "../scripts/run_stage.py"


wildcard_constraints:
    dataset="[A-Za-z0-9_-]+",  # dataset names, as the schema allows them
    split=r"\d+",


# Student variants: "full" (the student section) and the ablation's overrides of it.
VARIANTS = resolve_variants(config, SCHEMA)
SCATTER_MODELS = ["ridge", "teacher", "full"]
DATASETS = config["datasets"]
BACKBONE = config["backbone"]["name"]
CROPS = "c{n}s{size}r{seed}".format(**config["crops"]) + ("g" if config["crops"].get("global_view") else "")
FEATURES = f"results/{{dataset}}/features/{BACKBONE}/{CROPS}"


def names_of_kind(*kinds):
    """Wildcard regex matching the configured datasets of these kinds (matches nothing if none)."""
    names = [name for name, cfg in DATASETS.items() if cfg["kind"] in kinds]
    return "|".join(names) if names else "(?!)"


def acquisition_cfg(wildcards):
    """What building or preparing a dataset depends on: its entry less splits and pool."""
    return {k: v for k, v in DATASETS[wildcards.dataset].items() if k not in ("n_splits", "pool")}


def n_splits(dataset):
    return DATASETS[dataset]["n_splits"]


def subset_meta(wildcards):
    """The meta table of the labelled set or of the expansion pool."""
    pool = "pool/" if wildcards.subset == "pool" else ""
    return f"data/{wildcards.dataset}/{pool}meta.csv"


def backbone_weights(wildcards):
    """The converted package checkpoint when the config asks for it, else nothing to build."""
    if config["backbone"]["weights"] == "package":
        return f"results/weights/{BACKBONE}.pth"
    return []


def per_split(pattern):
    """Input function: ``pattern`` expanded over every split of the job's dataset."""
    return lambda wildcards: expand(pattern, dataset=wildcards.dataset, split=range(n_splits(wildcards.dataset)))


def uses_pool(student):
    """Whether a student config reads the teacher-labelled pool (distillation or pool memory)."""
    return student["distillation"]["kd_weight"] > 0 or (matching_on(student) and student["matching"]["memory"] == "train_pool")


def pool_inputs(wildcards):
    return {
        "pool_meta": f"data/{wildcards.dataset}/pool/meta.csv",
        "pool_features": expand(f"{FEATURES}/pool.npz", dataset=wildcards.dataset)[0],
        "pool_labels": f"results/{wildcards.dataset}/split{wildcards.split}/pool_labels.csv",
    }


def mining_inputs(wildcards):
    """The pool and its teacher labels when the memory bank includes them."""
    return pool_inputs(wildcards) if wildcards.memory == "train_pool" else {}


def student_inputs(wildcards):
    """The pool (when used) and the mined pairs (when matching is on) of one student variant."""
    return _student_inputs(VARIANTS[wildcards.variant], wildcards)


def finetune_inputs(wildcards):
    """A fine-tuned student reads what the full model reads, plus the backbone weights."""
    return {**_student_inputs(VARIANTS["full"], wildcards), "weights": backbone_weights(wildcards)}


def finetune_predictions(wildcards):
    """The fine-tuned student's test predictions, when fine-tune mode is on."""
    if config["finetune"]["enabled"]:
        return {"finetune": f"results/{wildcards.dataset}/split{wildcards.split}/finetune/predictions.csv"}
    return {}


def _student_inputs(student, wildcards):
    inputs = pool_inputs(wildcards) if uses_pool(student) else {}
    if matching_on(student):
        m = student["matching"]
        inputs["pairs"] = f"results/{wildcards.dataset}/split{wildcards.split}/pairs/{m['strategy']}_{m['memory']}.csv"
    return inputs


def matcher_params(wildcards):
    """The pair settings a partner strategy depends on (a change reruns only its mining)."""
    extra = {"random": ["seed"], "topk_mean": ["top_k"]}.get(wildcards.strategy, [])
    return {k: config["pairs"][k] for k in ["tau", "k_fallback", *extra]}


def all_targets():
    targets = []
    for name in config["run"]:
        targets += [f"results/{name}/summary.md", f"results/{name}/figures/pair_distance.png"]
        targets += expand("results/{dataset}/figures/scatter_{model}.png", dataset=name, model=SCATTER_MODELS)
        targets += expand("results/{dataset}/split{split}/pair_stats.json", dataset=name, split=range(n_splits(name)))
    return targets
