"""Where things are by default: the repository, the shared data, the default model."""
import os

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA_ROOT = os.environ.get("INCEPTION_DEPLOY_DATA", os.path.join(os.path.dirname(REPO_ROOT), "shared", "data"))
TINY_IMAGENET = os.path.join(DATA_ROOT, "tiny-imagenet-200")
VAL_DIR = os.path.join(TINY_IMAGENET, "val")
CALIB_DIR = os.path.join(TINY_IMAGENET, "calib")
PHOTOS_DIR = os.path.join(DATA_ROOT, "photos")
MODELS_DIR = os.path.join(REPO_ROOT, "models")
REFERENCE_MODEL = os.path.join(MODELS_DIR, "inception_v4.tiny200")
TEST_MODEL = os.path.join(MODELS_DIR, "tiny_inception.tiny200")


def default_model() -> str:
    """The reference Inception-v4 once it is trained and committed, else the trained test model."""
    if os.path.isfile(os.path.join(REFERENCE_MODEL, "model.safetensors")):
        return "local-dir:" + os.path.relpath(REFERENCE_MODEL)
    return "local-dir:" + os.path.relpath(TEST_MODEL)
