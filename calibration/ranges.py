"""From activation histograms to the scales every consumer of a calibration uses (the Q/DQ model
and the TensorRT cache): one recipe per run, so the stage, the method comparison and the peer
comparison cannot drift apart.

- a method's amax per tensor (:mod:`calibration.methods`), one value per Concat group;
- a pre-ReLU tensor takes its ReLU output's range (TensorRT fuses Conv + ReLU, the pre-activation
  never exists in an INT8 engine);
- the network input takes an exact scale where the model's preprocessing puts it on an INT8 grid
  (:func:`lossless_input_amax`), instead of a range measured from images.
"""
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Set

from inception_deploy.calibration import methods as cmethods
from inception_deploy.calibration import stats as cstats
from inception_deploy.calibration.qdq import scales_from_amax
from inception_deploy.pipeline.trt_cache import INT8_MAX


def lossless_input_amax(preprocessing: Mapping[str, Any]) -> Optional[float]:
    """amax that puts every value the preprocessing can give the network on the INT8 grid, or None.

    The input is ``(p / 255 - mean) / std`` for 8-bit pixels p. With one std for all channels and
    ``255 * mean = 128`` in each, it is ``(p - 128) * q`` with ``q = 1 / (255 * std)``: the integers
    -128..127 times q, exactly what symmetric INT8 with scale q holds (TensorFlow's Inception-v3
    preprocessing, ``(p - 128) / 128``). A measured amax of 1.0 would give scale 1/127 instead and
    round every pixel of every image. Any other preprocessing (ImageNet's per-channel mean/std) has
    no such scale: None."""
    mean, std = list(preprocessing.get("mean") or []), list(preprocessing.get("std") or [])
    if len(mean) != 3 or len(std) != 3 or max(std) - min(std) > 1e-9 * max(std) or min(std) <= 0:
        return None
    if any(abs(255.0 * m - 128.0) > 1e-6 for m in mean):
        return None
    return INT8_MAX / (255.0 * std[0])


@dataclass
class RangeRecipe:
    """How one run turns a method into ranges; :meth:`for_model` builds it from the FP32 graph."""

    hists: Mapping[str, cstats.TensorHistogram]
    groups: List[Set[str]] = field(default_factory=list)
    fused_relu: Dict[str, str] = field(default_factory=dict)      # pre-ReLU tensor -> ReLU output
    input_name: str = ""
    input_amax: Optional[float] = None                            # exact input range, when there is one
    overrides: Dict[str, float] = field(default_factory=dict)     # tests: force some amax values

    @classmethod
    def for_model(cls, model: Any, hists: Mapping[str, cstats.TensorHistogram], preprocessing: Mapping[str, Any],
                  input_name: str, overrides: Optional[Mapping[str, float]] = None) -> "RangeRecipe":
        return cls(hists, cmethods.concat_groups(model), cstats.relu_inputs(model), input_name,
                   lossless_input_amax(preprocessing), dict(overrides or {}))

    def amax(self, method: cmethods.Method) -> Dict[str, float]:
        amax = cmethods.compute_amax(method, self.hists, self.groups)
        if self.input_amax is not None and self.input_name in amax:
            amax[self.input_name] = self.input_amax
        amax.update(self.overrides)
        amax.update({pre: amax[post] for pre, post in self.fused_relu.items() if post in amax and pre not in amax})
        return amax

    def scales(self, method: cmethods.Method) -> Dict[str, float]:
        """scale = amax / 127 per tensor (an all-zero tensor gets a tiny positive scale)."""
        return scales_from_amax(self.amax(method))
