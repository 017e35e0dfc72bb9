"""Screenshot of the Adapt tab's Export dialog after an ONNX export, for the docs.

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/shots/export_dialog.py [--out docs/screens/export_dialog.png]

Opens the real main window (in a temporary run history), runs the Adapt tab's demo (the bundled glyph
model and five characters it never saw), opens "Export...", exports the classifier as ONNX into a
temporary folder and waits for the parity figure; then saves a grab of the dialog.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from shotlib import exit_with, save_grab, shot_parser, start_window, use_home, wait_until  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    args = shot_parser(__doc__, out="docs/screens/export_dialog.png", timeout=600.0).parse_args(
        sys.argv[1:] if argv is None else argv)
    use_home()
    _, window = start_window(args)
    panel = window.adapt_panel
    tabs = window.center_tabs
    tabs.setCurrentIndex(next(i for i in range(tabs.count()) if tabs.tabText(i) == "Adapt"))
    if not panel.start_demo():
        raise SystemExit("the demo did not start (see the banner)")
    wait_until(lambda: panel.demo_button.isEnabled() and not panel.is_busy(), args.timeout, "the demo")
    dialog = panel.open_export_dialog()
    if dialog is None:
        raise SystemExit("the Export dialog did not open (see the banner)")
    dialog.path_edit.setText(str(Path(tempfile.mkdtemp(prefix="meta-studio-export-")) / "glyphs.onnx"))
    dialog.start_export()
    wait_until(lambda: dialog.report is not None or "Cannot" in dialog.result_label.text(), args.timeout,
               "the export")
    out = save_grab(dialog, args.out, settle_ms=500)
    print(f"wrote {out}: {dialog.result_label.text()}")
    window.close()
    return 0


if __name__ == "__main__":
    exit_with(main)
