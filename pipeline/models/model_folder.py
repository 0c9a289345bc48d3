"""timm / Hugging Face model folders: ``config.json`` + ``model.safetensors`` (fp16 or fp32).

``config.json`` follows timm's ``save_for_hf`` layout: ``architecture``, ``num_classes``,
``pretrained_cfg`` and, at the top level, ``label_names`` (list) and ``label_descriptions``
(dict). Weights are stored in fp16 to keep committed models small and upcast to fp32 on load:
the fp32 model is the baseline every later stage compares against.
"""
import os
from typing import Any, Dict, List, Mapping, Optional

import torch

from inception_deploy.pipeline import atomic
from inception_deploy.pipeline.errors import UserError

CONFIG = "config.json"
WEIGHTS = "model.safetensors"


def save_model_folder(model: torch.nn.Module, out_dir: str, architecture: str,
                      pretrained_cfg: Mapping[str, Any], label_names: List[str],
                      label_descriptions: Mapping[str, str], dtype: torch.dtype = torch.float16,
                      extra: Optional[Mapping[str, Any]] = None) -> None:
    from safetensors.torch import save_file

    state = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous()
             for k, v in model.state_dict().items()}
    cfg = dict(pretrained_cfg)
    cfg["num_classes"] = len(label_names)
    config: Dict[str, Any] = {
        "architecture": architecture,
        "num_classes": len(label_names),
        "num_features": int(getattr(model, "num_features", 0)),
        "global_pool": "avg",
        "pretrained_cfg": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()},
        "label_names": list(label_names),
        "label_descriptions": dict(label_descriptions),
    }
    config.update(extra or {})
    os.makedirs(out_dir, exist_ok=True)
    with atomic.atomic_path(os.path.join(out_dir, WEIGHTS)) as tmp:
        save_file(state, tmp, metadata={"format": "pt"})
    atomic.write_json(os.path.join(out_dir, CONFIG), config)


def read_config(folder: str) -> Dict[str, Any]:
    path = os.path.join(folder, CONFIG)
    if not os.path.isfile(path) or not os.path.isfile(os.path.join(folder, WEIGHTS)):
        raise UserError(f"{folder} is not a model folder: expected {CONFIG} and {WEIGHTS} "
                        "(timm / Hugging Face layout)")
    config = atomic.read_json(path, "expected timm's config.json layout")
    if "architecture" not in config:
        raise UserError(f"{path} names no 'architecture'; expected timm's config.json layout")
    return config
