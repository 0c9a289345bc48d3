"""Re-estimate BatchNorm statistics on real images.

Random-init Inception models are degenerate (every input gives the same logits) because their
BatchNorm running statistics (mean 0, var 1) do not match the activations. Recomputing the
statistics on a few real images makes their outputs depend on the input, which is what export,
parity and quantization checks on full-size architectures need when no trained weights exist.
Results from such models are labelled "BN re-estimated, untrained" wherever they are reported.
"""
from typing import Iterable

import numpy as np
import torch


@torch.no_grad()
def reestimate_batchnorm(module: torch.nn.Module, batches: Iterable[np.ndarray]) -> int:
    """Replace every BatchNorm's running mean/var by the cumulative average over ``batches``.

    Returns the number of images used. The module is left in eval mode.
    """
    bns = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.training) for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None          # cumulative moving average over all batches
    module.train()
    seen = 0
    try:
        for batch in batches:
            module(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)))
            seen += len(batch)
    finally:
        for m, (momentum, _) in zip(bns, saved):
            m.momentum = momentum
        module.eval()
    return seen
