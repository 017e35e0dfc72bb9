"""The first-run check of the libraries Qt's xcb plugin needs (studio.qt_libs), against a fake library folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from studio import app, qt_libs

X11 = {"DISPLAY": ":0"}
WAYLAND = {"WAYLAND_DISPLAY": "wayland-0", "DISPLAY": ":0"}


def fake_library_folder(folder: Path, leave_out: tuple[str, ...] = ()) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for soname, _, _ in qt_libs.XCB_LIBRARIES:
        if soname not in leave_out:
            (folder / soname).write_bytes(b"\x7fELF")
    return folder


def test_all_libraries_present_is_no_message(tmp_path: Path) -> None:
    assert qt_libs.check_qt_libraries(X11, [fake_library_folder(tmp_path)], platform="linux") is None


def test_a_missing_xcb_cursor_is_one_line_naming_the_debian_and_fedora_packages(tmp_path: Path) -> None:
    folder = fake_library_folder(tmp_path, leave_out=("libxcb-cursor.so.0",))
    message = qt_libs.check_qt_libraries(X11, [folder], platform="linux")
    assert message is not None and "\n" not in message
    assert "needs libxcb-cursor.so.0" in message
    assert "sudo apt install libxcb-cursor0 (Debian/Ubuntu)" in message
    assert "sudo dnf install xcb-util-cursor (Fedora)" in message
    assert "Wayland" not in message


def test_several_missing_libraries_name_each_package_once(tmp_path: Path) -> None:
    folder = fake_library_folder(tmp_path, leave_out=("libxcb-shape.so.0", "libxcb-xkb.so.1", "libxcb-icccm.so.4"))
    message = qt_libs.check_qt_libraries(X11, [folder], platform="linux")
    assert "apt install libxcb-icccm4 libxcb-shape0 libxcb-xkb1 (Debian/Ubuntu)" in message
    assert "dnf install xcb-util-wm libxcb (Fedora)" in message


@pytest.mark.parametrize("env, platform, checked, fallback_note", [
    (X11, "linux", True, False),
    (WAYLAND, "linux", True, True),
    ({"XDG_SESSION_TYPE": "wayland"}, "linux", True, True),
    ({"QT_QPA_PLATFORM": "xcb"}, "linux", True, False),
    ({"QT_QPA_PLATFORM": "wayland;xcb"}, "linux", True, True),
    ({"QT_QPA_PLATFORM": "wayland"}, "linux", False, False),
    ({"QT_QPA_PLATFORM": "offscreen"}, "linux", False, False),
    (X11, "darwin", False, False),
    (X11, "win32", False, False),
])
def test_the_check_applies_where_qt_would_load_xcb(tmp_path: Path, env: dict, platform: str, checked: bool,
                                                   fallback_note: bool) -> None:
    message = qt_libs.check_qt_libraries(env, [tmp_path], platform=platform)  # an empty folder: all missing
    assert (message is not None) == checked
    if checked:
        assert ("(Qt's fallback under Wayland)" in message) == fallback_note


def test_meta_studio_exits_with_the_line_before_creating_the_application(tmp_path: Path, capsys,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(qt_libs, "LIBRARY_DIRS", [fake_library_folder(tmp_path, leave_out=("libxcb-cursor.so.0",))])
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    monkeypatch.setattr(app, "create_application", lambda: pytest.fail("the QApplication was created"))
    assert app.main([]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "libxcb-cursor0" in err


def test_without_a_folder_the_dynamic_loader_is_asked() -> None:
    assert qt_libs.library_available("libc.so.6", None)
    assert not qt_libs.library_available("libmeta-studio-not-a-library.so.7", None)
