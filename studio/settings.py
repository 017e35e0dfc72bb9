"""Persistent user settings (QSettings) and the app's identity.

The organisation and application names decide where QSettings stores its file;
tests change them (and the settings path) so they never touch the user's file.
"""

from __future__ import annotations

import json
from typing import Any

from PySide6.QtCore import QSettings

ORGANIZATION = "Meta Studio"
APPLICATION = "Meta Studio"

KEY_GEOMETRY = "window/geometry"
KEY_STATE = "window/state"
KEY_SPLITTER = "window/splitter"
KEY_LAST_FOLDER = "data/last_folder"
KEY_LAST_CONFIG = "run/last_config"
KEY_SMOOTHING = "plots/smoothing"
KEY_PRESET_FOLDER = "run/preset_folder"
KEY_ADVANCED_ALGORITHM = "forms/advanced_algorithm"   # the Algorithm tab shows its advanced settings
KEY_ADVANCED_DATA = "forms/advanced_data"             # the Data tab shows its advanced settings
KEY_GUIDE_SEEN = "help/guided_start_seen"             # the guided start was shown once (first launch)


def settings() -> QSettings:
    """The application's settings object (uses the QApplication's organisation/app names)."""
    return QSettings()


def read_json(key: str) -> Any:
    """A JSON value stored under ``key``, or None when missing or unreadable."""
    raw = settings().value(key)
    if not raw:
        return None
    try:
        return json.loads(str(raw))
    except json.JSONDecodeError:
        return None


def write_json(key: str, value: Any) -> None:
    settings().setValue(key, json.dumps(value))


def read_str(key: str, default: str = "") -> str:
    value = settings().value(key, default)
    return str(value) if value is not None else default


def read_float(key: str, default: float) -> float:
    try:
        return float(settings().value(key, default))
    except (TypeError, ValueError):
        return default


def read_bool(key: str, default: bool = False) -> bool:
    """A flag stored under ``key`` (INI files store it as text: 'true' / 'false')."""
    value = settings().value(key, default)
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)
