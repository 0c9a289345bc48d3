"""Write an untrained full-size stand-in model folder with BatchNorm re-estimated on real images.

Until the reference models exist (trained on a GPU, ``docs/reference-models.md``), the stages can
only be measured on full-size architectures through a stand-in: random-init weights give the same
output for every input, so this re-estimates the BatchNorm statistics on ``--count`` images of the
shared ``train/`` split (never ``calib/`` or ``val/``) and writes a timm model folder (fp32) that
every stage accepts as ``local-dir:PATH``. Its accuracy is chance level; what it measures is the
cost of each stage and the agreement between precisions. Its config says "untrained" so any report
built on it can be labelled as such. It is a build artifact (``build/standin/``), never committed.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from inception_deploy.pipeline import paths  # noqa: E402
from inception_deploy.pipeline.datasets import open_image_folder, select  # noqa: E402
from inception_deploy.pipeline.labels import read_class_labels  # noqa: E402
from inception_deploy.pipeline.models.batchnorm import reestimate_batchnorm  # noqa: E402
from inception_deploy.pipeline.models.model_folder import save_model_folder  # noqa: E402
from inception_deploy.pipeline.models.sources import resolve_model  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="inception_v4", help="timm name (inception_v4, inception_resnet_v2, ...)")
    p.add_argument("--out", default=None, help="model folder (default build/standin/<arch>.bn-reestimated)")
    p.add_argument("--count", type=int, default=256, help="train/ images for the BatchNorm statistics")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    out = args.out or os.path.join("build", "standin", f"{args.arch}.bn-reestimated")
    torch.manual_seed(args.seed)
    torch.set_num_threads(2)
    data = paths.TINY_IMAGENET
    wnids, descriptions = read_class_labels(data)
    loaded = resolve_model(args.arch, num_classes=len(wnids))
    train = open_image_folder(os.path.join(data, "train"), wnids)
    subset = train.subset(select(train.samples, args.count, seed=args.seed))
    t0 = time.perf_counter()
    seen = reestimate_batchnorm(loaded.module, (b.images for b in subset.batches(
        loaded.preprocessing, 32, progress="re-estimating BatchNorm on train/")))
    seconds = time.perf_counter() - t0
    save_model_folder(loaded.module, out, args.arch, loaded.pretrained_cfg, wnids, descriptions,
                      dtype=torch.float32,
                      extra={"untrained": True,
                             "note": (f"untrained stand-in: random init (seed {args.seed}), BatchNorm statistics "
                                      f"re-estimated on {seen} train/ images; chance-level accuracy")})
    print(f"wrote {out}: {args.arch}, BatchNorm re-estimated on {seen} train/ images in {seconds:.1f} s "
          "(untrained: accuracy is chance level)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
