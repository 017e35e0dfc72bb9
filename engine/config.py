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
EVALUATION_PROTOCOLS = ("episodes", "within-alphabet")
"""``episodes``: random N-way episodes over all chosen classes; ``within-alphabet``: Lake et al. 2015's."""
MAX_TEST_VIEWS = 64
"""The most ``model.test_views`` a backbone embeds with (each view is a forward pass)."""


def param(
    default: Any,
    help: str,
    *,
    label: str = "",
    min: float | None = None,
    max: float | None = None,
    choices: Sequence[Any] | None = None,
    exclusive_min: bool = False,
    basic: bool = False,
    cuda_only: bool = False,
    algorithm_specific: bool = False,
) -> Any:
    """Declare a config field with its default, bounds and help text.

    ``label``: the field's name in the studio's forms, in plain words ("Examples per class (shot)");
    empty: made from the field's name.
    ``help``: one or more sentences, the first saying what the field does (the form's tooltip and
    the CLI's flag help). ``basic``: one of the few settings most people change (the forms show it
    outside "Advanced"). ``cuda_only``: it does something on CUDA devices only. ``algorithm_specific``
    (train fields): only the algorithms whose config lists it in ``train_fields`` read it.
    """
    meta = {"help": help, "label": label, "min": min, "max": max, "choices": tuple(choices) if choices else None,
            "exclusive_min": exclusive_min, "basic": basic, "cuda_only": cuda_only,
            "algorithm_specific": algorithm_specific}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class DataConfig:
    """Where the images come from and how they are preprocessed."""

    root: str = param(BUILTIN_GLYPHS, "Chooses the images to learn from: a folder of class folders (flat, or "
                      "group/class nesting), or 'builtin:glyphs' for the generated glyph data set.", label="Data set")
    image_size: int = param(28, "Resizes every image to this many pixels per side.", label="Image size (pixels)",
                            min=4, max=512)
    channels: int = param(1, "Reads the images as grayscale (1) or colour (3).", label="Colour channels",
                          choices=(1, 3))
    center_crop: float = param(1.0, "Keeps this central share of each image: 1 squashes the whole image to a "
                               "square; below 1 resizes its shorter side to image size / share and cuts out the "
                               "centre square, as pretrained photo networks expect (0.875: 224 of 256).",
                               label="Centre crop (share)", min=0.0, max=1.0, exclusive_min=True)
    split_mode: str = param("ratio", "Chooses how classes are split into training, validation and test: 'ratio' "
                            "(a seeded shuffle of the classes) or 'group' (whole alphabets or groups held out).",
                            label="Split classes by", choices=("ratio", "group"), basic=True)
    train_ratio: float = param(0.6, "Sets the share of the classes used for training (ratio split).",
                               label="Training classes (share)", min=0.0, max=1.0, exclusive_min=True, basic=True)
    val_ratio: float = param(0.2, "Sets the share of the classes used for validation (ratio split); the rest are "
                             "test classes.", label="Validation classes (share)", min=0.0, max=1.0, basic=True)
    val_groups: list[str] = param([], "Names the groups held out for validation (group split).",
                                  label="Validation groups")
    test_groups: list[str] = param([], "Names the groups held out for testing (group split).", label="Test groups")
    split_seed: int = param(0, "Seeds the shuffle of the ratio split: the same seed gives the same split.",
                            label="Split seed", min=0)
    augment_rotations: bool = param(False, "Adds 90/180/270-degree rotations of each training class as new "
                                    "classes (glyphs, as in the ProtoNet paper).", label="Rotations as new classes")
    augment_flips: bool = param(False, "Flips training images horizontally at random (photos).",
                                label="Random flips")
    augment_color_jitter: bool = param(False, "Varies the brightness and contrast of training images at random.",
                                       label="Brightness/contrast jitter")
    augment_affine: bool = param(False, "Shifts, rotates and scales training images a little at random "
                                 "(handwriting: +-2 px, +-10 degrees, +-10%).", label="Small shifts and rotations")
    augment_elastic: bool = param(False, "Bends training images with a smooth random warp, as another hand would "
                                  "write the same character (handwriting; Simard et al. 2003).",
                                  label="Elastic warps")
    cache_budget_mb: int = param(4096, "Limits the memory of the decoded-image cache, in MiB.",
                                 label="Image cache (MiB)", min=1)


@dataclass
class TaskConfig:
    """Shape of the few-shot episodes."""

    n_way: int = param(5, "Sets how many classes each episode asks the model to tell apart (training on more "
                             "ways than the test uses often learns faster: 20-way episodes, one a step, with 5-way "
                             "validation reach 90% on the glyphs 2.9x sooner).",
                       label="Classes per episode (way)", min=2, max=1000, basic=True)
    n_shot: int = param(1, "Sets how many labelled support images each class of an episode gets.",
                        label="Examples per class (shot)", min=1, max=1000, basic=True)
    n_query: int = param(15, "Sets how many query images per class an episode is scored on.",
                         label="Queries per class", min=1, max=1000)
    meta_batch_size: int = param(4, "Sets how many episodes one meta-training step averages over.",
                                 label="Episodes per step", min=1, max=1024)
    val_n_way: int = param(0, "Sets the classes per validation episode (0 = same as n_way; training with more "
                           "ways than testing often helps, as in the ProtoNet paper).",
                           label="Classes per validation episode", min=0, max=1000)
    val_n_shot: int = param(0, "Sets the support images per class of validation episodes (0 = same as n_shot).",
                            label="Examples per validation class", min=0, max=1000)

    @property
    def eval_n_way(self) -> int:
        return self.val_n_way or self.n_way

    @property
    def eval_n_shot(self) -> int:
        return self.val_n_shot or self.n_shot


@dataclass
class ModelConfig:
    """The backbone network."""

    backbone: str = param("conv4", "Chooses the network that turns an image into features: conv4 (4x64 conv "
                          "blocks), resnet12, mlp (2x40, sinusoids), or a torchvision ImageNet network (photos).",
                          label="Network (backbone)", basic=True, choices=(
                              "conv4", "resnet12", "mlp", "resnet18", "resnet34", "resnet50", "mobilenet_v3_small",
                              "mobilenet_v3_large", "efficientnet_b0", "convnext_tiny", "vit_b_16"))
    hidden_channels: int = param(64, "Sets the network's width: filters per conv block (conv4) or base width "
                                 "(resnet12).", label="Network width (filters)", min=1, max=1024)
    weights_path: str = param("", "Starts the backbone from a local state-dict file instead of random weights "
                              "(optional); 'torchvision': a torchvision network's ImageNet file in the PyTorch hub "
                              "cache.", label="Starting weights file")
    test_views: int = param(1, "Embeds each image at test time as the mean of its features and those of test_views - 1 "
                            "fixed small shifts, rotations and shears of it (test-time augmentation: steadier "
                            "features for handwriting, test_views times the time); 1 = off. Training is unchanged.",
                            label="Test-time views", min=1, max=MAX_TEST_VIEWS)


@dataclass
class AlgorithmConfig:
    """Base of the per-algorithm configs; ``name`` selects the implementation."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    train_fields: ClassVar[tuple[str, ...]] = ()
    """The ``algorithm_specific`` train fields this algorithm reads (the forms hide the others)."""

    lr: float = param(1e-3, "Sets the outer (meta) learning rate of Adam: how big each training step is.",
                      label="Learning rate", min=0.0, max=10.0, exclusive_min=True, basic=True)


@dataclass
class ProtoNetConfig(AlgorithmConfig):
    name: ClassVar[str] = "protonet"
    title: ClassVar[str] = "Prototypical Networks"
    summary: ClassVar[str] = ("Classifies a query by its squared Euclidean distance to each class's mean "
                              "embedding (prototype). Snell et al. 2017.")
    train_fields: ClassVar[tuple[str, ...]] = ("cuda_graphs",)


@dataclass
class MAMLConfig(AlgorithmConfig):
    name: ClassVar[str] = "maml"
    title: ClassVar[str] = "MAML"
    summary: ClassVar[str] = ("Learns an initialisation that a few gradient steps on the support set adapt "
                              "to a new task. Finn et al. 2017.")
    train_fields: ClassVar[tuple[str, ...]] = ("task_batching", "vmap_chunk")

    inner_lr: float = param(0.4, "Sets the learning rate of the inner loop during training.",
                            label="Inner learning rate", min=0.0, max=100.0, exclusive_min=True)
    inner_steps: int = param(1, "Sets the gradient steps of the inner loop during training.", label="Inner steps",
                             min=1, max=100)
    test_inner_lr: float = param(0.4, "Sets the learning rate of the inner loop at test and adaptation time.",
                                 label="Inner learning rate at test", min=0.0, max=100.0, exclusive_min=True)
    test_inner_steps: int = param(3, "Sets the gradient steps of the inner loop at test and adaptation time.",
                                  label="Inner steps at test", min=0, max=1000)
    first_order: bool = param(False, "Drops the second-order terms of the meta-gradient (FOMAML): cheaper, "
                              "usually about as accurate.", label="First-order (FOMAML)")
    anil: bool = param(False, "Adapts only the classifier head in the inner loop (ANIL).",
                       label="Adapt the head only (ANIL)")


@dataclass
class FOMAMLConfig(MAMLConfig):
    name: ClassVar[str] = "fomaml"
    title: ClassVar[str] = "First-order MAML"
    summary: ClassVar[str] = "MAML without second-order terms: cheaper meta-gradients. Finn et al. 2017."

    first_order: bool = param(True, "Drops the second-order terms of the meta-gradient (FOMAML): cheaper, "
                              "usually about as accurate.", label="First-order (FOMAML)")


@dataclass
class ReptileConfig(AlgorithmConfig):
    name: ClassVar[str] = "reptile"
    title: ClassVar[str] = "Reptile"
    summary: ClassVar[str] = ("Trains on each task with plain SGD, then moves the initialisation towards the "
                              "adapted weights. Nichol et al. 2018.")

    lr: float = param(1.0, "Sets the outer step size epsilon: how far the initialisation moves towards the "
                      "adapted weights.", label="Outer step size", min=0.0, max=1.0, exclusive_min=True,
                      basic=True)
    inner_lr: float = param(1e-3, "Sets the learning rate of the inner loop's Adam.", label="Inner learning rate",
                            min=0.0, max=10.0, exclusive_min=True)
    inner_steps: int = param(5, "Sets the inner-loop steps during training.", label="Inner steps", min=1, max=1000)
    test_inner_steps: int = param(10, "Sets the inner-loop steps at test and adaptation time.",
                                  label="Inner steps at test", min=0, max=10000)


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

    batch_size: int = param(64, "Sets how many images one pre-training batch holds.", label="Images per batch",
                            min=1, max=4096)
    head: str = param("linear", "Chooses the new head fitted on the support set.", label="New head",
                      choices=("linear", "cosine"))
    finetune_steps: int = param(100, "Sets the gradient steps that fit the new head.", label="Fine-tuning steps",
                                min=0, max=10000)
    finetune_lr: float = param(0.01, "Sets the learning rate that fits the new head.",
                               label="Fine-tuning learning rate", min=0.0, max=100.0, exclusive_min=True)
    cosine_scale: float = param(10.0, "Scales the cosine logits (Baseline++).", label="Cosine scale", min=0.0,
                                max=1000.0, exclusive_min=True)


@dataclass
class BaselinePlusPlusConfig(BaselineConfig):
    name: ClassVar[str] = "baseline++"
    title: ClassVar[str] = "Baseline++ (cosine fine-tuning)"
    summary: ClassVar[str] = ("Like Baseline, but both heads are cosine classifiers, reducing intra-class "
                              "variation. Chen et al. 2019.")

    head: str = param("cosine", "Chooses the new head fitted on the support set.", label="New head",
                      choices=("linear", "cosine"))


@dataclass
class SimpleShotConfig(AlgorithmConfig):
    name: ClassVar[str] = "simpleshot"
    title: ClassVar[str] = "SimpleShot"
    summary: ClassVar[str] = ("Nearest class centroid on pre-trained features after centering and L2 "
                              "normalisation (CL2N). Wang et al. 2019.")

    batch_size: int = param(64, "Sets how many images one pre-training batch holds.", label="Images per batch",
                            min=1, max=4096)
    centering: bool = param(True, "Subtracts the mean training feature before L2-normalising (CL2N, the paper's "
                            "best). Off (L2N) suits test images unlike the training ones, such as real handwriting "
                            "after training on the built-in glyphs.", label="Centre on the training mean")


ALGORITHM_CONFIGS: dict[str, type[AlgorithmConfig]] = {
    cls.name: cls
    for cls in (ProtoNetConfig, MAMLConfig, FOMAMLConfig, ReptileConfig, MatchingConfig,
                BaselineConfig, BaselinePlusPlusConfig, SimpleShotConfig)
}


@dataclass
class TrainConfig:
    """The training loop."""

    steps: int = param(2000, "Sets how long training runs, in meta-training steps (one step = one meta-batch "
                       "of episodes).", label="Training steps", min=1, max=10_000_000, basic=True)
    val_every: int = param(200, "Validates every this many steps (0 = only at the end).",
                           label="Validate every (steps)", min=0)
    val_episodes: int = param(100, "Sets how many episodes one validation averages over.",
                              label="Validation episodes", min=1, max=100_000)
    checkpoint_every: int = param(200, "Saves the last checkpoint every this many steps.",
                                  label="Save every (steps)", min=1)
    lr_schedule: str = param("constant", "Chooses how the outer learning rate changes: constant; step (multiply "
                             "by lr_decay_factor every lr_decay_every steps, as in the ProtoNet paper); cosine "
                             "(from the set rate down to 0 at the last step).", label="Learning-rate schedule",
                             choices=("constant", "step", "cosine"))
    lr_decay_every: int = param(2000, "Decays the learning rate every this many steps (step schedule).",
                                label="Decay every (steps)", min=1)
    lr_decay_factor: float = param(0.5, "Multiplies the learning rate by this at each decay (step schedule).",
                                   label="Decay factor", min=0.0, max=1.0, exclusive_min=True)
    seed: int = param(0, "Seeds everything random in the run: the same seed gives the same run.",
                      label="Random seed", min=0)
    device: str = param("cpu", "Chooses where the run trains: cpu, cuda, cuda:N or mps.", label="Device",
                        basic=True)
    num_threads: int = param(0, "Sets the CPU threads of PyTorch (0 = PyTorch's default).", label="CPU threads",
                             min=0, max=1024)
    precision: str = param("auto", "Chooses the arithmetic of forward passes: auto (bf16 where it is faster: CPUs "
                           "with AMX-BF16, CPUs with AVX512-BF16 where a probe step runs faster in it, CUDA GPUs with "
                           "bf16; else fp32); fp32; bf16 (mixed precision, CUDA or CPU); fp16 (mixed precision with "
                           "loss scaling, CUDA only). Weights stay float32.",
                           label="Precision", choices=("auto", "fp32", "bf16", "fp16"))
    channels_last: str = param("auto", "Chooses the memory format of conv weights and image batches: on "
                               "(channels-last), off (NCHW), or auto (channels-last on the CPU, measured "
                               "1.24-1.63x faster training steps, and on GPUs for images of 64 px and more; see "
                               "bench/README.md). On the CPU its BatchNorm sums in float32 (results differ from "
                               "NCHW at the 1e-4 level, like TF32 on GPUs).", label="Memory format",
                               choices=CHANNELS_LAST)
    task_batching: str = param("auto", "Chooses how MAML runs the tasks of a meta-batch: loop (one task at a time, "
                               "least memory), vmap (all tasks at once with torch.func; faster on a GPU, memory "
                               "grows with the meta-batch), or auto (loop on the CPU; on a GPU a short benchmark at "
                               "the first step picks the faster path that fits in memory).", label="Task batching",
                               choices=("auto", "loop", "vmap"), algorithm_specific=True)
    vmap_chunk: int = param(0, "Sets how many tasks one vmap call takes when MAML batches tasks with vmap (0 = "
                            "the whole meta-batch). Each chunk's graph is freed before the next, so peak memory "
                            "grows with the chunk, not the meta-batch; smaller chunks trade speed for memory.",
                            label="Tasks per vmap call", min=0, max=1024, algorithm_specific=True)
    cuda_graphs: bool = param(True, "Records ProtoNet's forward and backward once as CUDA graphs and replays them "
                              "every step on CUDA devices (the same kernels, launched as one; small episodes are "
                              "bound by kernel launches). Falls back to eager steps by itself when the episode "
                              "shape keeps changing or recording fails. Ignored on the CPU.", label="CUDA graphs",
                              cuda_only=True, algorithm_specific=True)
    tensorboard: bool = param(False, "Also writes TensorBoard event files (the scalars of metrics.jsonl, the config "
                              "as hyperparameters) to the run's tensorboard/ folder.", label="TensorBoard logs")


def param_like(section_cls: type, name: str, default: Any = dataclasses.MISSING, help: str = "",
               label: str = "") -> Any:
    """A field with the bounds and choices of ``section_cls``'s field ``name`` (declared once, there); its
    default, help text and label too, unless given."""
    source = {f.name: f for f in dataclasses.fields(section_cls)}[name]
    meta = source.metadata
    if default is dataclasses.MISSING:
        default = source.default_factory() if source.default_factory is not dataclasses.MISSING else source.default
    return param(default, help or meta["help"], label=label or meta["label"], min=meta["min"], max=meta["max"],
                 choices=meta["choices"], exclusive_min=meta["exclusive_min"], basic=meta["basic"],
                 cuda_only=meta["cuda_only"], algorithm_specific=meta["algorithm_specific"])


@dataclass
class EpisodeShape:
    """The episodes an analysis view draws from a trained run (evaluation, the episode inspector, the
    inner-loop scrubber): their shape and how many. Bounds are the run config's (``task.*`` and
    ``train.val_episodes``), so a view accepts what a run accepts."""

    n_way: int = param_like(TaskConfig, "n_way", label="Classes (way)")
    n_shot: int = param_like(TaskConfig, "n_shot", label="Examples (shot)")
    n_query: int = param_like(TaskConfig, "n_query", label="Queries")
    episodes: int = param_like(TrainConfig, "val_episodes", 600,
                               "Sets how many episodes the result averages over (600 is the usual protocol).",
                               label="Episodes")


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
    label: str = ""
    basic: bool = False
    cuda_only: bool = False
    algorithm_specific: bool = False

    @property
    def key(self) -> str:
        return f"{self.section}.{self.name}"

    @property
    def title(self) -> str:
        """The field's name in plain words: its declared label, else its name ('split_seed' -> 'Split seed')."""
        if self.label:
            return self.label
        text = self.name.replace("_", " ")
        return text[:1].upper() + text[1:]

    def applies(self, algorithm: type | None = None, device: str = "cpu") -> bool:
        """Whether the field does anything in a run of ``algorithm`` (an AlgorithmConfig class; None: any)
        on ``device`` (a ``train.device`` value): CUDA-only fields need a CUDA device, algorithm-specific
        train fields an algorithm whose config lists them in ``train_fields``."""
        if self.cuda_only and not str(device).startswith("cuda"):
            return False
        if self.algorithm_specific and algorithm is not None:
            return self.name in getattr(algorithm, "train_fields", ())
        return True


def describe_fields(section_cls: type, section: str) -> list[FieldSpec]:
    """List the declared fields of a config dataclass (defaults, bounds, help, label, flags)."""
    specs = []
    for f in dataclasses.fields(section_cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        meta = f.metadata
        specs.append(FieldSpec(section, f.name, _field_type(f), default, meta.get("help", ""),
                               meta.get("min"), meta.get("max"), meta.get("choices"),
                               bool(meta.get("exclusive_min")), meta.get("label", ""), bool(meta.get("basic")),
                               bool(meta.get("cuda_only")), bool(meta.get("algorithm_specific"))))
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
