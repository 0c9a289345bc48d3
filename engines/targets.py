"""Deployment targets as data: one ``engines/targets/<name>.toml`` per target, one builder for all.

A target says which TensorRT builds it (``flavour``), for which compute capabilities, with which
precisions, batch profile, workspace, optimisation level, DLA use and ONNX opset ceiling, and
(for Jetson) which JetPack it needs. Aliases (``jetson`` -> ``jetson-orin``) resolve here.

TOML is read with ``tomllib`` (Python 3.11+) or its backport ``tomli`` (3.8-3.10). A deploy bundle
carries its one target resolved to JSON (:func:`write_target_json`), so the builder on a device
needs no TOML reader at all. Device-side: stdlib only, Python 3.8.
"""
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from inception_deploy.pipeline import atomic, documents
from inception_deploy.pipeline.errors import UserError

TARGETS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "targets")
PRECISIONS = ("fp32", "fp16", "int8")
PLATFORMS = ("rtx", "jetson", "datacenter")
INT8_MODES = ("qdq", "implicit")
DLA_INT8_MODES = ("implicit", "qdq")
HW_COMPAT = ("none", "ampere_plus", "same_compute_capability")


@dataclass(frozen=True)
class BatchProfile:
    min: int
    opt: int
    max: int

    def __post_init__(self) -> None:
        if not 1 <= self.min <= self.opt <= self.max:
            raise UserError("batch profile must satisfy 1 <= min <= opt <= max, got %d/%d/%d"
                            % (self.min, self.opt, self.max))

    @classmethod
    def parse(cls, text: str) -> "BatchProfile":
        """``"1,4,16"`` (min,opt,max) or ``"8"`` (fixed)."""
        try:
            parts = [int(p) for p in text.split(",")]
        except ValueError:
            parts = []
        if len(parts) == 1:
            parts = parts * 3
        if len(parts) != 3:
            raise UserError("--batch takes MIN,OPT,MAX (e.g. 1,4,16) or one fixed size, got %r" % text)
        return cls(*parts)

    def label(self) -> str:
        return "%d/%d/%d" % (self.min, self.opt, self.max)


@dataclass(frozen=True)
class DlaConfig:
    cores: int = 0           # DLA cores the device has
    core: int = -1           # default: -1 = GPU, else the DLA core to build for
    gpu_fallback: bool = True
    int8_mode: str = "implicit"   # where DLA INT8 scales come from: calibration cache, or Q/DQ nodes


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    platform: str                       # rtx | jetson | datacenter
    flavour: str                        # which TensorRT builds it: tensorrt | tensorrt_rtx
    tensorrt: str                       # the TensorRT the target runs (human)
    compute_capabilities: Tuple[str, ...]
    precisions: Tuple[str, ...]
    default_precision: str
    int8_mode: str                      # qdq: Q/DQ ONNX; implicit: FP32 ONNX + calibration cache
    max_opset: int
    workspace_mib: int
    optimization_level: int
    hardware_compatibility: str
    batch: BatchProfile
    dla: DlaConfig = DlaConfig()
    jetpack: str = ""
    tensorrt_major: int = 0             # TensorRT generation on the target (0: TensorRT-RTX); for trtexec text
    tensorrt_minor: int = 0             # its minor version (8.5 vs 8.6 differ in trtexec options)
    cuda: str = ""                      # CUDA on the target (JetPack's, or the TensorRT wheels')
    python: str = ""                    # the Python the target's TensorRT bindings are for
    deepstream: str = ""                # the DeepStream release for that TensorRT/JetPack
    aliases: Tuple[str, ...] = ()
    path: str = field(default="", compare=False)

    @property
    def is_jetson(self) -> bool:
        return self.platform == "jetson"

    @property
    def has_dla(self) -> bool:
        return self.dla.cores > 0

    def batch_for(self, dla_core: int, batch: Optional[BatchProfile] = None) -> BatchProfile:
        """The batch profile to build with: the DLA runs static shapes only, so a DLA build uses
        the profile's ``opt`` batch for min, opt and max."""
        b = batch or self.batch
        return BatchProfile(b.opt, b.opt, b.opt) if dla_core >= 0 else b

    def int8_mode_for(self, dla_core: int = -1) -> str:
        """How INT8 is built: ``qdq`` (the Q/DQ ONNX) or ``implicit`` (FP32 ONNX + calibration cache).
        The DLA has its own rule (``[dla] int8_mode``), since it takes INT8 scales differently."""
        return self.dla.int8_mode if dla_core >= 0 else self.int8_mode

    def onnx_for(self, precision: str, dla_core: int = -1) -> str:
        """The ONNX file this target builds ``precision`` from (names beside ``model.onnx``)."""
        if precision == "fp16":
            return "model.fp16.onnx"
        if precision == "int8" and self.int8_mode_for(dla_core) == "qdq":
            return "model.int8.onnx"
        return "model.onnx"  # fp32, and implicit INT8 (plus the calibration cache)

    def check_precision(self, precision: str, dla_core: Optional[int] = None) -> None:
        if precision not in PRECISIONS:
            raise UserError("precision %r is not one of %s" % (precision, ", ".join(PRECISIONS)))
        if precision not in self.precisions:
            raise UserError("target %s does not build %s; it builds %s" % (self.name, precision,
                                                                          ", ".join(self.precisions)))
        core = self.dla.core if dla_core is None else dla_core
        if core >= 0:
            if not self.has_dla:
                raise UserError("target %s has no DLA (asked for DLA core %d); build for its GPU (--dla-core -1)"
                                % (self.name, core))
            if core >= self.dla.cores:
                raise UserError("target %s has DLA cores 0..%d, not %d" % (self.name, self.dla.cores - 1, core))
            if precision == "fp32":
                raise UserError("the DLA runs FP16 or INT8 only, not FP32: use PRECISION=fp16 or int8 for DLA "
                                "core %d, or build FP32 for the GPU (--dla-core -1)" % core)

    def check_opset(self, opset: int, onnx_name: str) -> None:
        """Refuse an ONNX whose opset the target's TensorRT parser cannot read."""
        if opset > self.max_opset:
            hint = ("build INT8 the implicit way instead (FP32 ONNX + calibration cache: a target with "
                    "int8_mode = \"implicit\", e.g. jetson-orin-jp5 / jetson-xavier)"
                    if onnx_name.endswith("int8.onnx") else "re-export with --opset %d" % self.max_opset)
            need = (" (%s)" % self.jetpack) if self.jetpack else ""
            raise UserError("%s has ONNX opset %d but %s's TensorRT%s reads at most opset %d; %s"
                            % (onnx_name, opset, self.name, need, self.max_opset, hint))

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d.pop("path")
        return d


def _as_tuple(value: Any, key: str, where: str) -> Tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UserError("%s: %s must be a list of strings" % (where, key))
    return tuple(value)


_REQUIRED = ("name", "description", "platform", "flavour", "tensorrt", "compute_capabilities", "precisions",
             "default_precision", "int8_mode", "max_opset", "workspace_mib", "optimization_level",
             "hardware_compatibility", "batch")
_OPTIONAL = ("aliases", "jetpack", "dla", "tensorrt_major", "tensorrt_minor", "cuda", "python", "deepstream")


def parse_target(data: Dict[str, Any], where: str) -> Target:
    documents.check_keys(data, _REQUIRED, where, "see engines/targets/rtx.toml for every key",
                         optional=_OPTIONAL)
    precisions = _as_tuple(data["precisions"], "precisions", where)
    checks = [
        (data["platform"] in PLATFORMS, "platform must be one of " + ", ".join(PLATFORMS)),
        (data["flavour"] in ("tensorrt", "tensorrt_rtx"), "flavour must be tensorrt or tensorrt_rtx"),
        (all(p in PRECISIONS for p in precisions), "precisions must be among " + ", ".join(PRECISIONS)),
        (data["default_precision"] in precisions, "default_precision must be one of the precisions"),
        (data["int8_mode"] in INT8_MODES, "int8_mode must be qdq or implicit"),
        (data["hardware_compatibility"] in HW_COMPAT, "hardware_compatibility must be one of " + ", ".join(HW_COMPAT)),
        (isinstance(data["max_opset"], int) and data["max_opset"] >= 7, "max_opset must be an integer >= 7"),
        (isinstance(data["workspace_mib"], int) and data["workspace_mib"] > 0, "workspace_mib must be > 0"),
        (data["optimization_level"] in range(6), "optimization_level must be 0..5"),
        (data["flavour"] == "tensorrt_rtx" or isinstance(data.get("tensorrt_major"), int),
         "tensorrt_major (the target's TensorRT major version) is required for flavour tensorrt"),
    ]
    documents.check_all(checks, where)
    batch = data["batch"]
    dla = data.get("dla") or {}
    try:
        profile = BatchProfile(int(batch["min"]), int(batch["opt"]), int(batch["max"]))
        dla_cfg = DlaConfig(cores=int(dla.get("cores", 0)), core=int(dla.get("core", -1)),
                            gpu_fallback=bool(dla.get("gpu_fallback", True)),
                            int8_mode=str(dla.get("int8_mode", "implicit")))
    except (KeyError, TypeError, ValueError) as e:
        raise UserError("%s: bad [batch] or [dla] table (%s)" % (where, e)) from None
    unknown_dla = sorted(set(dla) - {"cores", "core", "gpu_fallback", "int8_mode"})
    if unknown_dla or dla_cfg.int8_mode not in DLA_INT8_MODES:
        raise UserError("%s: [dla] takes cores, core, gpu_fallback and int8_mode (%s)%s"
                        % (where, " or ".join(DLA_INT8_MODES),
                           "; unknown: " + ", ".join(unknown_dla) if unknown_dla else ""))
    return Target(name=data["name"], description=data["description"], platform=data["platform"],
                  flavour=data["flavour"], tensorrt=data["tensorrt"],
                  compute_capabilities=_as_tuple(data["compute_capabilities"], "compute_capabilities", where),
                  precisions=precisions, default_precision=data["default_precision"], int8_mode=data["int8_mode"],
                  max_opset=data["max_opset"], workspace_mib=data["workspace_mib"],
                  optimization_level=data["optimization_level"], hardware_compatibility=data["hardware_compatibility"],
                  batch=profile, dla=dla_cfg, jetpack=data.get("jetpack", ""),
                  tensorrt_major=int(data.get("tensorrt_major", 0)), tensorrt_minor=int(data.get("tensorrt_minor", 0)),
                  cuda=str(data.get("cuda", "")), python=str(data.get("python", "")),
                  deepstream=str(data.get("deepstream", "")),
                  aliases=_as_tuple(data.get("aliases", []), "aliases", where), path=where)


def _toml_loads(text: str, path: str) -> Dict[str, Any]:
    try:
        import tomllib as toml  # novermin  (Python 3.11+; tomli below on 3.8-3.10)
    except ImportError:
        try:
            import tomli as toml  # type: ignore[no-redef]  # the same parser for Python 3.8-3.10
        except ImportError:
            raise UserError("%s: reading target files on Python < 3.11 needs tomli (pip install tomli, or "
                            "install inception-deploy, which depends on it); a deploy bundle carries its target "
                            "as JSON and needs nothing" % path) from None
    try:
        return toml.loads(text)
    except toml.TOMLDecodeError as e:
        raise UserError("%s: not valid TOML (%s)" % (path, e)) from None


def load_target_file(path: str) -> Target:
    """A ``<name>.toml`` target file, or the ``<name>.json`` a deploy bundle carries."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if path.endswith(".json"):
        try:
            data = json.loads(text)
        except ValueError as e:
            raise UserError("%s: not valid JSON (%s)" % (path, e)) from None
    else:
        data = _toml_loads(text, path)
    target = parse_target(data, path)
    stem = os.path.splitext(os.path.basename(path))[0]
    if target.name != stem:
        raise UserError("%s: name %r must match the file name %r" % (path, target.name, stem))
    return target


def write_target_json(target: Target, folder: str) -> str:
    """``<folder>/<name>.json``: the target resolved to plain JSON (what a deploy bundle ships)."""
    path = os.path.join(folder, target.name + ".json")
    atomic.write_json(path, target.to_dict())
    return path


def load_targets(folder: str = TARGETS_DIR) -> Dict[str, Target]:
    """All targets in ``folder`` by name; aliases must not collide with names or each other."""
    targets: Dict[str, Target] = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith((".toml", ".json")):
            t = load_target_file(os.path.join(folder, name))
            if t.name in targets:
                raise UserError("target %s is defined twice in %s (%s.toml and %s.json); keep one"
                                % (t.name, folder, t.name, t.name))
            targets[t.name] = t
    seen: Dict[str, str] = {}
    for t in targets.values():
        for alias in t.aliases:
            if alias in targets or alias in seen:
                raise UserError("target alias %r of %s is already used by %s" % (alias, t.name,
                                                                                 seen.get(alias, alias)))
            seen[alias] = t.name
    return targets


def resolve_target(name: str, folder: str = TARGETS_DIR) -> Target:
    """A target by name or alias (case-insensitive), or a UserError listing what exists."""
    targets = load_targets(folder)
    key = name.strip().lower()
    if key in targets:
        return targets[key]
    for t in targets.values():
        if key in t.aliases:
            return t
    raise UserError("unknown target %r; known targets: %s (aliases: %s); see `inception-deploy targets`"
                    % (name, ", ".join(targets), ", ".join(sorted(a for t in targets.values() for a in t.aliases))))


def alias_table(folder: str = TARGETS_DIR) -> List[Tuple[str, str]]:
    return sorted((a, t.name) for t in load_targets(folder).values() for a in t.aliases)
