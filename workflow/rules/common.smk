from qfm_iqm.config import validate


validate(config, workflow.source_path("../schemas/config.schema.yaml"))

SCRIPT = "../scripts/run_stage.py"
MODELS = ["ridge", "teacher", "student"]
DATASETS = config["datasets"]
BACKBONE = config["backbone"]["name"]
CROPS = "c{n}s{size}r{seed}".format(**config["crops"])
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


def all_targets():
    targets = []
    for name in config["run"]:
        targets += [f"results/{name}/summary.md", f"results/{name}/figures/pair_distance.png"]
        targets += expand("results/{dataset}/figures/scatter_{model}.png", dataset=name, model=MODELS)
        targets += expand("results/{dataset}/split{split}/pairs.csv", dataset=name, split=range(n_splits(name)))
    return targets
