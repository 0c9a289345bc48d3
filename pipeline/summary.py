"""One line per stage found under a run folder (from the manifests), then the next command.

Each stage puts a short human line under ``stage.summary`` in its manifests; this module only
collects them, in pipeline order, so ``make demo`` ends the same way whatever stages ran. Dot
folders (a run's work and staging folders, caches) are never reported.
"""
import os
from typing import List, Tuple

from inception_deploy.pipeline import atomic, documents
from inception_deploy.pipeline.errors import UserError

ORDER = [("onnx", "export"), ("onnx-fp16", "calibrate"), ("onnx-int8", "calibrate"), ("calibration", "calibrate"),
         ("engine", "build"), ("bundle", "build"), ("report", "bench")]
NEXT = {
    None: "make demo",
    "export": "make calibrate   (INT8 + FP16 ONNX with an accuracy budget)",
    "calibrate": "make engine TARGET=rtx PRECISION=int8   (or TARGET=jetson for a deploy bundle)",
    "build": "make bench   (latency and accuracy drift reports)",
    "bench": "make gate   (pass/fail against benchmarks/baselines/)",
}


def _manifests(root: str) -> List[Tuple[str, dict]]:
    found = []
    for dirpath, dirnames, names in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))   # work and staging folders of runs
        for n in sorted(names):
            if not n.endswith(".json"):
                continue
            path = os.path.join(dirpath, n)
            try:
                data = documents.expect_tag(atomic.read_json(path), documents.MANIFEST, path, "")
            except (OSError, UserError):   # not a manifest (a report, a target, another tool's JSON)
                continue
            inside_bundle = "bundle" in os.path.relpath(path, root).split(os.sep)[:-1]
            if inside_bundle and data.get("kind") != "bundle":   # copies shipped for the device
                continue
            found.append((path, data))
    return found


def summarize(root: str) -> str:
    if not os.path.isdir(root):
        return f"nothing under {root} yet; next: {NEXT[None]}"
    rank = {kind: i for i, (kind, _) in enumerate(ORDER)}
    stage_of = dict(ORDER)
    items = sorted(_manifests(root), key=lambda pd: (rank.get(pd[1].get("kind"), 99), pd[0]))
    lines = []
    last = None
    for path, data in items:
        kind = data.get("kind")
        stage = stage_of.get(kind, kind)
        artifact = os.path.join(os.path.dirname(path), data.get("artifact", {}).get("file", "?"))
        size = data.get("artifact", {}).get("bytes", 0)
        text = (data.get("stage") or {}).get("summary") or kind
        lines.append(f"{stage:<10} {os.path.relpath(artifact)} ({size / 1e6:.1f} MB): {text}")
        last = stage
    after = NEXT.get(last, NEXT["bench"])
    bundles = [os.path.dirname(path) for path, data in items if data.get("kind") == "bundle"]
    if bundles and last == "bench":
        after += (f"; to deploy: copy {os.path.relpath(bundles[0])}/ to the device and run ./build_on_device.sh "
                  "there")
    lines.append(f"next: {after}")
    return "\n".join(lines)
