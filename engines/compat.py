"""Refuse an engine the running TensorRT or GPU cannot load, before deserializing it.

A TensorRT plan loads only in the TensorRT that wrote it (same flavour, same version; TensorRT
says little more than "serialization assertion failed" otherwise) and only on the GPUs it was
built for: the builder's compute capability (any Ampere-or-newer with hardware compatibility
``ampere_plus``; the same major.minor with ``same_compute_capability``), or for TensorRT-RTX the
ahead-of-time list. The manifest records all of that; this check turns a mismatch into one clear
line. Device-side: stdlib only.
"""
from typing import Optional, Tuple

from inception_deploy.engines.trt_api import TrtApi, cc_key
from inception_deploy.pipeline.errors import UserError
from inception_deploy.pipeline.manifest import Manifest


def check_engine_compat(manifest: Manifest, api: TrtApi, device_cc: Optional[Tuple[int, int]] = None,
                        device_name: Optional[str] = None) -> None:
    """Raise :class:`UserError` (one line) unless this engine loads with ``api`` on this GPU.

    ``device_cc`` is the running GPU's compute capability as ``(major, minor)``; when it is
    ``None`` (not known) only the TensorRT flavour and version are checked.
    """
    if manifest.kind != "engine":
        raise UserError("%s is a %r manifest, not an engine's" % (manifest.artifact.get("file", "manifest"),
                                                                  manifest.kind))
    stage = manifest.stage
    built = stage.get("tensorrt") or {}
    target = stage.get("target", "?")
    precision = stage.get("precision", "?")
    rebuild = "rebuild it here (inception-deploy build --target %s --precision %s)" % (target, precision)
    engine = manifest.artifact.get("file", "model.engine")
    if built.get("flavour") != api.flavour or str(built.get("version")) != api.version:
        raise UserError("%s was built with %s but this is %s; a plan loads only in the TensorRT that built it: %s"
                        % (engine, built.get("label") or "%s %s" % (built.get("flavour"), built.get("version")),
                           api.label, rebuild))
    if device_cc is None:
        return
    device = stage.get("device") or {}
    here = "%d.%d" % tuple(device_cc)
    gpu = "%s (compute capability %s)" % (device_name, here) if device_name else "this GPU (compute capability %s)" % here
    aot = device.get("aot_compute_capabilities")
    if aot:
        if here not in aot:
            raise UserError("%s was built ahead of time for compute capability %s, not for %s: %s, or add %s to the "
                            "target's compute_capabilities" % (engine, "/".join(aot), gpu, rebuild, here))
        return
    built_cc = device.get("compute_capability")
    if not built_cc:
        return
    level = device.get("hardware_compatibility") or "none"
    if level == "ampere_plus":
        ok = tuple(device_cc) >= (8, 0)
        wanted = "Ampere or newer (compute capability >= 8.0)"
    else:  # same_compute_capability, or none: the builder's GPU model (same compute capability)
        ok = tuple(device_cc) == cc_key(built_cc)
        wanted = ("compute capability %s" % built_cc if level == "same_compute_capability" else
                  "%s (compute capability %s)" % (device.get("builder_device") or "the builder's GPU", built_cc))
    if not ok:
        raise UserError("%s was built for %s and cannot run on %s: %s" % (engine, wanted, gpu, rebuild))
