"""Runners: one interface (activate / infer / close, a context manager) for every backend.

The ONNX Runtime and TensorRT runners are the runtime package's backends
(``runtime.backends``); this package adds the PyTorch FP32 baseline and the factory that picks a
runner for an artifact. See :mod:`benchmarks.runners.factory`.
"""
