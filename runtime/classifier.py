"""``Classifier``: what a camera app imports. Load an engine or ONNX file, classify BGR frames.

    with Classifier.load("model.engine") as clf:        # or "model.onnx"
        for p in clf.classify(frame, top_k=5):          # frame: HxWx3 uint8 BGR (cv2.VideoCapture.read)
            print(p.label_name, p.probability)

The artifact's manifest (``<file>.json``, written by export/calibrate/build) supplies the
preprocessing (:class:`pipeline.preprocess.Preprocessing`, its BGR frame path) and the label
names; an engine runs on TensorRT, an ONNX file on ONNX Runtime, and an engine where TensorRT is
absent is an error naming the ONNX alternative, never a silent switch.

Thread-safety: a Classifier may be shared by threads. Each thread that calls it gets its own
backend on first use (its own TensorRT execution context, stream and buffers over one shared
engine, deserialized once per process, or its own
ONNX Runtime session), so threads never share mutable inference state; :meth:`Classifier.close`
frees them all. Device-side: numpy (+ onnxruntime or TensorRT), Python 3.8.
"""
import threading
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence

import numpy as np

from inception_deploy.pipeline import lineage
from inception_deploy.pipeline import manifest as mf
from inception_deploy.pipeline.errors import UserError
from inception_deploy.pipeline.labels import display_name
from inception_deploy.pipeline.preprocess import Preprocessing, check_frame
from inception_deploy.runtime.backends import Backend, artifact_type, open_backend


@dataclass(frozen=True)
class Prediction:
    """One class of a result, best first: index, human-readable name, softmax probability."""

    label_id: int          # class index in the model's output
    label_name: str        # human-readable (first name of the label's description), e.g. "goldfish"
    probability: float     # softmax over all classes, 0..1
    label: str = ""        # the model's label, e.g. the WordNet id "n01443537"

    def __str__(self) -> str:
        return "%5.1f %%  %s" % (100.0 * self.probability, self.label_name)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (stable for any logit scale)."""
    z = logits.astype(np.float64)
    z -= z.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    return z


class Classifier:
    """A model plus its preprocessing and labels. Build it with :meth:`load`."""

    def __init__(self, path: str, manifest: mf.Manifest, preprocessing: Preprocessing, backend_options: dict) -> None:
        self.path = path
        self.manifest = manifest
        self.preprocessing = preprocessing
        self.labels: List[str] = list(manifest.model.label_names)
        descriptions = manifest.model.label_descriptions or {}
        self.label_names: List[str] = [display_name(label, descriptions) for label in self.labels]
        # an engine built with --softmax (for DeepStream) already outputs probabilities
        self.outputs_probabilities = (manifest.io.get("output") or {}).get("activation") == "softmax"
        self._options = dict(backend_options)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._backends: List[Backend] = []
        self._closed = False

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str, providers: Optional[Sequence[str]] = None, threads: int = 0,
             cuda_graph: bool = False, device: int = 0, dla_core: Optional[int] = None) -> "Classifier":
        """``model.engine`` (TensorRT) or ``model.onnx`` (ONNX Runtime), each with its ``.json`` manifest.

        ``providers`` / ``threads``: ONNX Runtime options; ``cuda_graph`` / ``device`` / ``dla_core`` (the
        DLA core a DLA engine runs on): TensorRT options. Threads share one deserialized engine.
        Raises UserError for a missing or mismatched manifest or a broken lineage link
        (:func:`pipeline.lineage.check`), Unsupported where TensorRT is absent.
        """
        kind = artifact_type(path)
        manifest = lineage.check(path, expect_kind="engine" if kind == "engine" else "onnx*")
        preprocessing = Preprocessing.from_dict(manifest.preprocessing)
        clf = cls(path, manifest, preprocessing,
                  {"providers": providers, "threads": threads, "cuda_graph": cuda_graph, "device": device,
                   "dla_core": dla_core})
        clf._backend()   # load now, on the calling thread: a bad model fails here, not at the first frame
        return clf

    def _backend(self) -> Backend:
        backend = getattr(self._local, "backend", None)
        if backend is not None:
            return backend
        with self._lock:
            if self._closed:
                raise RuntimeError("this Classifier is closed; load it again")
            backend = open_backend(self.path, **self._options)
            try:
                backend.activate()
                self._check_model(backend)
            except BaseException:
                backend.close()
                raise
            self._backends.append(backend)
        self._local.backend = backend
        return backend

    def _check_model(self, backend: Backend) -> None:
        want = (3,) + tuple(self.preprocessing.input_size)
        if backend.input_shape is not None and tuple(backend.input_shape) != want:
            raise UserError("%s takes %s inputs but its manifest describes %s: the manifest does not belong to this "
                            "model; use the .json written with it" % (self.path, backend.input_shape, want))
        if backend.num_classes is not None and backend.num_classes != len(self.labels):
            raise UserError("%s outputs %d classes but its manifest lists %d labels: the manifest does not belong to "
                            "this model; use the .json written with it" % (self.path, backend.num_classes, len(self.labels)))

    # -- properties --------------------------------------------------------------------------
    @property
    def backend(self) -> Backend:
        """This thread's backend (created on first use)."""
        return self._backend()

    @property
    def max_batch(self) -> Optional[int]:
        """Most frames :meth:`classify_batch` takes at once (``None``: no fixed limit)."""
        return self._backend().max_batch

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    # -- inference ----------------------------------------------------------------------------
    def preprocess(self, frame: Any) -> np.ndarray:
        """One HxWx3 uint8 BGR frame -> (3, H, W) float32 network input (ValueError for anything else)."""
        check_frame(frame)
        return self.preprocessing.frame(frame)

    def classify(self, frame: Any, top_k: int = 5) -> List[Prediction]:
        """Top ``top_k`` classes for one HxWx3 uint8 BGR frame, most probable first."""
        self._check_top_k(top_k)
        x = self.preprocess(frame)
        return self.predictions(self._backend().infer(x[None]), top_k)[0]

    def classify_batch(self, frames: Sequence[Any], top_k: int = 5) -> List[List[Prediction]]:
        """:meth:`classify` for up to :attr:`max_batch` frames in one inference; one list per frame."""
        self._check_top_k(top_k)
        if isinstance(frames, np.ndarray) and frames.ndim == 3:
            raise ValueError("classify_batch expects a sequence of HxWx3 frames; for one frame use classify()")
        if len(frames) == 0:
            raise ValueError("classify_batch expects at least one HxWx3 uint8 BGR frame, got none")
        backend = self._backend()
        if backend.max_batch is not None and len(frames) > backend.max_batch:
            raise ValueError("%d frames is more than this model's max batch %d; split them"
                             % (len(frames), backend.max_batch))
        batch = []
        for i, frame in enumerate(frames):
            try:
                batch.append(self.preprocess(frame))
            except ValueError as e:
                raise ValueError("frame %d: %s" % (i, e)) from None
        return self.predictions(backend.infer(np.stack(batch)), top_k)

    def classify_file(self, path: str, top_k: int = 5) -> List[Prediction]:
        """:meth:`classify` for an image file, read by the project's one loader
        (:func:`pipeline.datasets.load_image`: EXIF orientation applied, as ``cv2.imread`` does)
        and preprocessed exactly as bench and calibrate do. UserError for an unreadable file."""
        from inception_deploy.pipeline.datasets import load_image

        self._check_top_k(top_k)
        x = self.preprocessing.image(load_image(path))
        return self.predictions(self._backend().infer(x[None]), top_k)[0]

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Raw (N, C) logits for an already preprocessed (N, 3, H, W) float32 batch."""
        return self._backend().infer(batch)

    def predictions(self, logits: np.ndarray, top_k: int = 5) -> List[List[Prediction]]:
        """(N, C) logits (or probabilities, from a ``--softmax`` engine) -> per row the ``top_k`` most
        probable classes, best first."""
        probs = logits.astype(np.float64) if self.outputs_probabilities else softmax(logits)
        k = min(int(top_k), probs.shape[1])
        out = []
        for row in probs:
            top = np.argpartition(-row, k - 1)[:k] if k < row.shape[0] else np.arange(row.shape[0])
            top = top[np.argsort(-row[top], kind="stable")]
            out.append([Prediction(int(i), self.label_names[i], float(row[i]), self.labels[i]) for i in top])
        return out

    @staticmethod
    def _check_top_k(top_k: int) -> None:
        if not isinstance(top_k, (int, np.integer)) or top_k < 1:
            raise ValueError("top_k must be a positive integer, got %r" % (top_k,))

    # -- resources ----------------------------------------------------------------------------
    def close(self) -> None:
        """Free every thread's backend (sessions, contexts, pinned buffers). Idempotent."""
        with self._lock:
            self._closed = True
            backends, self._backends = self._backends, []
        for backend in backends:
            backend.close()
        self._local = threading.local()

    def __enter__(self) -> "Classifier":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return "Classifier(%r, %s, %d classes, input %s)" % (
            self.path, self.manifest.model.name, self.num_classes, "x".join(map(str, self.preprocessing.input_size)))
