"""inception-deploy runtime: classify camera frames with a built engine or an ONNX model.

``from inception_deploy.runtime import Classifier`` -- see :mod:`runtime.classifier` and docs/runtime.md. Device-side:
numpy (+ onnxruntime, or TensorRT with pycuda or cuda-python; OpenCV for the example app), no torch,
Python 3.8.
"""
from inception_deploy.pipeline.metrics import softmax
from inception_deploy.runtime.classifier import Classifier, Prediction

__all__ = ["Classifier", "Prediction", "softmax"]
