"""A deploy bundle's verification set as the device reads it: ``eval/images.json`` (relative path,
label and sha256 of each image), the images, and the host's FP32 logits for them
(``eval/reference_logits.npy``, rows in the manifest's ``reference.order``). Written on the host by
:mod:`engines.eval_set`. Device side: numpy, Python 3.8.
"""
import os
from typing import Any, Dict

import numpy as np

from inception_deploy.pipeline import documents
from inception_deploy.pipeline.errors import UserError

EVAL_DIR = "eval"
IMAGES = "images"
MANIFEST = "images.json"
LOGITS = "reference_logits.npy"


def load_eval_set(bundle_root: str) -> Dict[str, Any]:
    """Read ``eval/images.json`` and the reference logits (device side: numpy only)."""
    path = os.path.join(bundle_root, EVAL_DIR, MANIFEST)
    if not os.path.isfile(path):
        raise UserError("%s not found: this bundle carries no verification set (it was written with "
                        "--no-eval-set); write the bundle again without it" % path)
    record = documents.read_document(path, documents.EVAL_SET, "verification set", "write the bundle again")
    record["logits"] = np.load(os.path.join(bundle_root, EVAL_DIR, record["reference"]["file"]))
    if record["logits"].shape[0] != len(record["reference"]["order"]):
        raise UserError("%s: %d reference rows for %d images; write the bundle again"
                        % (path, record["logits"].shape[0], len(record["reference"]["order"])))
    return record

