"""tools/standin_model.py: an untrained full-size stand-in must be usable by every stage (a model
folder) and not degenerate (outputs depend on the input), and must say it is untrained."""
import json
import subprocess
import sys

import numpy as np
import torch

from inception_deploy.pipeline.datasets import open_image_folder, select
from inception_deploy.pipeline.models.sources import resolve_model


def test_standin_folder_loads_is_labelled_untrained_and_not_degenerate(tmp_path, val_dir):
    out = tmp_path / "standin"
    run = subprocess.run([sys.executable, "tools/standin_model.py", "--arch", "tiny_inception", "--count", "32",
                          "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "re-estimated on 32 train/ images" in run.stdout
    config = json.load(open(out / "config.json"))
    assert config["untrained"] is True and config["label_names"] == sorted(config["label_names"])
    loaded = resolve_model(f"local-dir:{out}")
    ds = open_image_folder(val_dir, loaded.label_names)
    batch = next(ds.subset(select(ds.samples, 16, seed=3)).batches(loaded.preprocessing, 16)).images
    with torch.no_grad():
        logits = loaded.module(torch.from_numpy(batch)).numpy()
    assert len(set(np.argmax(logits, 1).tolist())) > 1 and logits.std(axis=0).mean() > 1e-3
