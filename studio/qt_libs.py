"""The first-run check: the system libraries Qt's xcb platform plugin needs, before the QApplication exists.

Qt 6.5+ loads its X11 plugin (xcb) only when libraries such as ``libxcb-cursor.so.0`` are installed; a fresh
Debian desktop lacks that one, and Qt's own message ("could not load the Qt platform plugin xcb ...") is a
wall of text. :func:`check_qt_libraries` names the packages to install in one line instead: the Debian/Ubuntu
and the Fedora names. It applies where Qt would use xcb: ``QT_QPA_PLATFORM`` unset or naming xcb on Linux,
and under Wayland too, where xcb is Qt's fallback. Another explicit platform (``wayland``, ``offscreen``)
skips it.

No Qt import here: this runs before Qt is loaded (studio layer 0).
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path
from typing import Mapping, Sequence

XCB_LIBRARIES: tuple[tuple[str, str, str], ...] = (
    # (soname, Debian/Ubuntu package, Fedora package): what libqxcb.so of PySide6 6.x links (ldd)
    ("libxcb-cursor.so.0", "libxcb-cursor0", "xcb-util-cursor"),
    ("libxcb-icccm.so.4", "libxcb-icccm4", "xcb-util-wm"),
    ("libxcb-image.so.0", "libxcb-image0", "xcb-util-image"),
    ("libxcb-keysyms.so.1", "libxcb-keysyms1", "xcb-util-keysyms"),
    ("libxcb-render-util.so.0", "libxcb-render-util0", "xcb-util-renderutil"),
    ("libxcb-util.so.1", "libxcb-util1", "xcb-util"),
    ("libxkbcommon.so.0", "libxkbcommon0", "libxkbcommon"),
    ("libxkbcommon-x11.so.0", "libxkbcommon-x11-0", "libxkbcommon-x11"),
    ("libxcb-randr.so.0", "libxcb-randr0", "libxcb"),
    ("libxcb-shape.so.0", "libxcb-shape0", "libxcb"),
    ("libxcb-shm.so.0", "libxcb-shm0", "libxcb"),
    ("libxcb-sync.so.1", "libxcb-sync1", "libxcb"),
    ("libxcb-xfixes.so.0", "libxcb-xfixes0", "libxcb"),
    ("libxcb-render.so.0", "libxcb-render0", "libxcb"),
    ("libxcb-xkb.so.1", "libxcb-xkb1", "libxcb"),
    ("libxcb.so.1", "libxcb1", "libxcb"),
    ("libX11-xcb.so.1", "libx11-xcb1", "libX11-xcb"),
)

LIBRARY_DIRS: Sequence[Path] | None = None
"""Where to look for the libraries; None: ask the dynamic loader (as Qt will)."""


def uses_xcb(env: Mapping[str, str], platform: str = sys.platform) -> tuple[bool, bool]:
    """(whether Qt may load the xcb plugin, whether only as the Wayland fallback)."""
    if not platform.startswith("linux"):
        return False, False
    chosen = env.get("QT_QPA_PLATFORM", "").strip()
    if chosen:
        names = [name.split(":")[0].strip() for name in chosen.split(";")]
        return "xcb" in names, names[0] != "xcb"
    wayland = bool(env.get("WAYLAND_DISPLAY")) or env.get("XDG_SESSION_TYPE", "") == "wayland"
    return True, wayland


def library_available(soname: str, library_dirs: Sequence[Path] | None) -> bool:
    if library_dirs is not None:
        return any((Path(folder) / soname).exists() for folder in library_dirs)
    try:
        ctypes.CDLL(soname)
    except OSError:
        return False
    return True


def missing_packages(library_dirs: Sequence[Path] | None = None) -> list[tuple[str, str, str]]:
    """The ``XCB_LIBRARIES`` entries whose library cannot be found."""
    return [entry for entry in XCB_LIBRARIES if not library_available(entry[0], library_dirs)]


def check_qt_libraries(env: Mapping[str, str] | None = None, library_dirs: Sequence[Path] | None = None,
                       platform: str = sys.platform) -> str | None:
    """One line naming the packages to install when Qt's xcb plugin would miss a library; None when all are
    there or Qt will not use xcb."""
    env = os.environ if env is None else env
    needed, fallback = uses_xcb(env, platform)
    if not needed:
        return None
    missing = missing_packages(LIBRARY_DIRS if library_dirs is None else library_dirs)
    if not missing:
        return None
    libraries = ", ".join(soname for soname, _, _ in missing)
    debian = " ".join(dict.fromkeys(package for _, package, _ in missing))
    fedora = " ".join(dict.fromkeys(package for _, _, package in missing))
    where = " (Qt's fallback under Wayland)" if fallback else ""
    return (f"meta-studio: Qt's X11 platform plugin (xcb){where} needs {libraries}, not installed: "
            f"sudo apt install {debian} (Debian/Ubuntu) or sudo dnf install {fedora} (Fedora)")
