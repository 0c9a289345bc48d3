"""Measure a model folder with the project's own evaluation and write its model card (README.md).

Top-1/top-5 of the fp32 PyTorch model on the shared Tiny-ImageNet ``val/`` and ``calib/`` splits
(pipeline.datasets + pipeline.preprocess + pipeline.metrics: the same code every stage uses),
plus whatever the training run recorded in ``config.json`` (recipe, wall time, device).
"""
import argparse
import json
import os
import sys
import time
from typing import Dict

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from inception_deploy.pipeline import atomic, paths  # noqa: E402
from inception_deploy.pipeline.datasets import open_image_folder  # noqa: E402
from inception_deploy.pipeline.metrics import accuracy  # noqa: E402
from inception_deploy.pipeline.models.info import model_info  # noqa: E402
from inception_deploy.pipeline.models.sources import resolve_model  # noqa: E402


def evaluate(loaded, folder: str) -> Dict[str, float]:
    ds = open_image_folder(folder, loaded.label_names, require_labels=True)
    logits, labels = [], []
    t0 = time.perf_counter()
    with torch.no_grad():
        for batch in ds.batches(loaded.preprocessing, 250, progress=f"evaluating on {os.path.basename(folder)}"):
            logits.append(loaded.module(torch.from_numpy(batch.images)).numpy())
            labels.append(batch.labels)
    acc = accuracy(np.concatenate(logits), np.concatenate(labels))
    return {"images": acc.images, "top1": round(acc.top1, 2), "top5": round(acc.top5, 2),
            "seconds": round(time.perf_counter() - t0, 1)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="local-dir:PATH")
    p.add_argument("--title", default=None)
    p.add_argument("--command", default="", help="the command that trained it, for the card")
    args = p.parse_args()
    torch.set_num_threads(2)
    loaded = resolve_model(args.model)
    folder = args.model[len("local-dir:"):]
    with open(os.path.join(folder, "config.json")) as f:
        config = json.load(f)
    training = config.get("training", {})
    res = {split: evaluate(loaded, d) for split, d in (("val", paths.VAL_DIR), ("calib", paths.CALIB_DIR))}
    size = loaded.preprocessing.input_size
    info = model_info(loaded.module, (3, size[0], size[1]))
    pre = loaded.preprocessing
    card = f"""# {args.title or loaded.name}

`{loaded.architecture}` with {loaded.num_classes} classes (Tiny-ImageNet-200: label_names are the sorted
WordNet ids of `wnids.txt`, label_descriptions from `words.txt`), {info.params / 1e6:.2f} M parameters,
{info.macs / 1e6:.1f} MMACs per {size[0]}x{size[1]} image. Weights stored in fp16 (`model.safetensors`),
upcast to fp32 on load; the fp32 model is the baseline every stage compares against.

## Accuracy (fp32 PyTorch, this repository's evaluation, measured on the CPU development machine)

| split | images | top-1 % | top-5 % |
|---|---:|---:|---:|
| `../shared/data/tiny-imagenet-200/val` | {res['val']['images']} | {res['val']['top1']:.2f} | {res['val']['top5']:.2f} |
| `../shared/data/tiny-imagenet-200/calib` | {res['calib']['images']} | {res['calib']['top1']:.2f} | {res['calib']['top5']:.2f} |

Chance is 0.5 % / 2.5 %. `val/` was never used for training or tuning; `calib/` is for INT8 calibration.

## Preprocessing (eval)

Resize the shorter side to {pre.resize_size[0]} ({pre.interpolation}), center crop {size[0]}x{size[1]}
(crop_pct {pre.crop_pct}), scale to [0, 1], normalise with mean {list(pre.mean)} and std {list(pre.std)}.

## Training

- Data: {training.get('train_images', '?')} images of `../shared/data/tiny-imagenet-200/train`.
- Recipe: `{json.dumps(training.get('recipe', {}))}`
- Device: {training.get('device', 'cpu, %s threads' % training.get('threads', '?'))}; wall time
  {training.get('train_wall_s', training.get('last_run_wall_s', '?'))} s; torch {training.get('torch', '?')}.
- Command: `{args.command or 'see the Makefile'}`
"""
    atomic.write_text(os.path.join(folder, "README.md"), card)
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
