"""``inception-deploy info``: the per-stage table (output shape, parameters, MACs) of any model.

Stages are the model's top-level blocks in execution order, with ``nn.Sequential`` containers
opened one level and runs of the same block class merged ("InceptionA x4"), so the table reads
like the paper's architecture figure for every Inception variant and any timm classifier.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import torch
from torch import nn


@dataclass
class StageRow:
    name: str                 # "InceptionA x4"
    module: str               # dotted path of the first module of the run
    output_shape: Tuple[int, ...] = ()  # (C, H, W) or (features,), batch dimension dropped
    params: int = 0
    macs: int = 0


@dataclass
class ModelInfo:
    input_shape: Tuple[int, int, int]
    stages: List[StageRow] = field(default_factory=list)
    params: int = 0
    macs: int = 0

    def stage(self, name: str) -> StageRow:
        for row in self.stages:
            if row.name == name:
                return row
        raise KeyError(f"no stage named {name!r}; stages: {[r.name for r in self.stages]}")

    def format_table(self) -> str:
        lines = [f"{'stage':<28} {'output (C,H,W)':<18} {'params':>12} {'MACs':>14}"]
        for r in self.stages:
            shape = "x".join(str(d) for d in r.output_shape)
            lines.append(f"{r.name:<28} {shape:<18} {r.params:>12,} {r.macs:>14,}")
        lines.append(f"{'total':<28} {'':<18} {self.params:>12,} {self.macs:>14,}")
        lines.append(f"input {'x'.join(str(d) for d in self.input_shape)}; "
                     f"{self.params / 1e6:.2f} M parameters, {self.macs / 1e9:.3f} GMACs per image")
        return "\n".join(lines)


def _top_blocks(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    blocks: List[Tuple[str, nn.Module]] = []
    for name, child in model.named_children():
        if isinstance(child, nn.Sequential):
            blocks.extend((f"{name}.{n}", c) for n, c in child.named_children())
        else:
            blocks.append((name, child))
    return blocks


def _block_macs(model: nn.Module, blocks: List[Tuple[str, nn.Module]], input_shape: Tuple[int, int, int],
                outputs: Dict[int, Tuple[int, ...]]) -> Dict[int, int]:
    """One image through ``model`` under ``torch.utils.flop_counter``: multiply-accumulates per
    block (its FLOPs / 2: a convolution or matmul counts 2 per MAC), output shapes into ``outputs``."""
    from torch.utils.flop_counter import FlopCounterMode

    hooks = [block.register_forward_hook(lambda m, i, o, idx=idx: outputs.__setitem__(idx, tuple(o.shape[1:])))
             for idx, (_, block) in enumerate(blocks)]
    try:
        with FlopCounterMode(display=False, depth=None) as counter:
            model(torch.zeros((1,) + tuple(input_shape)))
    finally:
        for h in hooks:
            h.remove()
    counts = counter.get_flop_counts()     # keyed "<RootClass>.<path>", every level of the module tree
    root = type(model).__name__
    return {idx: sum(counts.get(f"{root}.{path}", {}).values()) // 2 for idx, (path, _) in enumerate(blocks)}


@torch.no_grad()
def model_info(model: nn.Module, input_shape: Tuple[int, int, int]) -> ModelInfo:
    """Run one image through ``model`` (eval mode) and collect the per-stage table."""
    model = model.eval()
    blocks = _top_blocks(model)
    outputs: Dict[int, Tuple[int, ...]] = {}
    macs = _block_macs(model, blocks, input_shape, outputs)

    info = ModelInfo(input_shape=tuple(input_shape))
    for idx, (path, block) in enumerate(blocks):
        if idx not in outputs:  # defined but not used in forward (e.g. a training-only head)
            continue
        kind = type(block).__name__
        params = sum(p.numel() for p in block.parameters())
        last = info.stages[-1] if info.stages else None
        if last is not None and last.name.split(" x")[0] == kind:
            count = int(last.name.split(" x")[1]) + 1 if " x" in last.name else 2
            last.name = f"{kind} x{count}"
            last.output_shape = outputs[idx]
            last.params += params
            last.macs += macs.get(idx, 0)
        else:
            info.stages.append(StageRow(kind, path, outputs[idx], params, macs.get(idx, 0)))
    info.params = sum(p.numel() for p in model.parameters())
    info.macs = sum(r.macs for r in info.stages)
    return info
