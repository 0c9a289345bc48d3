"""inception-deploy: PyTorch (timm) classifiers to ONNX, INT8/FP16 and TensorRT engines, measured.

Installed, the five packages are ``inception_deploy.pipeline``, ``.engines``, ``.runtime``,
``.benchmarks`` and ``.calibration`` (one name in a shared site-packages, see the README's "Install
names"). In the repository they stay top-level folders; in a checkout (and in a deploy bundle's
``python/`` folder) this file lets the same names resolve to those folders, so tools and examples
run from a checkout without installing. Device-side: standard library only, Python 3.8.
"""
import os

_HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isfile(os.path.join(_HERE, "pipeline", "manifest.py")) and _HERE not in __path__:  # noqa: F821
    __path__.append(_HERE)  # noqa: F821  (a package's own __path__)
