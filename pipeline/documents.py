"""The documents inception-deploy writes: each type's schema tag (this is the one place), the
tool record every document carries, and the small validation helper every reader uses.

Each tag has a JSON Schema (draft 2020-12) in ``pipeline/schemas/`` for readers in other
languages (a C++ app reading an engine's manifest, a CI job reading a report); the test suite
validates real documents the pipeline writes against them. The Python readers here check only
what they use, with :func:`read_document` and :func:`check_keys`, so no validator is needed on a
device. Device-side: stdlib only, Python 3.8.
"""
import os
from typing import Any, Dict, Iterable, Optional, Sequence, Tuple

from inception_deploy.pipeline import __version__
from inception_deploy.pipeline.errors import UserError

TOOL_NAME = "inception-deploy"
VERSION = __version__

MANIFEST = "inception-deploy/manifest@1"            # <artifact>.json beside every artifact (pipeline.manifest)
PREPROCESSING = "inception-deploy/preprocessing@1"  # a manifest's "preprocessing" (pipeline.preprocess)
REPORT = "inception-deploy/report@1"                # bench/verify report.json (benchmarks.bench)
BASELINE = "inception-deploy/baseline@1"            # benchmarks/baselines/*.json (benchmarks.gate)
EVAL_SET = "inception-deploy/eval-set@1"            # a bundle's eval/images.json (engines.eval_set)
# Measurement records that are written, never read back by the tool (no reader, no JSON Schema yet):
FRAME_ACCURACY = "inception-deploy/frame-accuracy@1"  # frame-accuracy.json (benchmarks.frame_accuracy)
RUNTIME_BENCH = "inception-deploy/runtime-bench@1"    # runtime-bench.json (benchmarks.runtime_bench)

SCHEMA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schemas")
# document type -> its tag (None: a target file, TOML written by hand, carries none)
DOCUMENTS = {"manifest": MANIFEST, "preprocessing": PREPROCESSING, "report": REPORT, "baseline": BASELINE,
             "eval-set": EVAL_SET, "target": None}


def tool_record() -> Dict[str, str]:
    """``{"name": "inception-deploy", "version": ...}``: who wrote a document."""
    return {"name": TOOL_NAME, "version": VERSION}


def schema_path(document: str) -> str:
    """The JSON Schema file of a document type (a key of :data:`DOCUMENTS`)."""
    if document not in DOCUMENTS:
        raise KeyError("no document type %r; known: %s" % (document, ", ".join(DOCUMENTS)))
    return os.path.join(SCHEMA_DIR, document + ".schema.json")


def expect_tag(data: Any, tag: str, where: str, fix: str) -> Dict[str, Any]:
    """``data`` must be a JSON object whose ``schema`` is ``tag``; else one line ending in ``fix``."""
    if not isinstance(data, dict):
        raise UserError("%s: a JSON %s, not a %r document; %s" % (where, type(data).__name__, tag, fix))
    if data.get("schema") != tag:
        raise UserError("%s: schema %r is not %r; %s" % (where, data.get("schema"), tag, fix))
    return data


def read_document(path: str, tag: str, what: str, fix: str) -> Dict[str, Any]:
    """Read a JSON document of type ``tag``: a missing file, malformed JSON or another type is one
    :class:`UserError` line naming ``what`` was expected and ``fix`` (the command that writes it)."""
    from inception_deploy.pipeline import atomic

    if not os.path.isfile(path):
        raise UserError("%s not found: %s (%s)" % (what, path, fix))
    return expect_tag(atomic.read_json(path, fix), tag, path, fix)


def check_keys(data: Dict[str, Any], required: Sequence[str], where: str, fix: str,
               optional: Optional[Iterable[str]] = None) -> None:
    """Every ``required`` key present (and, given ``optional``, no key outside both lists)."""
    missing = [k for k in required if k not in data]
    unknown = [] if optional is None else [k for k in data if k not in set(required) | set(optional)]
    if missing or unknown:
        problems = (["missing keys: " + ", ".join(missing)] if missing else []) + \
                   (["unknown keys: " + ", ".join(unknown)] if unknown else [])
        raise UserError("%s: %s; %s" % (where, "; ".join(problems), fix))


def check_all(checks: Iterable[Tuple[bool, str]], where: str) -> None:
    """The first failing ``(condition, message)`` pair becomes ``<where>: <message>``."""
    for ok, message in checks:
        if not ok:
            raise UserError("%s: %s" % (where, message))
