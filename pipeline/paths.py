"""Where things are by default: the repository, the shared data, the default model."""
import os

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_ROOT = os.environ.get("INCEPTION_DEPLOY_DATA", os.path.join(os.path.dirname(REPO_ROOT), "shared", "data"))
TINY_IMAGENET = os.path.join(DATA_ROOT, "tiny-imagenet-200")
VAL_DIR = os.path.join(TINY_IMAGENET, "val")
CALIB_DIR = os.path.join(TINY_IMAGENET, "calib")
PHOTOS_DIR = os.path.join(DATA_ROOT, "photos")
MODELS_DIR = os.path.join(REPO_ROOT, "models")
REFERENCE_MODEL = os.path.join(MODELS_DIR, "inception_v3_tf2015.tiny200")
TEST_MODEL = os.path.join(MODELS_DIR, "tiny_inception.tiny200")


def default_model() -> str:
    """The reference model once assembled (make reference-model), else the trained test model."""
    if os.path.isfile(os.path.join(REFERENCE_MODEL, "model.safetensors")):
        return "local-dir:" + os.path.relpath(REFERENCE_MODEL)
    return "local-dir:" + os.path.relpath(TEST_MODEL)


def path_component(name: object, what: str, where: str) -> str:
    """``name`` (read from ``where``, an input file) if it is usable as one folder or file name.

    Names from manifests and reports become folders (``engines/<target>/<model>/...``) and file
    names (``baselines/<model>.json``); one that could leave the output folder or hide in it
    (a separator, ``..``, a leading dot or dash, control characters) is a UserError naming it.
    Spaces and shell characters are allowed: generated scripts quote every path.
    """
    from inception_deploy.pipeline.errors import UserError

    text = name if isinstance(name, str) else ""
    bad = (not text or text in (".", "..") or text[0] in ".-" or len(text) > 200
           or any(c in text for c in ("/", "\\", "\0")) or any(ord(c) < 32 or ord(c) == 127 for c in text))
    if bad:
        raise UserError("%s %r in %s is not usable as a folder name (no path separators, no leading '.' or '-', "
                        "no control characters, at most 200 characters); fix it there or regenerate the file"
                        % (what, name, where))
    return text
