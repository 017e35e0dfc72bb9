"""Device selector: the CPU and every detected CUDA or MPS device, fastest first."""

from __future__ import annotations

import os
from dataclasses import dataclass

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QWidget


@dataclass(frozen=True)
class DeviceInfo:
    """One device the engine can train on (``key`` is the value of ``train.device``)."""

    key: str
    name: str
    memory_bytes: int | None = None

    @property
    def label(self) -> str:
        memory = f", {self.memory_bytes / 2**30:.0f} GiB" if self.memory_bytes else ""
        if self.key == "cpu":
            return f"{self.name[:-1]}{memory})" if self.name.endswith(")") else f"{self.name}{memory}"
        return f"{self.key}: {self.name}{memory}"


def detect_devices() -> list[DeviceInfo]:
    """CUDA devices first (fastest), then MPS, then the CPU."""
    import torch

    devices: list[DeviceInfo] = []
    try:
        if torch.cuda.is_available():
            for i in range(torch.cuda.device_count()):
                props = torch.cuda.get_device_properties(i)
                devices.append(DeviceInfo(f"cuda:{i}", torch.cuda.get_device_name(i), int(props.total_memory)))
    except (RuntimeError, AssertionError):  # broken driver: fall back to what works
        pass
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append(DeviceInfo("mps", "Apple GPU (Metal)"))
    cores = os.cpu_count() or 1
    devices.append(DeviceInfo("cpu", f"CPU ({cores} core{'s' if cores != 1 else ''})", _system_memory()))
    return devices


def _system_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


class DevicePanel(QWidget):
    """A labelled combo box of devices; defaults to the fastest."""

    device_changed = Signal(str)

    def __init__(self, devices: list[DeviceInfo] | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.devices = devices if devices is not None else detect_devices()
        self.combo = QComboBox()
        self.combo.setObjectName("device")
        self.combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.combo.setMinimumContentsLength(16)
        for device in self.devices:
            self.combo.addItem(device.label, device.key)
        self.combo.setToolTip("Chooses where training and evaluation run; the fastest device is selected by "
                              "default.\n(config key: train.device)")
        for i, device in enumerate(self.devices):
            self.combo.setItemData(i, device.label, Qt.ItemDataRole.ToolTipRole)
        self.combo.currentIndexChanged.connect(lambda _: self.device_changed.emit(self.device()))
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("Device"))
        layout.addWidget(self.combo, 1)

    def device(self) -> str:
        return self.combo.currentData()

    def set_device(self, key: str) -> bool:
        """Select ``key`` if present (e.g. from a preset); returns whether it was found."""
        index = self.combo.findData(key)
        if index < 0 and key == "cuda":
            index = self.combo.findData("cuda:0")
        if index >= 0:
            self.combo.setCurrentIndex(index)
        return index >= 0
