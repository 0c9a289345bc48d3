"""``Classifier``: what a camera app imports. Load an engine or ONNX file, classify BGR frames.

    with Classifier.load("model.engine") as clf:        # or "model.onnx"
        for p in clf.classify(frame, top_k=5):          # frame: HxWx3 uint8 BGR (cv2.VideoCapture.read)
            print(p.label_name, p.probability)

The artifact's manifest (``<file>.json``, written by export/calibrate/build) supplies the
preprocessing (:class:`pipeline.preprocess.Preprocessing`, its BGR frame path) and the label
names; an engine runs on TensorRT, an ONNX file on ONNX Runtime, and an engine where TensorRT is
absent is an error naming the ONNX alternative, never a silent switch. A model whose graph holds
the preprocessing (``export --frame-input``: the manifest's input is a uint8 NHWC frame) gets the
camera frame as it is, and TensorRT resizes and normalises it on the GPU.

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
from inception_deploy.pipeline.frame_io import frame_input_size, frame_size_name
from inception_deploy.pipeline.labels import display_name
from inception_deploy.pipeline.metrics import softmax
from inception_deploy.pipeline.preprocess import FRAME_PATHS, Preprocessing, check_frame
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


class Classifier:
    """A model plus its preprocessing and labels. Build it with :meth:`load`."""

    def __init__(self, path: str, manifest: mf.Manifest, preprocessing: Preprocessing, backend_options: dict,
                 frame_path: str = "fast") -> None:
        self.path = path
        self.manifest = manifest
        self.preprocessing = preprocessing
        self.frame_path = frame_path
        self.frame_size = frame_input_size(manifest.io)      # (H, W) when the graph preprocesses frames
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
             cuda_graph: bool = False, device: int = 0, dla_core: Optional[int] = None,
             frame_path: str = "fast") -> "Classifier":
        """``model.engine`` (TensorRT) or ``model.onnx`` (ONNX Runtime), each with its ``.json`` manifest.

        ``providers`` / ``threads``: ONNX Runtime options; ``cuda_graph`` / ``device`` / ``dla_core`` (the
        DLA core a DLA engine runs on): TensorRT options (threads share one deserialized engine);
        ``frame_path``: CPU preprocessing, "fast" or "exact" (:meth:`Preprocessing.frame`; unused when the
        model preprocesses in its graph). Raises UserError for a missing or mismatched manifest or a
        broken lineage link (:func:`pipeline.lineage.check`), Unsupported where TensorRT is absent.
        """
        if frame_path not in FRAME_PATHS:
            raise UserError("frame_path must be one of %s, got %r" % (", ".join(FRAME_PATHS), frame_path))
        kind = artifact_type(path)
        manifest = lineage.check(path, expect_kind="engine" if kind == "engine" else "onnx*")
        preprocessing = Preprocessing.from_dict(manifest.preprocessing)
        clf = cls(path, manifest, preprocessing,
                  {"providers": providers, "threads": threads, "cuda_graph": cuda_graph, "device": device,
                   "dla_core": dla_core}, frame_path)
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
        if self.frame_size:
            want = tuple(self.frame_size) + (3,)
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
        """One HxWx3 uint8 BGR frame -> the model's input: (3, H, W) float32, or the frame itself
        (contiguous) for a model that preprocesses in its graph. ValueError for anything else."""
        check_frame(frame)
        if self.frame_size is None:
            return self.preprocessing.frame(frame, path=self.frame_path)
        if tuple(frame.shape[:2]) != tuple(self.frame_size):
            raise ValueError("%s takes %s frames (its graph preprocesses them), got %dx%d; set the camera to %s, or "
                             "load the model exported without --frame-input" % (
                                 self.path, frame_size_name(self.frame_size), frame.shape[1], frame.shape[0],
                                 frame_size_name(self.frame_size)))
        return np.ascontiguousarray(frame)

    def classify(self, frame: Any, top_k: int = 5, threshold: float = 0.0) -> List[Prediction]:
        """Top ``top_k`` classes for one HxWx3 uint8 BGR frame, most probable first; only those with a
        probability of at least ``threshold`` (so possibly none)."""
        self._check_top_k(top_k)
        x = self.preprocess(frame)
        return self.predictions(self._backend().infer(x[None]), top_k, threshold)[0]

    def classify_batch(self, frames: Sequence[Any], top_k: int = 5, threshold: float = 0.0) -> List[List[Prediction]]:
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
        return self.predictions(backend.infer(np.stack(batch)), top_k, threshold)

    def classify_file(self, path: str, top_k: int = 5) -> List[Prediction]:
        """:meth:`classify` for an image file, read by the project's one loader
        (:func:`pipeline.datasets.load_image`: EXIF orientation applied, as ``cv2.imread`` does)
        and preprocessed exactly as bench and calibrate do. UserError for an unreadable file."""
        from inception_deploy.pipeline.datasets import load_image
        from inception_deploy.pipeline.preprocess import to_rgb

        self._check_top_k(top_k)
        image = load_image(path)
        if self.frame_size is not None:    # the graph preprocesses: hand it the image as a BGR frame
            return self.classify(np.asarray(to_rgb(image))[:, :, ::-1], top_k)
        x = self.preprocessing.image(image)
        return self.predictions(self._backend().infer(x[None]), top_k)[0]

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Raw (N, C) logits for a batch of :meth:`preprocess` outputs ((N, 3, H, W) float32, or
        (N, H, W, 3) uint8 frames for a model that preprocesses in its graph)."""
        return self._backend().infer(batch)

    def predictions(self, logits: np.ndarray, top_k: int = 5, threshold: float = 0.0) -> List[List[Prediction]]:
        """(N, C) logits (or probabilities, from a ``--softmax`` engine) -> per row the ``top_k`` most
        probable classes at or above ``threshold``, best first."""
        return [self.rank(row, top_k, threshold) for row in self.probabilities(logits)]

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """(N, C) network outputs -> class probabilities: softmax of logits, or the outputs as they are
        for a ``--softmax`` engine, whose network already ends in a softmax."""
        return logits.astype(np.float64) if self.outputs_probabilities else softmax(logits)

    def rank(self, probabilities: np.ndarray, top_k: int = 5, threshold: float = 0.0) -> List[Prediction]:
        """One row of class probabilities (e.g. smoothed over frames) -> the ``top_k`` best at or above ``threshold``."""
        self._check_top_k(top_k)
        row = np.asarray(probabilities, dtype=np.float64)
        k = min(int(top_k), row.shape[0])
        top = np.argpartition(-row, k - 1)[:k] if k < row.shape[0] else np.arange(row.shape[0])
        top = top[np.argsort(-row[top], kind="stable")]
        return [Prediction(int(i), self.label_names[i], float(row[i]), self.labels[i]) for i in top
                if row[i] >= threshold]

    @staticmethod
    def _check_top_k(top_k: int) -> None:
        if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
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
