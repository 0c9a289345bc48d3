"""Train the reference Inception models on Tiny-ImageNet-200 (``make reference-models``).

timm's ``inception_v4`` / ``inception_resnet_v2`` with 200 classes, from scratch at 299x299
(the 64x64 images upsampled on the GPU inside the augmentation's grid_sample), bf16 autocast,
channels_last, images decoded once and kept on the GPU as uint8, one-cycle SGD with label
smoothing. Checkpoints after every epoch; ``--time-budget-min`` stops cleanly before a
command's time limit and the next run resumes. Needs a CUDA GPU for real use; ``--device cpu``
with ``--limit-per-class``/``--classes``/``--input-size`` runs the same code as a smoke test.

Data: ``pack`` turns a class-per-folder tree (e.g. the full Tiny-ImageNet train set, 500 images
a class) into JPEG shards of at most ``--shard-mib`` MiB, small enough to carry to a GPU host;
``train --packed DIR`` reads them back. Evaluation for the model card is done afterwards on the
CPU machine by ``tools/model_card.py`` (the project's own evaluation).
"""
import argparse
import glob
import io
import json
import os
import sys
import time
from typing import List, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from inception_deploy.pipeline.datasets import open_image_folder  # noqa: E402
from inception_deploy.pipeline.labels import read_class_labels, read_wnids  # noqa: E402
from inception_deploy.pipeline.models.model_folder import save_model_folder  # noqa: E402
from inception_deploy.pipeline.models.timm_compat import import_timm  # noqa: E402
from tools import trainer  # noqa: E402

ARCHS = {"inception_v4": dict(lr=0.8, batch_size=256), "inception_resnet_v2": dict(lr=0.8, batch_size=256)}


def pack(src: str, wnids: List[str], out: str, shard_mib: int) -> None:
    """Class-per-folder JPEGs -> ``shard-NNN.npz`` files (raw JPEG bytes, offsets, labels).

    Labels index the *sorted* WordNet ids (the order of every model's ``label_names``): the public
    copy's ``wnids.txt`` is not sorted, and its line order would silently mislabel every class.
    """
    wnids = sorted(wnids)
    ds = open_image_folder(src, wnids, require_labels=True)
    os.makedirs(out, exist_ok=True)
    blobs: List[bytes] = []
    labels: List[int] = []
    size, shard = 0, 0

    def flush() -> None:
        nonlocal blobs, labels, size, shard
        if not blobs:
            return
        offsets = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
        path = os.path.join(out, "shard-%03d.npz" % shard)
        np.savez(path + ".tmp.npz", data=np.frombuffer(b"".join(blobs), dtype=np.uint8), offsets=offsets,
                 labels=np.asarray(labels, dtype=np.int64))
        os.replace(path + ".tmp.npz", path)
        print(f"wrote {path}: {len(blobs)} images, {os.path.getsize(path) / 2**20:.1f} MiB", flush=True)
        blobs, labels, size, shard = [], [], 0, shard + 1

    for s in ds.samples:
        with open(s.path, "rb") as f:
            blob = f.read()
        if size + len(blob) > shard_mib * 2**20:
            flush()
        blobs.append(blob)
        labels.append(s.label)
        size += len(blob)
    flush()
    with open(os.path.join(out, "labels.json"), "w") as f:
        json.dump({"label_names": wnids, "images": len(ds)}, f)


def packed_label_names(folder: str) -> List[str]:
    """The label order the shards were packed with (``labels.json``)."""
    path = os.path.join(folder, "labels.json")
    if not os.path.isfile(path):
        raise SystemExit(f"error: {path} not found; expected the output folder of: train_reference.py pack ...")
    with open(path) as f:
        return list(json.load(f)["label_names"])


def load_packed(folder: str, size: int = 64) -> Tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    from inception_deploy.pipeline.preprocess import to_rgb

    xs, ys = [], []
    for path in sorted(glob.glob(os.path.join(folder, "shard-*.npz"))):
        z = np.load(path)
        data, offsets = z["data"].tobytes(), z["offsets"]
        for i, label in enumerate(z["labels"]):
            img = to_rgb(Image.open(io.BytesIO(data[offsets[i]:offsets[i + 1]])))
            if img.size != (size, size):
                img = img.resize((size, size), Image.BILINEAR)
            xs.append(np.asarray(img))
            ys.append(int(label))
    if not xs:
        raise SystemExit(f"error: no shard-*.npz in {folder} (make them with: train_reference.py pack ...)")
    return np.ascontiguousarray(np.stack(xs).transpose(0, 3, 1, 2)), np.asarray(ys, dtype=np.int64)


def gpu_utilisation() -> str:
    try:
        import subprocess
        out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=5).stdout.strip()
        return out or "n/a"
    except (OSError, subprocess.SubprocessError):
        return "n/a"


def train_cmd(args: argparse.Namespace) -> int:
    timm = import_timm()
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but no CUDA GPU is visible (use --device cpu for a smoke run)")
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    wnids, descriptions = read_class_labels(args.data)
    t0 = time.perf_counter()
    if args.packed:
        if packed_label_names(args.packed) != wnids:
            raise SystemExit(f"error: the shards in {args.packed} were packed with another class order than the "
                             f"sorted ids of {args.data}/wnids.txt; re-run: train_reference.py pack ...")
        x, y = load_packed(args.packed)
    else:
        x, y = trainer.load_uint8(os.path.join(args.data, "train"), wnids, args.limit_per_class)
    if args.classes:
        keep = y < args.classes
        x, y = x[keep], y[keep]
    print(f"decoded {len(x)} images in {time.perf_counter() - t0:.1f} s", flush=True)
    defaults = ARCHS.get(args.arch, dict(lr=0.2, batch_size=128))
    recipe = trainer.Recipe(epochs=args.epochs, batch_size=args.batch_size or defaults["batch_size"],
                            lr=args.lr or defaults["lr"], weight_decay=args.weight_decay, seed=args.seed,
                            scale=(0.25, 1.0))
    torch.manual_seed(args.seed)
    model = timm.create_model(args.arch, num_classes=len(wnids))
    cfg = dict(model.pretrained_cfg)
    size = args.input_size or cfg["input_size"][-1]
    if size != cfg["input_size"][-1]:
        cfg["input_size"] = (3, size, size)
    images, labels = torch.from_numpy(x).to(dev), torch.from_numpy(y).to(dev)
    os.makedirs(os.path.dirname(os.path.abspath(args.checkpoint)), exist_ok=True)

    def report(epoch: int, fig: dict) -> None:
        print(f"  epoch {epoch}: {fig['images_per_s']:.0f} images/s, GPU {gpu_utilisation()}", flush=True)

    t1 = time.perf_counter()
    fig = trainer.train(model, images, labels, size, cfg["mean"], cfg["std"], recipe, checkpoint=args.checkpoint,
                        time_budget_s=args.time_budget_min * 60 if args.time_budget_min else None, on_epoch=report)
    if not fig.get("done"):
        print("not finished: run the same command again to resume")
        return 0
    model = model.to(memory_format=torch.contiguous_format).eval().cpu()
    save_model_folder(model, args.out, args.arch, cfg, wnids, descriptions,
                      extra={"training": {"recipe": trainer.asdict(recipe), "train_images": int(len(x)),
                                          "input_size": size, "device": torch.cuda.get_device_name(0)
                                          if dev.type == "cuda" else "cpu",
                                          "last_run_wall_s": round(time.perf_counter() - t1, 1),
                                          "torch": torch.__version__}})
    print(f"wrote {args.out} (fp16 safetensors); next: tools/model_card.py --model local-dir:{args.out}")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pk = sub.add_parser("pack", help="JPEG class folders -> carryable shards")
    pk.add_argument("--src", required=True, help="class-per-folder train tree")
    pk.add_argument("--wnids", required=True, help="wnids.txt (the first 200 lines are used)")
    pk.add_argument("--out", required=True)
    pk.add_argument("--shard-mib", type=int, default=15)
    tr = sub.add_parser("train", help="train one architecture (resumable)")
    tr.add_argument("--arch", default="inception_v4")
    tr.add_argument("--data", default="../shared/data/tiny-imagenet-200", help="for wnids.txt/words.txt/train/")
    tr.add_argument("--packed", help="folder of shard-*.npz from 'pack' (else --data/train is decoded)")
    tr.add_argument("--out", default=None, help="model folder (default models/<arch>.tiny200)")
    tr.add_argument("--checkpoint", default=None, help="default build/reference/<arch>.pt")
    tr.add_argument("--device", default="cuda")
    tr.add_argument("--epochs", type=int, default=18)
    tr.add_argument("--batch-size", type=int, default=0)
    tr.add_argument("--lr", type=float, default=0.0)
    tr.add_argument("--weight-decay", type=float, default=5e-5)
    tr.add_argument("--input-size", type=int, default=0, help="default: the architecture's (299)")
    tr.add_argument("--limit-per-class", type=int, default=None)
    tr.add_argument("--classes", type=int, default=0, help="train on the first N classes only (smoke runs)")
    tr.add_argument("--time-budget-min", type=float, default=9.0, help="stop after the epoch that would pass this")
    tr.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if args.cmd == "pack":
        pack(args.src, read_wnids(args.wnids)[:200], args.out, args.shard_mib)
        return 0
    args.out = args.out or f"models/{args.arch}.tiny200"
    args.checkpoint = args.checkpoint or f"build/reference/{args.arch}.pt"
    return train_cmd(args)


if __name__ == "__main__":
    sys.exit(main())
