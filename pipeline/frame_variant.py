"""Frame-input variants of an ONNX artifact: ``model.onnx`` -> ``model.frame-1920x1080.onnx``.

A variant is the same network with the camera-frame preprocessing prepended
(:func:`pipeline.frame_graph.add_frame_input`) for one frame size, written beside its parent with
a manifest (kind as the parent's, ``io.input`` describing the uint8 NHWC BGR frame) after a parity
check: on real images presented as camera frames, ONNX Runtime on the variant against the
parent network on the exact (PIL) preprocessing of the same frames. ``export --frame-input``
writes it for ``model.onnx``, ``calibrate`` for ``model.int8.onnx`` / ``model.fp16.onnx`` (the
prefix is added after quantization and checked to hold no Q/DQ node), ``build --frame-input``
builds it. The network artifacts stay as they are: bench, verify and gate measure those.
"""
import os
import shutil
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from inception_deploy.pipeline import manifest as mf
from inception_deploy.pipeline.errors import CheckFailed, UserError
from inception_deploy.pipeline.frame_io import frame_input_size, frame_size_name, parse_frame_size, variant_path

MIN_TOP1_AGREEMENT = 0.9        # a broken prefix agrees on ~chance; near-ties flip a few of 32
PARITY_COUNT = 32


def camera_frame(img: Any, frame_size: Tuple[int, int]) -> np.ndarray:
    """A PIL image presented as an (H, W, 3) uint8 BGR camera frame: scaled (bicubic, aspect kept)
    to cover the frame and center-cropped, like a camera filling its view with the object."""
    from PIL import Image

    from inception_deploy.pipeline.preprocess import to_rgb

    img = to_rgb(img)
    height, width = frame_size
    scale = max(width / img.size[0], height / img.size[1])
    size = (max(width, int(round(img.size[0] * scale))), max(height, int(round(img.size[1] * scale))))
    big = img.resize(size, getattr(Image, "Resampling", Image).BICUBIC)
    left, top = (size[0] - width) // 2, (size[1] - height) // 2
    rgb = np.asarray(big.crop((left, top, left + width, top + height)), dtype=np.uint8)
    return np.ascontiguousarray(rgb[:, :, ::-1])


@dataclass
class FrameParity:
    images: int
    top1_agreement: float
    max_abs_logit_error: float
    mean_kl: float
    min_top1_agreement: float
    passed: bool


def frame_parity(variant: str, network_path: str, pre: Any, frame_size: Tuple[int, int], images_dir: str,
                 count: int = PARITY_COUNT) -> FrameParity:
    """The variant on camera frames vs the network on the PIL path of the same frames (ONNX Runtime)."""
    from inception_deploy.pipeline.metrics import kl_per_row, top1_agrees
    from inception_deploy.pipeline.datasets import open_image_folder, select
    from inception_deploy.runtime.backends.onnxruntime import OnnxRuntimeBackend

    folder = open_image_folder(images_dir)
    samples = select(folder.samples, count, 0)
    frames, tensors = [], []
    for sample in samples:
        img = folder.load(sample)
        if img is None:
            continue
        frame = camera_frame(img, frame_size)
        frames.append(frame)
        tensors.append(pre.frame(frame, path="exact", resampler="pil"))
    if not frames:
        raise UserError("no readable images for the frame-input parity check in %s" % images_dir)
    with OnnxRuntimeBackend(network_path) as network, OnnxRuntimeBackend(variant) as prefixed:
        ref = np.concatenate([network.infer(t[None]) for t in tensors])
        got = np.concatenate([prefixed.infer(f[None]) for f in frames])
    kl = float(kl_per_row(ref, got).mean())
    agreement = float(np.mean(top1_agrees(ref, got)))
    return FrameParity(len(frames), agreement, float(np.abs(ref - got).max()), kl, MIN_TOP1_AGREEMENT,
                       agreement >= MIN_TOP1_AGREEMENT)




def write_frame_variant(onnx_path: str, frame_size: Tuple[int, int], parity_images: Optional[str],
                        parity_count: int = PARITY_COUNT) -> mf.Manifest:
    """Write ``variant_path(onnx_path, frame_size)`` + manifest; nothing is written if a check fails."""
    import onnx

    from inception_deploy.pipeline import publish
    from inception_deploy.pipeline.frame_graph import add_frame_input, frame_input_record, prefix_quantization_problems

    parent = mf.read(onnx_path, expect_kind="onnx*")
    if frame_input_size(parent.io):
        raise UserError("%s already takes camera frames; give the network model it was made from" % onnx_path)
    pre = parent.preprocessing_obj()
    model = add_frame_input(onnx.load(onnx_path), pre, frame_size, network_input=parent.input_name)
    problems = prefix_quantization_problems(model)
    if problems:
        raise CheckFailed("the frame preprocessing of %s would run in INT8 (%s); it must stay FP32"
                          % (onnx_path, "; ".join(problems[:3])))
    final = variant_path(onnx_path, frame_size)
    work = publish.temp_dir(os.path.dirname(os.path.abspath(final)), "frame-input")
    try:
        staged = os.path.join(work, os.path.basename(final))
        onnx.save(model, staged)
        onnx.checker.check_model(staged)
        parity = frame_parity(staged, onnx_path, pre, frame_size, parity_images, parity_count) if parity_images else None
        if parity is not None and not parity.passed:
            raise CheckFailed("frame-input variant of %s agrees with the exact preprocessing on %.1f %% of %d frames "
                              "(limit %.0f %%); nothing was written" % (onnx_path, 100 * parity.top1_agreement,
                                                                       parity.images, 100 * MIN_TOP1_AGREEMENT))
        io = dict(parent.io, input=frame_input_record(pre, frame_size))
        manifest = mf.derive(parent, onnx_path, parent.kind, _stage(frame_size, model, parity), io=io,
                             artifact_path=final)
        with publish.Publication(os.path.dirname(os.path.abspath(final))) as pub:
            pub.add_artifact(final, staged, manifest)
            pub.last(final)
        return manifest
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _stage(frame_size: Tuple[int, int], model: Any, parity: Optional[FrameParity]) -> Dict[str, Any]:
    from inception_deploy.pipeline.frame_graph import PREFIX

    added = sum(1 for n in model.graph.node if n.name.startswith(PREFIX))
    stage: Dict[str, Any] = {"name": "frame-input", "frame_size": frame_size_name(frame_size),
                             "nodes_added": added, "parity": asdict(parity) if parity else None}
    check = ("; on %d frames vs the exact path: top-1 agreement %.1f %%, max logit error %.3g"
             % (parity.images, 100 * parity.top1_agreement, parity.max_abs_logit_error)) if parity else ""
    stage["summary"] = "takes %s uint8 BGR frames (%d preprocessing nodes in the graph)%s" % (
        frame_size_name(frame_size), added, check)
    return stage


def frame_sizes(values: Optional[List[str]]) -> List[Tuple[int, int]]:
    """``["1920x1080", "1280x720"]`` or ``["1920x1080,1280x720"]`` -> [(1080, 1920), (720, 1280)]."""
    sizes: List[Tuple[int, int]] = []
    for value in values or []:
        for part in str(value).split(","):
            if part.strip():
                size = parse_frame_size(part)
                if size not in sizes:
                    sizes.append(size)
    return sizes
