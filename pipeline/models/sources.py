"""Model sources: a timm name, a timm / Hugging Face model folder, or a checkpoint file.

``resolve_model("inception_v4")``, ``resolve_model("local-dir:models/x")`` and
``resolve_model("ckpt.safetensors", arch="inception_v3", num_classes=200)`` all return a
:class:`LoadedModel`: the fp32 eval-mode module plus everything the manifest records about it.
Training-time auxiliary heads (Inception's ``AuxLogits``) are accepted, reported and removed
before export.
"""
import hashlib
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional

import torch

from inception_deploy.pipeline.errors import UserError
from inception_deploy.pipeline.hashing import file_sha256
from inception_deploy.pipeline.models.model_folder import WEIGHTS, read_config
from inception_deploy.pipeline.models.timm_compat import import_timm
from inception_deploy.pipeline.preprocess import Preprocessing

OFFLINE_ALTERNATIVES = ("a local model folder (--model local-dir:PATH with config.json + model.safetensors), "
                        "or a checkpoint file (--model weights.safetensors|.pth --arch NAME [--num-classes N])")
AUX_HEADS = ("AuxLogits",)   # attribute names of training-only auxiliary classifiers
CFG_NOT_RECORDED = ("label_names", "label_descriptions")


@dataclass
class LoadedModel:
    module: torch.nn.Module
    name: str
    architecture: str
    source: str
    pretrained_cfg: Dict[str, Any]
    label_names: List[str]
    label_descriptions: Dict[str, str]
    weights_sha256: str          # over the fp32 state dict (stable across file formats)
    weights_file_sha256: Optional[str] = None
    notes: List[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    @property
    def preprocessing(self) -> Preprocessing:
        return Preprocessing.from_pretrained_cfg(self.pretrained_cfg)


def state_dict_sha256(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for key, value in sorted(module.state_dict().items()):
        t = value.detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}\n".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


def _default_labels(num_classes: int) -> "tuple[List[str], Dict[str, str]]":
    if num_classes == 1000:  # ImageNet-1k synsets and names, shipped inside timm
        from timm.data import ImageNetInfo
        info = ImageNetInfo()
        names = list(info.label_names())
        return names, {n: info.label_name_to_description(n) for n in names}
    return [f"class_{i}" for i in range(num_classes)], {}


def _check_architecture(arch: str) -> Any:
    """timm, once ``arch`` is known to it (else a UserError naming close names)."""
    timm = import_timm()
    if not timm.is_model(arch):
        close = timm.list_models(f"*{arch.split('.')[0][:8]}*")[:6]
        raise UserError(f"unknown architecture {arch!r}; expected a timm model name"
                        + (f" (close: {', '.join(close)})" if close else " (see timm.list_models())"))
    return timm


def _create(arch: str, num_classes: Optional[int], pretrained: bool = False, **kwargs: Any) -> torch.nn.Module:
    timm = _check_architecture(arch)
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if pretrained:
        try:
            return timm.create_model(arch, pretrained=True, **kwargs)
        except Exception as e:  # no hub on these machines: OSError, HTTP errors, LocalEntryNotFound...
            raise UserError(f"--pretrained could not download weights for {arch} ({type(e).__name__}: "
                            f"{str(e).splitlines()[0][:160] if str(e) else 'no hub reachable'}); offline, use "
                            + OFFLINE_ALTERNATIVES) from None
    torch.manual_seed(0)  # random init is reproducible, so its weights hash is too
    return timm.create_model(arch, pretrained=False, **kwargs)


def _strip_aux(module: torch.nn.Module, notes: List[str]) -> None:
    for attr in AUX_HEADS:
        head = getattr(module, attr, None)
        if isinstance(head, torch.nn.Module):
            n_params = sum(p.numel() for p in head.parameters())
            n_tensors = len(head.state_dict())
            delattr(module, attr)
            setattr(module, attr, None)
            if hasattr(module, "aux_logits"):
                module.aux_logits = False
            notes.append(f"auxiliary classifier {attr} ({n_tensors} tensors, {n_params:,} parameters) loaded "
                         "and dropped: a training-time head, not part of the exported graph")


def _load_state(module: torch.nn.Module, state: Mapping[str, torch.Tensor], where: str) -> None:
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shape_bad = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
                 if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shape_bad:
        def show(keys: List[str]) -> str:
            return ", ".join(keys[:6]) + (f" ... ({len(keys)} in all)" if len(keys) > 6 else "")
        parts = []
        if missing:
            parts.append(f"missing keys: {show(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {show(unexpected)}")
        if shape_bad:
            parts.append(f"shape mismatches: {show(shape_bad)}")
        raise UserError(f"{where} does not fit the architecture ({'; '.join(parts)}); check --arch and "
                        "--num-classes")
    module.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})


def _checkpoint_keys(path: str) -> List[str]:
    """The tensor names of a .safetensors file, from its header alone."""
    from safetensors import safe_open

    try:
        with safe_open(path, framework="pt") as f:
            return list(f.keys())
    except Exception as e:
        raise UserError(f"cannot read {path} as safetensors ({e})") from None


def _read_checkpoint(path: str) -> Dict[str, torch.Tensor]:
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file
        try:
            return load_file(path)
        except Exception as e:
            raise UserError(f"cannot read {path} as safetensors ({e})") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"cannot load {path} with weights_only=True ({str(e).splitlines()[0][:200]}); "
                        "re-save it as a plain state_dict or as .safetensors") from None
    for key in ("state_dict", "model", "state_dict_ema", "model_ema"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{path} holds no state_dict of tensors; expected a state_dict "
                        "(optionally under 'state_dict' or 'model')")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in obj.items()}


@dataclass
class _Source:
    """What one source kind yields before the common finish (aux heads dropped, fp32, eval)."""

    module: torch.nn.Module
    architecture: str
    name: str
    pretrained_cfg: Dict[str, Any]
    label_names: List[str]
    label_descriptions: Dict[str, str]
    weights_file_sha256: Optional[str] = None
    notes: List[str] = field(default_factory=list)


def resolve_model(source: str, arch: Optional[str] = None, num_classes: Optional[int] = None,
                  pretrained: bool = False) -> LoadedModel:
    """Load ``source`` as an fp32 eval-mode model (see the module docstring for the forms)."""
    if source.startswith("local-dir:"):
        loaded = from_model_folder(source[len("local-dir:"):])
    elif os.path.splitext(source)[1] in (".safetensors", ".pth", ".pt", ".bin"):
        loaded = from_checkpoint(source, arch, num_classes)
    else:
        if os.path.exists(source):
            raise UserError(f"{source} exists but is not a model source; expected local-dir:PATH for a model "
                            "folder, or a .safetensors/.pth/.pt checkpoint with --arch")
        loaded = from_timm_name(source[len("timm:"):] if source.startswith("timm:") else source, num_classes,
                                pretrained)
    _strip_aux(loaded.module, loaded.notes)
    module = loaded.module.float().eval()
    cfg = {k: v for k, v in loaded.pretrained_cfg.items() if k not in CFG_NOT_RECORDED}
    return LoadedModel(module=module, name=loaded.name, architecture=loaded.architecture, source=source,
                       pretrained_cfg=cfg, label_names=loaded.label_names,
                       label_descriptions=loaded.label_descriptions, weights_sha256=state_dict_sha256(module),
                       weights_file_sha256=loaded.weights_file_sha256, notes=loaded.notes)


def from_model_folder(folder: str) -> _Source:
    """A timm / Hugging Face model folder, loaded by timm's own ``local-dir:`` source (config.json:
    architecture, num_classes, pretrained_cfg, label names and descriptions; model.safetensors).
    Kept here, what timm lacks: a one-line error for a folder that is not one, the missing and
    unexpected keys listed when the weights do not fit, training-time aux heads, default labels."""
    config = read_config(folder)
    weights_path = os.path.join(folder, WEIGHTS)
    timm = _check_architecture(config["architecture"])
    cfg_in = dict(config.get("pretrained_cfg") or {})
    labels = list(config.get("label_names") or cfg_in.get("label_names") or [])
    n = int(config.get("num_classes") or cfg_in.get("num_classes") or len(labels))
    aux = {"aux_logits": True} if any(k.startswith(AUX_HEADS) for k in _checkpoint_keys(weights_path)) else {}
    try:
        module = timm.create_model("local-dir:" + folder, pretrained=True, num_classes=n, **aux)
    except Exception as e:     # timm could not load them (strict load, a checkpoint filter): say which keys
        _load_state(timm.create_model("local-dir:" + folder, pretrained=False, num_classes=n, **aux),
                    _read_checkpoint(weights_path), weights_path)
        raise UserError(f"timm could not load {folder}: {str(e).splitlines()[0][:300]}") from None
    # where this copy was read from is not what the model is: timm's local-dir adds "file" and "source"
    cfg = {k: v for k, v in module.pretrained_cfg.items() if k not in ("file", "source")}
    descriptions = dict(config.get("label_descriptions") or cfg.get("label_descriptions") or {})
    if not labels:
        labels, descriptions = _default_labels(n)
    return _Source(module, config["architecture"], os.path.basename(os.path.normpath(folder)), cfg, labels,
                   descriptions, file_sha256(weights_path))


def from_checkpoint(path: str, arch: Optional[str], num_classes: Optional[int]) -> _Source:
    """A state_dict file (.safetensors, or .pth/.pt/.bin loaded with weights_only) for ``arch``."""
    if not os.path.isfile(path):
        raise UserError(f"checkpoint not found: {path}")
    if not arch:
        raise UserError(f"a checkpoint file needs --arch NAME (and --num-classes N if not 1000): {path}")
    state = _read_checkpoint(path)
    aux = any(k.startswith(AUX_HEADS) for k in state)
    module = _create(arch, num_classes, **({"aux_logits": True} if aux else {}))
    _load_state(module, state, path)
    labels, descriptions = _default_labels(int(getattr(module, "num_classes", num_classes or 1000)))
    return _Source(module, arch, os.path.splitext(os.path.basename(path))[0], dict(module.pretrained_cfg), labels,
                   descriptions, file_sha256(path))


def from_timm_name(arch: str, num_classes: Optional[int], pretrained: bool) -> _Source:
    """A timm architecture: random init (seed 0), or timm's pretrained weights where a hub is reachable."""
    module = _create(arch, num_classes, pretrained=pretrained)
    labels, descriptions = _default_labels(int(module.num_classes))
    notes = [] if pretrained else ["random-init weights (seed 0): outputs are degenerate, useful for shapes and "
                                   "export only"]
    return _Source(module, arch, arch, dict(module.pretrained_cfg), labels, descriptions, notes=notes)
