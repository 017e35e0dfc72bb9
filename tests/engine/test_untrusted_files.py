"""Checkpoints and adapted classifiers from someone else are data, never code.

Every loader (training checkpoints, starting weights, adapted classifiers, resuming, the CLI)
refuses a file whose unpickling would run code, without running it; and refuses, naming the
file, a checkpoint whose config fails validation or whose weights do not fit that config.
"""

from __future__ import annotations

import ast
import copy
import io
import os
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.config import ModelConfig
from engine.errors import CheckpointError, EngineError
from engine.models.registry import build_backbone, load_weights
from engine.training import run_store as rs
from engine.training.checkpoint import FORMAT, load_algorithm, load_checkpoint, read_payload
from engine.training.trainer import Trainer

from .helpers import tiny_config

REPO = Path(__file__).resolve().parents[2]

import engine.adapted as adapted_module


class RunsCode:
    """Unpickling this object runs a shell command that creates ``marker`` (what a malicious file does)."""

    def __init__(self, marker: Path, via: str = "os.system") -> None:
        self.marker, self.via = marker, via

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        if self.via == "eval":
            return (eval, (f"open({str(self.marker)!r}, 'w').write('code ran')",))
        return (os.system, (f"touch '{self.marker}'",))


# -- fixtures ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_flat: Path) -> Path:
    """A real checkpoint (with optimiser state) of a 2-step tiny ProtoNet run."""
    config = tiny_config(tiny_flat, steps=2)
    config.model.hidden_channels = 8
    config.train.val_episodes = 2
    config.train.num_threads = 1
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    assert Trainer(config, run_dir=run_dir).run().status == "finished"
    return run_dir / rs.CHECKPOINT_DIR / rs.LAST_CHECKPOINT


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "code-ran.txt"


def _payload(path: Path) -> dict[str, Any]:
    return copy.deepcopy(torch.load(path, map_location="cpu", weights_only=True))


# -- malicious files ---------------------------------------------------------------------------------------------
def _raw_pickle(path: Path, marker: Path, good: Path) -> None:
    path.write_bytes(pickle.dumps({"format": FORMAT, "config": RunsCode(marker)}, protocol=2))


def _torch_save_dict(path: Path, marker: Path, good: Path) -> None:
    torch.save({"format": FORMAT, "payload": RunsCode(marker)}, path)


def _hidden_in_real_checkpoint(path: Path, marker: Path, good: Path) -> None:
    payload = _payload(good)
    payload["extra"]["note"] = {"looks": ["harmless", RunsCode(marker, via="eval")]}
    torch.save(payload, path)


def _hidden_in_weights(path: Path, marker: Path, good: Path) -> None:
    payload = _payload(good)
    payload["algorithm"]["modules"]["backbone"]["blocks.0.0.weight"] = RunsCode(marker)
    payload["state_dict"] = payload["algorithm"]["modules"]["backbone"]  # for load_weights
    torch.save(payload, path)


def _legacy_format(path: Path, marker: Path, good: Path) -> None:
    payload = _payload(good)
    payload["extra"]["note"] = RunsCode(marker)
    torch.save(payload, path, _use_new_zipfile_serialization=False)


MALICIOUS = {"raw pickle.dumps named .pt": _raw_pickle, "torch.save of a dict": _torch_save_dict,
             "hidden in a real checkpoint": _hidden_in_real_checkpoint, "hidden among the weights": _hidden_in_weights,
             "legacy non-zip torch.save": _legacy_format}


def _load_checkpoint(path: Path) -> None:
    load_checkpoint(path)


def _load_algorithm(path: Path) -> None:
    load_algorithm(path)


def _load_weights(path: Path) -> None:
    load_weights(build_backbone(ModelConfig(hidden_channels=8), 1, 28), path)


def _load_adapted(path: Path) -> None:
    adapted_module.load_adapted(path)


LOADERS = {"load_checkpoint": _load_checkpoint, "load_algorithm": _load_algorithm, "load_weights": _load_weights,
           "load_adapted": _load_adapted}


def test_the_malicious_payload_really_runs_code_when_unpickled_unsafely(marker: Path) -> None:
    """The sanity check behind every test below: without weights_only the marker appears."""
    pickle.loads(pickle.dumps(RunsCode(marker)))
    assert marker.exists()
    marker.unlink()
    pickle.loads(pickle.dumps(RunsCode(marker, via="eval")))
    assert marker.exists()


@pytest.mark.parametrize("make", MALICIOUS.values(), ids=MALICIOUS.keys())
@pytest.mark.parametrize("loader", LOADERS.values(), ids=LOADERS.keys())
def test_a_file_that_would_run_code_is_refused_without_running_it(tmp_path: Path, marker: Path, trained: Path,
                                                                  make: Callable, loader: Callable) -> None:
    evil = tmp_path / "from-a-stranger.pt"
    make(evil, marker, trained)
    with pytest.raises(CheckpointError) as error:
        loader(evil)
    assert str(evil) in str(error.value)
    assert not marker.exists()


def test_resuming_a_run_whose_checkpoint_was_replaced_fails_without_running_code(
        tmp_path: Path, marker: Path, trained: Path) -> None:
    run_dir = tmp_path / "run"
    (run_dir / rs.CHECKPOINT_DIR).mkdir(parents=True)
    for name in (rs.CONFIG_FILE, rs.SPLIT_FILE, rs.RUN_FILE):
        (run_dir / name).write_bytes((trained.parents[1] / name).read_bytes())
    _hidden_in_real_checkpoint(run_dir / rs.CHECKPOINT_DIR / rs.LAST_CHECKPOINT, marker, trained)
    summary = Trainer.resume(run_dir).run()
    assert summary.status == "failed" and rs.LAST_CHECKPOINT in summary.message and "refused" in summary.message
    assert not marker.exists()


def test_the_cli_refuses_a_malicious_checkpoint_with_exit_status_2(tmp_path: Path, marker: Path, trained: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    from engine.cli import main

    evil = tmp_path / "evil.pt"
    _legacy_format(evil, marker, trained)
    assert main(["evaluate", "--checkpoint", str(evil), "--episodes", "2"]) == 2
    assert str(evil) in capsys.readouterr().err
    assert not marker.exists()


# -- files that are data, but wrong -----------------------------------------------------------------------------
def _set(*keys: str, value: Any) -> Callable[[dict], None]:
    def edit(payload: dict) -> None:
        target = payload
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value(target[keys[-1]]) if callable(value) else value
    return edit


def _drop(*keys: str) -> Callable[[dict], None]:
    def edit(payload: dict) -> None:
        target = payload
        for key in keys[:-1]:
            target = target[key]
        del target[keys[-1]]
    return edit


def _first_optimizer_moment(payload: dict) -> None:
    optimizers = payload["algorithm"]["optimizers"]
    state = next(iter(optimizers.values()))["state"]
    moments = next(iter(state.values()))
    moments["exp_avg"] = torch.zeros(3, 3)


BACKBONE = ("algorithm", "modules", "backbone")
TAMPERED = {
    "config fails validation": (_set("config", "task", "n_way", value=1), "task.n_way"),
    "unknown algorithm": (_set("config", "algorithm", "name", value="rm -rf"), "algorithm.name"),
    "unknown config field": (_set("config", "train", "post_install_hook", value="curl"), "post_install_hook"),
    "config wants other shapes": (_set("config", "model", "hidden_channels", value=16), "needs (16"),
    "a weight with an edited shape": (_set(*BACKBONE, "blocks.0.0.weight", value=lambda t: t[:, :, :2]),
                                      "blocks.0.0.weight"),
    "a missing weight": (_drop(*BACKBONE, "blocks.0.0.weight"), "blocks.0.0.weight"),
    "an unexpected weight": (_set(*BACKBONE, "extra.weight", value=torch.zeros(2)), "extra.weight"),
    "a weight that is not a tensor": (_set(*BACKBONE, "blocks.0.0.weight", value=[1.0, 2.0]), "blocks.0.0.weight"),
    "a NaN weight": (_set(*BACKBONE, "blocks.0.0.weight", value=lambda t: t * float("nan")), "NaN"),
    "optimiser state of another shape": (_first_optimizer_moment, "exp_avg"),
    "a billion training classes": (_set("n_train_classes", value=10**9), "n_train_classes"),
    "preprocessing that contradicts the config": (_set("preprocessing", "image_size", value=84), "preprocessing"),
    "split that is not a split": (_set("split", value="train=all"), "split"),
    "negative step": (_set("step", value=-5), "step"),
    "no weights": (_set("algorithm", value={"modules": "none"}), "weights"),
}


@pytest.mark.parametrize("edit,needle", TAMPERED.values(), ids=TAMPERED.keys())
def test_a_checkpoint_that_does_not_hold_together_is_refused_naming_the_file(
        tmp_path: Path, trained: Path, edit: Callable, needle: str) -> None:
    payload = _payload(trained)
    edit(payload)
    bad = tmp_path / "tampered.pt"
    torch.save(payload, bad)
    with pytest.raises(CheckpointError) as error:
        load_algorithm(bad)
    message = str(error.value)
    assert str(bad) in message and needle in message, message


def test_the_untampered_checkpoint_loads(trained: Path) -> None:
    """The control of the test above: the same file, re-saved unchanged, loads."""
    algorithm, checkpoint = load_algorithm(trained)
    assert checkpoint.step == 2 and algorithm.state_dict()["modules"]["backbone"]


def test_shapes_are_checked_before_building_so_a_file_cannot_make_us_allocate_a_huge_model(
        tmp_path: Path, trained: Path) -> None:
    payload = _payload(trained)
    payload["config"]["model"]["hidden_channels"] = 1024
    payload["config"]["model"]["backbone"] = "resnet12"  # ~ 10^9 weights if built for real
    bad = tmp_path / "huge.pt"
    torch.save(payload, bad)
    with pytest.raises(CheckpointError, match="huge.pt"):
        load_algorithm(bad)


def _record_start(raw: bytes, suffix: str) -> int:
    """Where the stored bytes of the zip record whose name ends with ``suffix`` begin in ``raw``."""
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        info = next(i for i in archive.infolist() if i.filename.endswith(suffix))
    name_length, extra_length = struct.unpack("<HH", raw[info.header_offset + 26:info.header_offset + 30])
    return info.header_offset + 30 + name_length + extra_length


def _flip_in_record(suffix: str, offset: int) -> Callable[[bytearray], bytearray]:
    def flip(raw: bytearray) -> bytearray:
        raw[_record_start(bytes(raw), suffix) + offset] ^= 0x01
        return raw
    return flip


BYTE_TAMPERINGS: dict[str, Callable[[bytearray], bytearray]] = {
    "one bit of a weight flipped": _flip_in_record("/data/0", 5),
    "one bit of the pickled structure flipped": _flip_in_record("/data.pkl", 40),
    "truncated to half": lambda raw: raw[: len(raw) // 2],
    "the end cut off": lambda raw: raw[:-30],
    "emptied": lambda raw: bytearray(),
}


@pytest.mark.parametrize("loader", ["load_algorithm", "load_weights"])
@pytest.mark.parametrize("tamper", BYTE_TAMPERINGS.values(), ids=BYTE_TAMPERINGS.keys())
def test_every_tampering_with_the_bytes_is_refused_naming_the_file(tmp_path: Path, trained: Path, loader: str,
                                                                  tamper: Callable[[bytearray], bytearray]) -> None:
    """A checkpoint, and its backbone saved as starting weights (``model.weights_path``)."""
    load, good = LOADERS[loader], trained
    if loader == "load_weights":
        good = tmp_path / "weights.pt"
        torch.save({"state_dict": _payload(trained)["algorithm"]["modules"]["backbone"]}, good)
    load(good)  # the control: the untampered file loads
    bad = tmp_path / "tampered.pt"
    bad.write_bytes(bytes(tamper(bytearray(good.read_bytes()))))
    with pytest.raises(CheckpointError) as error:
        load(bad)
    assert str(bad) in str(error.value), error.value


def _same_content(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same_content(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same_content, a, b))
    return type(a) is type(b) and a == b


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_corrupted_bytes_are_refused_unless_what_loads_is_unchanged(data: st.DataObject) -> None:
    """A corruption is refused naming the file; only one that changes nothing loaded (a byte of the zip's
    bookkeeping that no reader uses, such as a time stamp or alignment padding) may load."""
    original = _TRAINED_BYTES["bytes"]
    raw = bytearray(original)
    for _ in range(data.draw(st.integers(1, 8))):
        position = data.draw(st.integers(0, len(raw) - 1))
        raw[position] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    path = Path(_TRAINED_BYTES["dir"]) / "mutated.pt"
    path.write_bytes(bytes(raw))
    try:
        load_algorithm(path)
    except CheckpointError as error:
        assert str(path) in str(error)
        return
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    assert _same_content(loaded, _TRAINED_BYTES["payload"]), "a corruption that changes the content loaded"


_TRAINED_BYTES: dict[str, Any] = {}


@pytest.fixture(autouse=True)
def _share_trained_bytes(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Hypothesis tests cannot take function-scoped fixtures per example: hand them the bytes this way."""
    if request.function.__name__ == "test_corrupted_bytes_are_refused_unless_what_loads_is_unchanged":
        trained = request.getfixturevalue("trained")
        _TRAINED_BYTES["bytes"] = trained.read_bytes()
        _TRAINED_BYTES["payload"] = _payload(trained)
        _TRAINED_BYTES["dir"] = str(tmp_path)


# -- adapted classifiers -----------------------------------------------------------------------------------------
@pytest.fixture
def adapted_file(tmp_path: Path, trained: Path) -> Path:
    algorithm, checkpoint = load_algorithm(trained)
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8, generator=generator)
    labels = torch.tensor([0, 0, 1, 1])
    predictor = algorithm.adapt(checkpoint.preprocessing.normalize(images), labels)
    return adapted_module.save_adapted(tmp_path / "adapted.pt", checkpoint, ["cat", "dog"], images, labels,
                                       predictor.state())


@pytest.mark.parametrize("edit,needle", [
    (_set(*BACKBONE, "blocks.0.0.weight", value=lambda t: t[:, :, :2]), "blocks.0.0.weight has shape"),
    (_set("config", "task", "n_way", value=1), "task.n_way"),
    (_set("support_images", value=torch.zeros(4, 3, 5, 5, dtype=torch.uint8)), "support_images"),
], ids=["edited weight shape", "invalid config", "support images of another size"])
def test_a_tampered_adapted_classifier_is_refused_naming_the_file(tmp_path: Path, adapted_file: Path,
                                                                   edit: Callable, needle: str) -> None:
    assert adapted_module.load_adapted(adapted_file).class_names == ["cat", "dog"]  # the control
    payload = _payload(adapted_file)
    edit(payload)
    bad = tmp_path / "tampered-adapted.pt"
    torch.save(payload, bad)
    with pytest.raises(CheckpointError) as error:
        adapted_module.load_adapted(bad)
    assert str(bad) in str(error.value) and needle in str(error.value), str(error.value)


@pytest.mark.parametrize("tamper", BYTE_TAMPERINGS.values(), ids=BYTE_TAMPERINGS.keys())
def test_every_tampering_with_an_adapted_classifiers_bytes_is_refused_where_the_adapt_view_opens_it(
        tmp_path: Path, adapted_file: Path, tamper: Callable[[bytearray], bytearray]) -> None:
    """The Adapt view tells the two file types apart by the format the file declares (read without the
    tensors); the reader it picks still checks the whole file."""
    from engine.sessions.adapt_model import open_model

    assert open_model(adapted_file).adapted is not None  # the control
    bad = tmp_path / "tampered-adapted.pt"
    bad.write_bytes(bytes(tamper(bytearray(adapted_file.read_bytes()))))
    with pytest.raises(CheckpointError) as error:
        open_model(bad)
    assert str(bad) in str(error.value), error.value


def test_an_adapted_classifier_hiding_code_is_refused(tmp_path: Path, adapted_file: Path, marker: Path) -> None:
    payload = _payload(adapted_file)
    payload["predictor"] = {"prototypes": RunsCode(marker)}
    evil = tmp_path / "adapted-evil.pt"
    torch.save(payload, evil, _use_new_zipfile_serialization=False)
    assert not adapted_module.is_adapted_file(evil)
    with pytest.raises(CheckpointError, match="refused"):
        adapted_module.load_adapted(evil)
    zipped = tmp_path / "adapted-evil-zip.pt"  # what is_adapted_file reads memory-mapped
    torch.save(payload, zipped)
    assert not adapted_module.is_adapted_file(zipped)
    assert not marker.exists()


# -- the code base never unpickles unsafely ---------------------------------------------------------------------
UNSAFE_CALLS = {("pickle", "load"), ("pickle", "loads"), ("pickle", "Unpickler"), ("jit", "load"),
                ("marshal", "loads"), ("dill", "load"), ("dill", "loads"), ("yaml", "load"), ("yaml", "unsafe_load")}
TRUSTED_CALLS = {("engine/export.py", "_run_torchscript", "jit.load"):
                 "the export's parity check loads back the TorchScript file the same call has just written"}
"""(file, function, call) -> why the call reads no file a user gave: the only exceptions to the rule."""


def _enclosing_functions(tree: ast.AST) -> dict[int, str]:
    """id of each call node -> the name of the function it is in."""
    owners = {}
    for function in ast.walk(tree):
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(function):
                owners[id(node)] = function.name
    return owners


def _call_name(node: ast.Call) -> tuple[str, str] | None:
    func = node.func
    if isinstance(func, ast.Attribute) and isinstance(func.value, (ast.Name, ast.Attribute)):
        owner = func.value.id if isinstance(func.value, ast.Name) else func.value.attr
        return owner, func.attr
    return None


def test_engine_and_studio_load_files_only_with_weights_only_true() -> None:
    problems = []
    for folder in ("engine", "studio"):
        for source in sorted((REPO / folder).rglob("*.py")):
            tree = ast.parse(source.read_text(encoding="utf-8"), filename=str(source))
            functions = _enclosing_functions(tree)
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call) or _call_name(node) is None:
                    continue
                owner, attr = _call_name(node)
                where = f"{source.relative_to(REPO)}:{node.lineno}"
                if (owner, attr) == ("torch", "load"):
                    flags = {k.arg: k.value for k in node.keywords}
                    value = flags.get("weights_only")
                    if not (isinstance(value, ast.Constant) and value.value is True):
                        problems.append(f"{where}: torch.load without weights_only=True")
                elif (owner, attr) in UNSAFE_CALLS:
                    trusted = (source.relative_to(REPO).as_posix(), functions.get(id(node)), f"{owner}.{attr}")
                    if trusted not in TRUSTED_CALLS:
                        problems.append(f"{where}: {owner}.{attr} can run code from a file")
                elif attr == "load" and owner in ("np", "numpy"):
                    flags = {k.arg: k.value for k in node.keywords}
                    if isinstance(flags.get("allow_pickle"), ast.Constant) and flags["allow_pickle"].value:
                        problems.append(f"{where}: numpy.load(allow_pickle=True)")
    assert not problems, "\n".join(problems)


def test_read_payload_names_the_file_for_any_non_checkpoint(tmp_path: Path) -> None:
    for name, content in {"empty.pt": b"", "text.pt": b"hello", "zip.pt": b"PK\x03\x04" + b"\x00" * 40}.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(EngineError) as error:
            read_payload(tmp_path / name)
        assert name in str(error.value)
    buffer = io.BytesIO()
    torch.save([1, 2, 3], buffer)
    (tmp_path / "list.pt").write_bytes(buffer.getvalue())
    with pytest.raises(CheckpointError, match="not a Meta Studio file"):
        read_payload(tmp_path / "list.pt")
