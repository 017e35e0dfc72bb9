"""Typed run configuration: every hyperparameter is declared once, here.

Each field carries its default, bounds and help text in ``dataclasses.field``
metadata. The CLI flags and the studio's hyperparameter form are generated from
these declarations (see :func:`describe_fields`), and :func:`validate` checks
them, raising :class:`~engine.errors.ConfigError` naming the field.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

from engine.errors import ConfigError

BUILTIN_GLYPHS = "builtin:glyphs"
CHANNELS_LAST = ("auto", "on", "off")


def param(
    default: Any,
    help: str,
    *,
    min: float | None = None,
    max: float | None = None,
    choices: Sequence[Any] | None = None,
    exclusive_min: bool = False,
) -> Any:
    """Declare a config field with its default, bounds and help text."""
    meta = {"help": help, "min": min, "max": max, "choices": tuple(choices) if choices else None,
            "exclusive_min": exclusive_min}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class DataConfig:
    """Where the images come from and how they are preprocessed."""

    root: str = param(BUILTIN_GLYPHS, "Dataset folder (flat class folders or group/class nesting), "
                      "or 'builtin:glyphs' for the generated glyph data set.")
    image_size: int = param(28, "Images are resized to this many pixels per side.", min=4, max=512)
    channels: int = param(1, "1 = grayscale, 3 = colour.", choices=(1, 3))
    split_mode: str = param("ratio", "How classes are split: 'ratio' (seeded shuffle) or 'group' "
                            "(whole alphabets/groups held out).", choices=("ratio", "group"))
    train_ratio: float = param(0.6, "Fraction of classes used for training (ratio split).",
                               min=0.0, max=1.0, exclusive_min=True)
    val_ratio: float = param(0.2, "Fraction of classes used for validation (ratio split).", min=0.0, max=1.0)
    val_groups: list[str] = param([], "Groups held out for validation (group split).")
    test_groups: list[str] = param([], "Groups held out for testing (group split).")
    split_seed: int = param(0, "Seed of the class split.", min=0)
    augment_rotations: bool = param(False, "Add 90/180/270-degree rotations of each training class "
                                    "as new classes (glyphs, as in the ProtoNet paper).")
    augment_flips: bool = param(False, "Random horizontal flips of training images (photos).")
    augment_color_jitter: bool = param(False, "Random brightness/contrast jitter of training images.")
    augment_affine: bool = param(False, "Random small shifts, rotations and scaling of training images "
                                 "(handwriting: +-2 px, +-10 degrees, +-10%).")
    cache_budget_mb: int = param(4096, "Memory budget of the decoded-image cache in MiB.", min=1)


@dataclass
class TaskConfig:
    """Shape of the few-shot episodes."""

    n_way: int = param(5, "Classes per episode.", min=2, max=1000)
    n_shot: int = param(1, "Labelled support images per class.", min=1, max=1000)
    n_query: int = param(15, "Query images per class.", min=1, max=1000)
    meta_batch_size: int = param(4, "Episodes per meta-training step.", min=1, max=1024)
    val_n_way: int = param(0, "Classes per validation episode (0 = same as n_way; training with more "
                           "ways than testing often helps, as in the ProtoNet paper).", min=0, max=1000)
    val_n_shot: int = param(0, "Support images per class in validation episodes (0 = same as n_shot).",
                            min=0, max=1000)

    @property
    def eval_n_way(self) -> int:
        return self.val_n_way or self.n_way

    @property
    def eval_n_shot(self) -> int:
        return self.val_n_shot or self.n_shot


@dataclass
class ModelConfig:
    """The backbone network."""

    backbone: str = param("conv4", "Network: conv4 (4x64 conv blocks), resnet12, or mlp (2x40, sinusoids).",
                          choices=("conv4", "resnet12", "mlp"))
    hidden_channels: int = param(64, "Filters per conv block (conv4) / base width (resnet12).", min=1, max=1024)
    weights_path: str = param("", "Optional local state-dict file to start the backbone from.")


@dataclass
class AlgorithmConfig:
    """Base of the per-algorithm configs; ``name`` selects the implementation."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    summary: ClassVar[str] = ""

    lr: float = param(1e-3, "Outer (meta) learning rate of Adam.", min=0.0, max=10.0, exclusive_min=True)


@dataclass
class ProtoNetConfig(AlgorithmConfig):
    name: ClassVar[str] = "protonet"
    title: ClassVar[str] = "Prototypical Networks"
    summary: ClassVar[str] = ("Classifies a query by its squared Euclidean distance to each class's mean "
                              "embedding (prototype). Snell et al. 2017.")


@dataclass
class MAMLConfig(AlgorithmConfig):
    name: ClassVar[str] = "maml"
    title: ClassVar[str] = "MAML"
    summary: ClassVar[str] = ("Learns an initialisation that a few gradient steps on the support set adapt "
                              "to a new task. Finn et al. 2017.")

    inner_lr: float = param(0.4, "Inner-loop learning rate (training).", min=0.0, max=100.0, exclusive_min=True)
    inner_steps: int = param(1, "Inner-loop gradient steps (training).", min=1, max=100)
    test_inner_lr: float = param(0.4, "Inner-loop learning rate at test/adaptation time.", min=0.0, max=100.0,
                                 exclusive_min=True)
    test_inner_steps: int = param(3, "Inner-loop gradient steps at test/adaptation time.", min=0, max=1000)
    first_order: bool = param(False, "Drop second-order terms of the meta-gradient (FOMAML).")
    anil: bool = param(False, "ANIL: adapt only the classifier head in the inner loop.")


@dataclass
class FOMAMLConfig(MAMLConfig):
    name: ClassVar[str] = "fomaml"
    title: ClassVar[str] = "First-order MAML"
    summary: ClassVar[str] = "MAML without second-order terms: cheaper meta-gradients. Finn et al. 2017."

    first_order: bool = param(True, "Drop second-order terms of the meta-gradient (FOMAML).")


@dataclass
class ReptileConfig(AlgorithmConfig):
    name: ClassVar[str] = "reptile"
    title: ClassVar[str] = "Reptile"
    summary: ClassVar[str] = ("Trains on each task with plain SGD, then moves the initialisation towards the "
                              "adapted weights. Nichol et al. 2018.")

    lr: float = param(1.0, "Outer step size epsilon (interpolation towards adapted weights).",
                      min=0.0, max=1.0, exclusive_min=True)
    inner_lr: float = param(1e-3, "Inner-loop Adam learning rate.", min=0.0, max=10.0, exclusive_min=True)
    inner_steps: int = param(5, "Inner-loop steps (training).", min=1, max=1000)
    test_inner_steps: int = param(10, "Inner-loop steps at test/adaptation time.", min=0, max=10000)


@dataclass
class MatchingConfig(AlgorithmConfig):
    name: ClassVar[str] = "matching"
    title: ClassVar[str] = "Matching Networks"
    summary: ClassVar[str] = ("Labels a query by cosine-similarity attention over the support embeddings. "
                              "Vinyals et al. 2016 (without full-context embeddings).")


@dataclass
class BaselineConfig(AlgorithmConfig):
    name: ClassVar[str] = "baseline"
    title: ClassVar[str] = "Baseline (fine-tuning)"
    summary: ClassVar[str] = ("Pre-trains a classifier on all training classes, then fits a new linear head "
                              "on the support set. Chen et al. 2019.")

    batch_size: int = param(64, "Images per pre-training batch.", min=1, max=4096)
    head: str = param("linear", "New head fitted on the support set.", choices=("linear", "cosine"))
    finetune_steps: int = param(100, "Gradient steps fitting the new head.", min=0, max=10000)
    finetune_lr: float = param(0.01, "Learning rate fitting the new head.", min=0.0, max=100.0, exclusive_min=True)
    cosine_scale: float = param(10.0, "Scale of cosine logits (Baseline++).", min=0.0, max=1000.0,
                                exclusive_min=True)


@dataclass
class BaselinePlusPlusConfig(BaselineConfig):
    name: ClassVar[str] = "baseline++"
    title: ClassVar[str] = "Baseline++ (cosine fine-tuning)"
    summary: ClassVar[str] = ("Like Baseline, but both heads are cosine classifiers, reducing intra-class "
                              "variation. Chen et al. 2019.")

    head: str = param("cosine", "New head fitted on the support set.", choices=("linear", "cosine"))


@dataclass
class SimpleShotConfig(AlgorithmConfig):
    name: ClassVar[str] = "simpleshot"
    title: ClassVar[str] = "SimpleShot"
    summary: ClassVar[str] = ("Nearest class centroid on pre-trained features after centering and L2 "
                              "normalisation (CL2N). Wang et al. 2019.")

    batch_size: int = param(64, "Images per pre-training batch.", min=1, max=4096)


ALGORITHM_CONFIGS: dict[str, type[AlgorithmConfig]] = {
    cls.name: cls
    for cls in (ProtoNetConfig, MAMLConfig, FOMAMLConfig, ReptileConfig, MatchingConfig,
                BaselineConfig, BaselinePlusPlusConfig, SimpleShotConfig)
}


@dataclass
class TrainConfig:
    """The training loop."""

    steps: int = param(2000, "Meta-training steps (one step = one meta-batch of episodes).", min=1, max=10_000_000)
    val_every: int = param(200, "Validate every this many steps (0 = only at the end).", min=0)
    val_episodes: int = param(100, "Episodes per validation.", min=1, max=100_000)
    checkpoint_every: int = param(200, "Save the last checkpoint every this many steps.", min=1)
    lr_schedule: str = param("constant", "Outer learning-rate schedule: constant; step (multiply by "
                             "lr_decay_factor every lr_decay_every steps, as in the ProtoNet paper); cosine "
                             "(from the set rate down to 0 at the last step).",
                             choices=("constant", "step", "cosine"))
    lr_decay_every: int = param(2000, "Step schedule: decay the learning rate every this many steps.", min=1)
    lr_decay_factor: float = param(0.5, "Step schedule: multiply the learning rate by this at each decay.",
                                   min=0.0, max=1.0, exclusive_min=True)
    seed: int = param(0, "Seed of everything random in the run.", min=0)
    device: str = param("cpu", "cpu, cuda, cuda:N or mps.")
    num_threads: int = param(0, "CPU threads for PyTorch (0 = PyTorch's default).", min=0, max=1024)
    precision: str = param("fp32", "Arithmetic of forward passes: fp32; bf16 (mixed precision, CUDA or CPU); "
                           "fp16 (mixed precision with loss scaling, CUDA only). Weights stay float32.",
                           choices=("fp32", "bf16", "fp16"))
    channels_last: str = param("auto", "Memory format of conv weights and image batches: on (channels-last), off "
                               "(NCHW), or auto (channels-last on the CPU, measured 1.24-1.63x faster training "
                               "steps, and on GPUs for images of 64 px and more; see bench/README.md). On the CPU "
                               "its BatchNorm sums in float32 (results differ from NCHW at the 1e-4 level, like "
                               "TF32 on GPUs).",
                               choices=CHANNELS_LAST)
    task_batching: str = param("auto", "How MAML runs the tasks of a meta-batch: loop (one task at a time, "
                               "least memory), vmap (all tasks at once with torch.func; faster on a GPU, "
                               "memory grows with the meta-batch), or auto (loop on the CPU; on a GPU a short "
                               "benchmark at the first step picks the faster path that fits in memory).",
                               choices=("auto", "loop", "vmap"))
    vmap_chunk: int = param(0, "MAML with vmap: tasks per vmap call (0 = the whole meta-batch). Each chunk's graph "
                            "is freed before the next, so peak memory grows with the chunk, not the meta-batch; "
                            "smaller chunks trade speed for memory.", min=0, max=1024)
    cuda_graphs: bool = param(True, "On CUDA devices, record ProtoNet's forward and backward once as CUDA graphs and "
                              "replay them every step (the same kernels, launched as one; small episodes are "
                              "bound by kernel launches). Falls back to eager steps by itself when the episode "
                              "shape keeps changing or recording fails. Ignored on the CPU.")


def param_like(section_cls: type, name: str, default: Any = dataclasses.MISSING, help: str = "") -> Any:
    """A field with the bounds and choices of ``section_cls``'s field ``name`` (declared once, there); its
    default and help text too, unless given."""
    source = {f.name: f for f in dataclasses.fields(section_cls)}[name]
    meta = source.metadata
    if default is dataclasses.MISSING:
        default = source.default_factory() if source.default_factory is not dataclasses.MISSING else source.default
    return param(default, help or meta["help"], min=meta["min"], max=meta["max"], choices=meta["choices"],
                 exclusive_min=meta["exclusive_min"])


@dataclass
class EpisodeShape:
    """The episodes an analysis view draws from a trained run (evaluation, the episode inspector, the
    inner-loop scrubber): their shape and how many. Bounds are the run config's (``task.*`` and
    ``train.val_episodes``), so a view accepts what a run accepts."""

    n_way: int = param_like(TaskConfig, "n_way")
    n_shot: int = param_like(TaskConfig, "n_shot")
    n_query: int = param_like(TaskConfig, "n_query")
    episodes: int = param_like(TrainConfig, "val_episodes", 600,
                               "Episodes to average over (600 is the usual protocol).")


@dataclass
class RunConfig:
    """Everything that defines a run; saved as config.json in the run folder."""

    data: DataConfig = field(default_factory=DataConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    algorithm: AlgorithmConfig = field(default_factory=ProtoNetConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    name: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; the algorithm section carries its ``name``."""
        out = {
            "name": self.name,
            "data": dataclasses.asdict(self.data),
            "task": dataclasses.asdict(self.task),
            "model": dataclasses.asdict(self.model),
            "algorithm": {"name": self.algorithm.name, **dataclasses.asdict(self.algorithm)},
            "train": dataclasses.asdict(self.train),
        }
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "RunConfig":
        """Build and validate a config from a dict (e.g. parsed JSON); unknown keys are errors."""
        if not isinstance(raw, dict):
            raise ConfigError("config must be a JSON object")
        unknown = set(raw) - {"name", "data", "task", "model", "algorithm", "train"}
        if unknown:
            raise ConfigError(f"unknown config section(s): {', '.join(sorted(unknown))}")
        algo_raw = dict(raw.get("algorithm") or {})
        algo_name = algo_raw.pop("name", ProtoNetConfig.name)
        if algo_name not in ALGORITHM_CONFIGS:
            raise ConfigError(f"algorithm.name: unknown algorithm {algo_name!r}; "
                              f"choose one of {', '.join(ALGORITHM_CONFIGS)}")
        config = cls(
            name=str(raw.get("name", "")),
            data=config_section(DataConfig, raw.get("data"), "data"),
            task=config_section(TaskConfig, raw.get("task"), "task"),
            model=config_section(ModelConfig, raw.get("model"), "model"),
            algorithm=config_section(ALGORITHM_CONFIGS[algo_name], algo_raw, "algorithm"),
            train=config_section(TrainConfig, raw.get("train"), "train"),
        )
        validate(config)
        return config


def config_section(cls: type, raw: Any, prefix: str) -> Any:
    """One config dataclass ``cls`` from its JSON object ``raw`` (None: the defaults), each value coerced to
    the declared type; ConfigError names ``prefix.field`` for an unknown field or a bad value."""
    if raw is None:
        return cls()
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix}: expected an object, got {type(raw).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(raw) - names
    if unknown:
        raise ConfigError(f"{prefix}.{sorted(unknown)[0]}: unknown field")
    values = {key: _coerce(cls, key, value, prefix) for key, value in raw.items()}
    return cls(**values)


def _coerce(cls: type, key: str, value: Any, prefix: str) -> Any:
    declared = {f.name: f for f in dataclasses.fields(cls)}[key]
    kind = _field_type(declared)
    try:
        if kind is bool:
            if isinstance(value, str):
                if value.lower() in ("true", "1", "yes", "on"):
                    return True
                if value.lower() in ("false", "0", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if kind is float:
            return float(value)
        if kind is list:
            if isinstance(value, str):
                return [v.strip() for v in value.split(",") if v.strip()]
            return [str(v) for v in value]
        if set(declared.metadata.get("choices") or ()) >= {"on", "off"}:
            return _on_off(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{prefix}.{key}: expected {kind.__name__}, got {value!r}") from None


def _on_off(value: Any) -> str:
    """An on/off/auto switch that was a bool in older run configs and flags: true -> on, false -> off."""
    text = str(value).lower()
    if text in ("true", "1", "yes"):
        return "on"
    if text in ("false", "0", "no"):
        return "off"
    return str(value)


def _field_type(f: dataclasses.Field) -> type:
    text = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    for name, kind in (("bool", bool), ("int", int), ("float", float), ("list", list)):
        if text.startswith(name):
            return kind
    return str


@dataclass(frozen=True)
class FieldSpec:
    """What a form or a CLI needs to know about one config field."""

    section: str
    name: str
    kind: type
    default: Any
    help: str
    min: float | None
    max: float | None
    choices: tuple[Any, ...] | None
    exclusive_min: bool

    @property
    def key(self) -> str:
        return f"{self.section}.{self.name}"


def describe_fields(section_cls: type, section: str) -> list[FieldSpec]:
    """List the declared fields of a config dataclass (defaults, bounds, help)."""
    specs = []
    for f in dataclasses.fields(section_cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        meta = f.metadata
        specs.append(FieldSpec(section, f.name, _field_type(f), default, meta.get("help", ""),
                               meta.get("min"), meta.get("max"), meta.get("choices"),
                               bool(meta.get("exclusive_min"))))
    return specs


def check_field(spec: FieldSpec, value: Any) -> str | None:
    """Return an error message for ``value`` in ``spec``'s field, or None when valid."""
    if spec.kind in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{spec.key} must be a number (got {value!r})"
        if isinstance(value, float) and not math.isfinite(value):
            return f"{spec.key} must be finite (got {value!r})"
        if spec.min is not None:
            if spec.exclusive_min and value <= spec.min:
                return f"{spec.key} must be greater than {spec.min:g} (got {value:g})"
            if value < spec.min:
                return f"{spec.key} must be at least {spec.min:g} (got {value:g})"
        if spec.max is not None and value > spec.max:
            return f"{spec.key} must be at most {spec.max:g} (got {value:g})"
    if spec.choices is not None and value not in spec.choices:
        return f"{spec.key} must be one of {', '.join(map(str, spec.choices))} (got {value!r})"
    return None


def config_sections(config: RunConfig) -> list[tuple[str, Any]]:
    """The (section name, dataclass instance) pairs of a run config."""
    return [("data", config.data), ("task", config.task), ("model", config.model),
            ("algorithm", config.algorithm), ("train", config.train)]


def validate(config: RunConfig) -> RunConfig:
    """Check every field's bounds and the cross-field rules; raise ConfigError naming the field."""
    for section, obj in config_sections(config):
        for spec in describe_fields(type(obj), section):
            message = check_field(spec, getattr(obj, spec.name))
            if message:
                raise ConfigError(message)
    if config.data.split_mode == "ratio" and config.data.train_ratio + config.data.val_ratio >= 1.0:
        raise ConfigError("data.train_ratio + data.val_ratio must be below 1 so that test classes remain "
                          f"(got {config.data.train_ratio:g} + {config.data.val_ratio:g})")
    if config.model.backbone == "mlp":
        raise ConfigError("model.backbone 'mlp' is for sinusoid regression; image runs need conv4 or resnet12")
    return config


def resolve_channels_last(setting: str, device: "Any", image_size: int = 0) -> bool:
    """Whether ``train.channels_last`` (auto | on | off; older configs: true | false) means channels-last
    for a run on ``device`` (a ``torch.device``) with ``image_size``-pixel images.

    auto: on the CPU always; on a GPU for images of ``GPU_CHANNELS_LAST_FROM`` pixels and more.
    Measured (``bench/bench_layouts.py``, training steps, channels-last against NCHW):
    CPU, 1 thread: ProtoNet Conv-4 28 px 1.63x faster, second-order MAML 1.33x, first-order
    1.47x, ProtoNet ResNet-12 84 px 1.24x. H100: ResNet-12 84 px 1.22x (fp32) and 1.02x
    (bf16), but Conv-4 at 28 px 0.92x (ProtoNet) and 0.87x (second-order MAML) in fp32:
    steps that small are bound by kernel launches, and the layout only adds conversions.
    The price on the CPU: PyTorch's channels-last BatchNorm kernel sums in float32, so
    activations differ from NCHW by ~1e-4 relative (gradients ~1e-2 on a glyph episode),
    the size of the TF32 rounding GPUs use by default; "off" gives NCHW's accurate sums.
    """
    if isinstance(setting, bool):
        return setting
    if setting not in CHANNELS_LAST:
        raise ConfigError(f"train.channels_last must be one of {', '.join(CHANNELS_LAST)} (got {setting!r})")
    if setting != "auto":
        return setting == "on"
    return getattr(device, "type", str(device)) == "cpu" or image_size >= GPU_CHANNELS_LAST_FROM


GPU_CHANNELS_LAST_FROM = 64
