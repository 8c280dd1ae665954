import dataclasses
import sys

from qfm_iqm.data import registry as data
from qfm_iqm.data.labels import listed_images
from qfm_iqm.data.lock import DigestLock
from qfm_iqm.data.plan import plan_text
from qfm_iqm.data.sources import with_files
from qfm_iqm.features.devices import check_device
from qfm_iqm.features.cache import cache_dir, crops_tag, cut_tag
from qfm_iqm.pipeline.provenance import requested_devices
from qfm_iqm.settings import (SCHEMA, active_settings, check_cross_dataset, check_feature_recipe, check_splits,
                              finetune_training, finetuned_name, finetuned_reference, finetuned_variants, matching_on,
                              load_config_file, resolve_variants, resolve_weights, split_finetuned, split_variants,
                              validate)
from qfm_iqm.method.memory import WITH_POOL, uses_pool


for _file in workflow.configfiles:
    load_config_file(_file)  # Snakemake keeps the last of a key repeated in one section; this names both lines
validate(config, SCHEMA)  # the package's schema; also fills in the schema's defaults of the keys the config leaves out

SCRIPT = "../scripts/run_stage.py"
ENV = "../envs/qfm-iqm.yaml"  # every job's software under --sdm conda


wildcard_constraints:
    dataset="[A-Za-z0-9_-]+",  # dataset names, as the schema allows them
    split=r"\d+|all",  # "all": every image trains the final, deployable model


# Student variants: "full" (the student section) and the ablation's overrides of it.
VARIANTS = resolve_variants(config, SCHEMA)
# Fine-tune mode's students: model name ("finetune", "finetune_<variant>") -> student config (none when it is off).
FINETUNED = finetuned_variants(config, SCHEMA)
FINETUNED_REFERENCE = finetuned_reference(config, FINETUNED)
FINETUNE_TRAINING = finetune_training(config["finetune"])  # how they train
SCATTER_MODELS = ["ridge", "teacher", "full"]
ATTENTION_MODELS = ["baseline", "full"] if "baseline" in VARIANTS else ["full"]
DATASETS = config["datasets"]
CROSS = config["cross_dataset"]
check_splits(DATASETS)
check_cross_dataset(config, VARIANTS, FINETUNED)
check_feature_recipe(config, VARIANTS, FINETUNED)
for _name, _cfg in DATASETS.items():
    if "options" in _cfg:
        data.check_options(_cfg["kind"], _cfg["options"], f"datasets.{_name}.options")
BACKBONE = config["backbone"]["name"]
CROPS = crops_tag(config["crops"])
FEATURES = cache_dir("{dataset}", BACKBONE, config["crops"])
CUT = cut_tag(config["partial"]["from_block"])
ACTIVATIONS = cache_dir("{dataset}", BACKBONE, config["crops"], config["partial"]["from_block"])


def names_of_kind(*kinds, where=lambda cfg: True):
    """Wildcard regex matching the configured datasets of these kinds (and ``where``); matches nothing if none."""
    names = [name for name, cfg in DATASETS.items() if cfg["kind"] in kinds and where(cfg)]
    return "|".join(names) if names else "(?!)"


def acquired(cfg):
    """Whether the workflow acquires a published dataset itself (no local ``root`` configured)."""
    return "root" not in cfg


def dataset_source(name):
    """Where a published dataset comes from: its kind's official source, with the configured ``files`` instead."""
    cfg = DATASETS[name]
    return with_files(data.KINDS[cfg["kind"]].source, cfg.get("files"))


def state_acquisition_plan():
    """Before any work, print what acquiring the datasets still missing will download and unpack (also in a dry
    run), from the sizes in their source records and the lock."""
    todo = [(name, cfg["kind"], dataset_source(name)) for name, cfg in DATASETS.items()
            if cfg["kind"] in data.PUBLISHED and acquired(cfg) and not os.path.exists(f"data/{name}/raw/acquired.json")]
    if todo and workflow.is_main_process:
        print(plan_text(todo, DigestLock(config["acquire"]["lock"]), config["acquire"]["policy"]), file=sys.stderr)


def training_images(name):
    """A dataset's training images per split, for the dry run: the test fraction taken from its published (or
    configured ``expected_count``) size, approximate where splits go by reference; None when not known in advance."""
    cfg = DATASETS[name]
    kind = data.KINDS.get(cfg["kind"])
    count = cfg.get("expected_count") or (kind.expected_count if kind else None)
    if not count or cfg.get("split") == "official":
        return None
    return count - max(1, round(config["splits"]["test_fraction"] * count))


def state_finetune_plan():
    """Before any work (also in a dry run), in fine-tune mode: per fine-tuned model, its job count, how it trains
    (``recipe_text``: epochs, steps per epoch, the lr schedule, precision) and, on a GPU, the memory one of its jobs is
    expected to need (``gpu_memory_estimate``; Snakemake's job stats give the rest)."""
    section = config["finetune"]
    if not FINETUNED or not workflow.is_main_process:
        return
    from qfm_iqm.method.finetune import gpu_memory_estimate, recipe_text, student_config  # imports torch and timm
    from qfm_iqm.method.partial import partial_spec

    gpu = section["device"] != "cpu"
    lines = [f"Fine-tune mode on {section['device']}" + (", one GPU per job (memory: estimates; "
                                                         "bench/gpu_paper_step.py measures):" if gpu else ":")]
    for name, student in FINETUNED.items():
        jobs = sum(name in split_finetuned(config, FINETUNED, split) for dataset in config["run"]
                   for split in range(n_splits(dataset)))
        cfg = student_config(student, section, config["crops"]["size"], partial_spec(model_settings(student["arch"])))
        images = cfg.batch_size * (2 if cfg.kd_weight > 0 else 1)
        gib = gpu_memory_estimate(BACKBONE, cfg.crop, images, cfg.precision) if gpu else None
        memory = f", about {gib:.1f} GiB of GPU memory each" if gib else ""
        recipe = recipe_text(cfg, {dataset: training_images(dataset) for dataset in config["run"]})
        lines += [f"  {name:<24} {jobs:>4} jobs, {images} images with gradients per step{memory}",
                  *(f"    {line}" for line in recipe.splitlines())]
    print("\n".join(lines), file=sys.stderr)


def check_job_devices():
    """When a run that executes its jobs here starts (never in a dry run): every device a job still to run asks for
    is one torch sees on this machine, so that a wrong one stops the run before any job, naming its config key.
    Jobs sent to a cluster check theirs where they run (``qfm_iqm.pipeline.runner``)."""
    if not workflow.local_exec:
        return
    requested = {}
    for job in workflow.dag.needrun_jobs():
        requested.update(requested_devices(dict(job.params.items())))
    for key, name in requested.items():
        check_device(name, f"config key '{key}'")


def check_hub_backbones():
    """When a run that executes its jobs here starts (never in a dry run): a job still to run that builds a backbone
    from timm's hub finds its weights cached or the hub reachable, else the run stops before any job with one line
    that names the model and the ways out (``check_hub_weights``). Jobs on a cluster check where they run."""
    if not workflow.local_exec:
        return
    from qfm_iqm.features.backbone import check_hub_weights  # imports torch: only runs that start pay for it

    for name in {p["backbone"]["name"] for p in (dict(job.params.items()) for job in workflow.dag.needrun_jobs())
                 if isinstance(p.get("backbone"), dict) and p["backbone"].get("weights") == "hub"}:
        check_hub_weights(name)


def dataset_root(name):
    """Where a published dataset's official layout is: the configured root, or under data/<name>/raw."""
    cfg = DATASETS[name]
    return cfg.get("root") or os.path.join(f"data/{name}/raw", data.KINDS[cfg["kind"]].source.subdir)


def source_cfg(wildcards):
    """What acquiring a dataset depends on: its source (``dataset_source``) as a plain mapping."""
    source = dataclasses.asdict(dataset_source(wildcards.dataset))
    for key in ("notice", "citation"):  # what travels with a trained model, not how the files are acquired
        source.pop(key)
    return source


def source_inputs(wildcards):
    """The files a dataset is prepared from, so that editing or replacing one reruns its preparation and
    everything after it: a label file and the images it lists (not the rest of their folder), the official
    layout under a configured ``root``, or the acquisition record of a dataset the workflow acquires itself.
    That record is ``ancient``: acquisition yields the same verified files whenever it runs (another policy, a
    mirror, a deleted ``raw/``), so rerunning it does not rerun what was prepared from them."""
    cfg = DATASETS[wildcards.dataset]
    if cfg["kind"] == "labels":
        images = listed_images(cfg["labels"], cfg["images"], cfg["image_column"])
        return {"labels": cfg["labels"], "images": images or [cfg["images"]]}
    if acquired(cfg):
        return {"acquired": ancient(f"data/{wildcards.dataset}/raw/acquired.json")}
    return {"layout": [os.path.join(cfg["root"], path) for path in data.KINDS[cfg["kind"]].source.layout]}


def acquisition_cfg(wildcards):
    """What building or preparing a dataset depends on: its entry less splits, pool and download
    files, with the root and the expected count resolved for published datasets."""
    name = wildcards.dataset
    cfg = {k: v for k, v in DATASETS[name].items() if k not in ("n_splits", "pool", "split", "files")}
    if cfg["kind"] in data.PUBLISHED:
        cfg["root"] = dataset_root(name)
        cfg.setdefault("expected_count", data.KINDS[cfg["kind"]].expected_count)
    return cfg


def n_splits(dataset):
    return DATASETS[dataset]["n_splits"]


def split_table(wildcards):
    """The splits table a job of one split reads; the final model (split "all") trains on every image, without it."""
    return {} if wildcards.split == "all" else {"splits": f"results/{wildcards.dataset}/splits.csv"}


def subset_meta(wildcards):
    """The meta table of the labelled set or of the expansion pool."""
    pool = "pool/" if wildcards.subset == "pool" else ""
    return f"data/{wildcards.dataset}/{pool}meta.csv"


def backbone_weights(wildcards):
    """The converted package checkpoint when the config asks for it, else nothing to build."""
    if config["backbone"]["weights"] == "package":
        return f"results/weights/{BACKBONE}.pth"
    return []


def reads_tokens(arch):
    """Whether a model of ``arch`` is a decoder over tokens (partial fine-tune on cached activations)."""
    return arch["head"] == "decoder"


TOKEN_MODELS = reads_tokens(config["teacher"]["arch"]) or any(reads_tokens(v["arch"]) for v in VARIANTS.values())


def model_cache(arch, subset="labelled"):
    """The cache a model of ``arch`` trains on: cached activations for a decoder, else pooled features."""
    return f"{ACTIVATIONS if reads_tokens(arch) else FEATURES}/{subset}.npz"


def model_settings(arch):
    """What building a model of ``arch`` depends on besides ``arch``: the backbone and the ``partial`` section (its
    ``from_block``: decoders only)."""
    return {"backbone": config["backbone"], "partial": config["partial"]} if reads_tokens(arch) else {}


def model_weights(arch):
    """Backbone weights a decoder's trainable top starts from (built by the workflow when ``package``)."""
    return (lambda wildcards: {"weights": backbone_weights(wildcards)}) if reads_tokens(arch) else (lambda wildcards: {})


def token_inputs(when=TOKEN_MODELS, **keys):
    """Input function for stages that evaluate models: input key -> the wildcard naming the dataset whose
    cached labelled activations it is, ``when`` a model they read reads tokens (else nothing)."""
    def inputs(wildcards):
        if not when:
            return {}
        return {key: f"{ACTIVATIONS.format(dataset=wildcards[name])}/labelled.npz" for key, name in keys.items()}

    return inputs


def per_split(pattern, **extra):
    """Input function: ``pattern`` expanded over every split of the job's dataset (and ``extra`` wildcards)."""
    return lambda wildcards: expand(pattern, dataset=wildcards.dataset, split=range(n_splits(wildcards.dataset)),
                                    **extra)


def variants_of(wildcards):
    """The student variants trained on the job's split (``ablation.splits``)."""
    return split_variants(config, VARIANTS, int(wildcards.split))


def every_student(pattern):
    """Input function: ``pattern`` (wildcards dataset, split, variant) for every split and the variants it trains."""
    return lambda wildcards: [pattern.format(dataset=wildcards.dataset, split=split, variant=variant)
                              for split in range(n_splits(wildcards.dataset))
                              for variant in split_variants(config, VARIANTS, split)]


def pool_inputs(wildcards):
    return {
        "pool_meta": f"data/{wildcards.dataset}/pool/meta.csv",
        "pool_features": expand(f"{FEATURES}/pool.npz", dataset=wildcards.dataset)[0],
        "pool_labels": f"results/{wildcards.dataset}/split{wildcards.split}/pool_labels.csv",
    }


def mining_inputs(wildcards):
    """The pool and its teacher labels when the memory bank includes them."""
    return pool_inputs(wildcards) if wildcards.memory == WITH_POOL else {}


def student_inputs(wildcards):
    """What one student variant trains on: its labelled cache, the pool (when used), the mined pairs
    (when matching is on) and, for a decoder, the backbone weights."""
    student = VARIANTS[wildcards.variant]
    return {**_student_inputs(student, wildcards), **model_weights(student["arch"])(wildcards),
            "features": expand(model_cache(student["arch"]), dataset=wildcards.dataset)[0]}


def finetune_inputs(wildcards):
    """A fine-tuned student reads what its variant reads (the pool with its pooled features, the pairs), plus the
    backbone weights."""
    return {**_student_inputs(FINETUNED[wildcards.finetuned], wildcards, tokens=False),
            "weights": backbone_weights(wildcards)}


def finetuned_of(wildcards):
    """The fine-tuned models trained on the job's split (``ablation.splits``)."""
    return split_finetuned(config, FINETUNED, int(wildcards.split))


def finetune_predictions(wildcards):
    """The test predictions of the fine-tuned models trained on the job's split (none when fine-tune mode is off)."""
    return {"finetuned": [f"results/{wildcards.dataset}/split{wildcards.split}/{name}/predictions.csv"
                          for name in finetuned_of(wildcards)]}


def _student_inputs(student, wildcards, tokens=True):
    """The pool (its features: cached activations for a decoder on them, when ``tokens``) and the mined pairs."""
    inputs = pool_inputs(wildcards) if uses_pool(student) else {}
    if inputs and tokens and reads_tokens(student["arch"]):
        inputs["pool_features"] = expand(model_cache(student["arch"], "pool"), dataset=wildcards.dataset)[0]
    if matching_on(student):
        m = student["matching"]
        inputs["pairs"] = f"results/{wildcards.dataset}/split{wildcards.split}/pairs/{m['strategy']}_{m['memory']}.csv"
    return inputs


def matcher_params(wildcards):
    """The pair settings a partner strategy depends on (a change reruns only its mining)."""
    extra = {"random": ["seed"], "topk_mean": ["top_k"]}.get(wildcards.strategy, [])
    return {k: config["pairs"][k] for k in ["tau", "k_fallback", *extra]}


def labelled_features(dataset):
    """The cached features of a dataset's labelled images (``dataset`` may be a wildcard like "{train}")."""
    return f"{FEATURES.format(dataset=dataset)}/labelled.npz"


def cross_model_inputs(wildcards):
    """The trained models of one split of the training dataset that the cross-dataset table reports."""
    run = f"results/{wildcards.train}/split{wildcards.split}"
    inputs = {"teacher": f"{run}/teacher.pt"} if "teacher" in CROSS["models"] else {}
    students = [m for m in CROSS["models"] if m in VARIANTS]
    inputs["students"] = [f"{run}/students/{m}.pt" for m in students]
    inputs["finetuned"] = [f"{run}/{m}/model.pt" for m in CROSS["models"] if m in FINETUNED]
    return inputs


def cross_metrics(wildcards):
    return [f"results/cross_dataset/{train}/{test}/split{split}/metrics.csv"
            for train, test in CROSS["pairs"] for split in range(n_splits(train))]


def cross_within(wildcards):
    """In-dataset results of every training dataset, the diagonal of the cross-dataset matrix."""
    return [f"results/{train}/metrics.csv" for train in dict.fromkeys(train for train, _ in CROSS["pairs"])]


def feature_mode(model="full"):
    """How ``model``'s features are made: fine-tuned, a backbone top that trains, or frozen."""
    if model in FINETUNED:
        return "fine-tuned"
    if model in VARIANTS and reads_tokens(VARIANTS[model]["arch"]):
        return f"backbone top from block {config['partial']['from_block']} trained"
    return "frozen features"


def comparison_runs():
    """Our rows of the paper comparison, per dataset: the full model (fine-tuned in fine-tune mode) beside QFM-IQM's
    numbers, and the ablation reference (its fine-tuned counterpart when there is one) beside those of the paper's base
    (``comparison.base``); each with its dataset, kind, model, paper model, backbone and mode."""
    from qfm_iqm.evaluation.comparison import PAPER_MODEL

    full = finetuned_name("full") if finetuned_name("full") in FINETUNED else "full"
    base = config["comparison"].get("base")
    reference = FINETUNED_REFERENCE or config["ablation"]["reference"]
    compared = [(full, PAPER_MODEL)] + ([(reference, base["name"])] if base and reference in {*VARIANTS, *FINETUNED}
                                       else [])
    return [{"name": name, "kind": DATASETS[name]["kind"], "model": model, "paper_model": paper_model,
             "backbone": BACKBONE, "mode": feature_mode(model)} for name in config["run"] for model, paper_model in compared]


DEPLOYABLE = config["backbone"]["weights"] != "none"  # a random backbone makes no deployable model


def export_inputs(wildcards):
    """The backbone weights a bundle records: the converted package file, or the configured file."""
    if config["backbone"]["weights"] == "hub":
        return {}
    return {"weights": resolve_weights(config["backbone"], backbone_weights(wildcards))}


def dataset_credit(wildcards):
    """What travels with a dataset's models, from its source: the copyright notice's path (read once the dataset
    is prepared, so it may come from an acquired archive) and the citation; empty strings where there are none."""
    kind = data.KINDS.get(DATASETS[wildcards.dataset]["kind"])  # demo datasets have no kind entry
    source = kind and kind.source
    notice = os.path.join(dataset_root(wildcards.dataset), source.notice) if source and source.notice else ""
    return {"notice": notice, "citation": source.citation if source else ""}


def deploy_settings(wildcards):
    """What a deployable model was trained with, recorded in its bundle: backbone, crops, teacher, the full
    student and its number of seeds, pairs, the expansion pool and, for a decoder, the ``partial`` section."""
    student = VARIANTS["full"]
    settings = {"backbone": config["backbone"], "crops": config["crops"], "teacher": config["teacher"],
                "student": active_settings(student), "seeds": config["evaluation"]["seeds"], "pairs": config["pairs"],
                "pool": DATASETS[wildcards.dataset].get("pool")}
    return {**settings, **({"partial": config["partial"]} if reads_tokens(student["arch"]) else {})}


def bundle_targets():
    """The deployable model of every dataset of the run."""
    return expand("results/{dataset}/model", dataset=config["run"]) if DEPLOYABLE else []


def figure_targets():
    """Every figure of the run (PNG; each rule writes a PDF beside it)."""
    figures = ["pair_distance", "observation_gated", "ablation", "sensitivity", "sensitivity_sweep", "attention",
               *(f"scatter_{model}" for model in SCATTER_MODELS)]
    targets = expand("results/{dataset}/figures/{figure}.png", dataset=config["run"], figure=figures)
    return targets + (["results/cross_dataset/heatmap.png"] if CROSS["pairs"] else [])


def evaluation_targets():
    """The evaluation tables of the run: summaries, the cross-dataset matrix, the paper comparison."""
    targets = expand("results/{dataset}/{table}", dataset=config["run"],
                     table=["summary.md", "claims.md", "sensitivity_sweep.csv"])
    targets.append("results/paper_comparison.md")
    return targets + (["results/cross_dataset/matrix.md"] if CROSS["pairs"] else [])


def all_targets():
    targets = evaluation_targets() + figure_targets() + bundle_targets() + ["results/benchmarks.csv", "results/config.yaml"]
    for name in config["run"]:
        targets += expand("results/{dataset}/split{split}/pair_stats.json", dataset=name, split=range(n_splits(name)))
    return targets


def noise_probe(student):
    """A student's training noise as a sensitivity probe (claim 2's second): its ``matching`` eps and noise form."""
    return {"eps": student["matching"]["eps"], "form": student["matching"]["noise_form"]}


def training_probes(wildcards):
    """The second sensitivity probe of each model evaluated on the job's split: its student's training noise
    (``noise_probe``); the teacher, which trains without it, gets the full student's."""
    students = {"teacher": VARIANTS["full"], **{v: VARIANTS[v] for v in variants_of(wildcards)}}
    return {name: noise_probe(s) for name, s in students.items()}


def finetune_probes(wildcards):
    """The sensitivity probes of each fine-tuned model of the job's split (claim 2): the paper's additive noise at
    ``evaluation.sensitivity_eps``, and the model's own training noise (``noise_probe``)."""
    additive = {"eps": config["evaluation"]["sensitivity_eps"], "form": "add"}
    return {name: {"additive": additive, "training": noise_probe(FINETUNED[name])} for name in finetuned_of(wildcards)}


def claims_blocks():
    """The blocks of the claims table (``qfm_iqm.evaluation.claims.Block``): in fine-tune mode first the fine-tuned
    full student against the fine-tuned reference (the paper's comparison), then the frozen students; else these
    alone."""
    frozen = {"name": "frozen", "full": "full", "reference": config["ablation"]["reference"],
              "head": VARIANTS["full"]["arch"]["head"], "mode": feature_mode("full")}
    full = finetuned_name("full")
    if not FINETUNED_REFERENCE or full not in FINETUNED:
        return [frozen]
    return [{"name": "fine-tuned", "full": full, "reference": FINETUNED_REFERENCE,
             "head": FINETUNED[full]["arch"]["head"], "mode": feature_mode(full), "fine_tuned": True}, frozen]


def claims_inputs(wildcards):
    """What the claims table reads besides the summaries: the fine-tuned models' sensitivity files (both probes, every
    split they are trained on; only when it has a fine-tuned block) and the cross-dataset predictions of the pairs
    trained on the dataset."""
    name = wildcards.dataset
    finetuned = [] if len(claims_blocks()) == 1 else [
        f"results/{name}/split{split}/finetune_sensitivity.csv" for split in range(n_splits(name))]
    cross = [f"results/cross_dataset/{name}/{test}/split{split}/predictions.csv"
             for train, test in CROSS["pairs"] if train == name for split in range(n_splits(name))]
    return {"finetuned_sensitivity": finetuned, "cross": cross}
