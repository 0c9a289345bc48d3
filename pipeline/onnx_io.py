"""The exported graph's I/O names and the one ONNX Runtime CPU session every stage uses.

Kept apart from :mod:`pipeline.export` (which imports torch) so that the calibration's accuracy
reference and the histogram pass run where only ONNX Runtime is installed. Device-side: stdlib at
import time, ``onnxruntime`` when a session is made.
"""
from typing import Any, Union

INPUT_NAME = "input"     # N x 3 x H x W float32, dynamic batch
OUTPUT_NAME = "logits"   # N x classes float32


def ort_session(model: Union[str, bytes], threads: int = 0) -> Any:
    """A CPU ``InferenceSession`` on a file path or serialized model bytes, quiet below errors;
    ``threads`` > 0 fixes the intra-op pool (0: ONNX Runtime's default)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
