"""Train the project's test model (``make test-model``): TinyInception on Tiny-ImageNet-200, on CPU.

Random-init Inception models give the same output for every input, so parity, accuracy and
drift tests need a trained model. This one trains reproducibly (seeded, 2 threads) in about
17 minutes on two cores from ``../shared/data/tiny-imagenet-200/train`` (20,000 images) and is
committed as a timm model folder (fp16 safetensors) with a model card.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from inception_deploy.pipeline.labels import read_class_labels  # noqa: E402
from inception_deploy.pipeline.models.model_folder import save_model_folder  # noqa: E402
from inception_deploy.pipeline.models.timm_compat import import_timm  # noqa: E402
from tools import trainer  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/data/tiny-imagenet-200")
    p.add_argument("--out", default="models/tiny_inception.tiny200")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--limit-per-class", type=int, default=None, help="use fewer images (smoke runs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--checkpoint", default="build/test-model/checkpoint.pt")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    timm = import_timm()
    wnids, descriptions = read_class_labels(args.data)
    recipe = trainer.Recipe(epochs=args.epochs, seed=args.seed)
    torch.manual_seed(args.seed)
    model = timm.create_model("tiny_inception", num_classes=len(wnids))
    cfg = dict(model.pretrained_cfg)
    size = cfg["input_size"][-1]

    t0 = time.perf_counter()
    x, y = trainer.load_uint8(os.path.join(args.data, "train"), wnids, args.limit_per_class)
    print(f"decoded {len(x)} training images in {time.perf_counter() - t0:.1f} s", flush=True)
    os.makedirs(os.path.dirname(args.checkpoint) or ".", exist_ok=True)
    t1 = time.perf_counter()
    figures = trainer.train(model, torch.from_numpy(x), torch.from_numpy(y), size, cfg["mean"], cfg["std"],
                            recipe, checkpoint=args.checkpoint)
    train_s = time.perf_counter() - t1
    model = model.to(memory_format=torch.contiguous_format).eval()
    save_model_folder(model, args.out, "tiny_inception", cfg, wnids, descriptions,
                      extra={"training": {"recipe": trainer.asdict(recipe), "train_images": int(len(x)),
                                          "train_wall_s": round(train_s, 1), "threads": args.threads,
                                          "torch": torch.__version__,
                                          "final_images_per_s": round(figures.get("images_per_s", 0.0), 1)}})
    print(f"trained in {train_s:.0f} s; wrote {args.out}")
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
