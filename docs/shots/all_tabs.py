"""Screenshots of every tab of the real Meta Studio window, given content the way a user would.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python docs/shots/all_tabs.py --out DIR

(from the repository root; with PYTHONPATH=<another tree> it shoots that tree's code, e.g. an older
commit unpacked with ``git archive``, for before/after comparisons: log.txt holds each tab's texts)

Runs in a temporary META_STUDIO_HOME / XDG_CONFIG_HOME (nothing of the user's is touched).
Steps (each one logged; a failing step is logged and the script goes on):
  1. open MainWindow, wait for the built-in glyphs (the Train button becomes enabled);
  2. small shared settings typed into the schema-generated Setup form (widgets named by config key);
     "Evaluate every finished run" unticked;
  3. Train ProtoNet (60 steps), then MAML (60 steps) with the Train button;
  4. Evaluation: select the ProtoNet run in the Runs dock, press Evaluate;
  5. Episodes: pick the ProtoNet run, press Inspect, then "Next with a mistake";
  6. Inner loop: pick the MAML run, press Run;
  7. Adapt: press Demo;
  8. Race: tick ProtoNet + Baseline++ only, 100 test episodes, press Start race;
  9. Regression: its default state (shipped models loaded on show);
 10. save DIR/NN_<Title>.png for every centre tab (the page), DIR/setup_N_<Title>.png for the Setup
     dock's tabs, DIR/window.png (whole window), DIR/log.txt; with --whole-window instead
     DIR/window_NN_<Title>.png, the whole window with each centre tab current.
Only public, refactor-stable handles are used: MainWindow, QTabWidget titles, QDockWidget titles,
button texts, combo item texts, and the config-key object names of the generated form fields.
Waiting is a QEventLoop + QTimer (releases the GIL), never QTest.qWait.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

STARTED = time.monotonic()
LOG_LINES: list[str] = []


def log(message: str) -> None:
    line = f"[{time.monotonic() - STARTED:7.1f}s] {message}"
    LOG_LINES.append(line)
    print(line, flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for the PNGs")
    parser.add_argument("--size", default="1600x1000")
    parser.add_argument("--steps", type=int, default=60, help="training steps of each solo run")
    parser.add_argument("--race-steps", type=int, default=60, help="training steps of each race algorithm")
    parser.add_argument("--race", default="ProtoNet,Baseline++", help="race check-box texts, comma-separated")
    parser.add_argument("--no-race", action="store_true")
    parser.add_argument("--skip", default="", help="steps to skip (comma-separated names, for debugging)")
    parser.add_argument("--page-grab", action="store_true", help="grab the page widget instead of cropping the "
                                                                  "window grab")
    parser.add_argument("--whole-window", action="store_true",
                        help="grab the whole window (docks shown) once per centre tab, as a user sees it")
    return parser.parse_args()


# ------------------------------------------------------------------ Qt helpers (public APIs only)
def wait_ms(ms: int) -> None:
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(max(int(ms), 0), loop.quit)
    loop.exec()


def wait_until(condition: Callable[[], Any], timeout: float, what: str, poll_ms: int = 100) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return True
        except Exception as error:  # noqa: BLE001 (a probe failing counts as "not yet")
            log(f"  (probe for {what} raised {error!r})")
        if time.monotonic() > deadline:
            log(f"TIMEOUT after {timeout:.0f}s waiting for {what}")
            return False
        wait_ms(poll_ms)


SKIP: set[str] = set()


def step(name: str, fn: Callable[[], Any]) -> Any:
    if name in SKIP:
        log(f"SKIP {name}")
        return None
    log(f"STEP {name}")
    try:
        result = fn()
        log(f"  done {name}")
        return result
    except Exception:  # noqa: BLE001 (log it and go on: the tabs are still captured)
        log(f"FAILED {name}:\n{traceback.format_exc()}")
        return None


def norm(text: str) -> str:
    text = text.replace("…", "").replace("...", "").replace("&", "")
    text = re.sub(r"[▶◀]", "", text)
    return " ".join(text.split()).casefold()


def buttons(root: Any, text: str, exclude: Any = None) -> list[Any]:
    from PySide6.QtWidgets import QAbstractButton

    wanted = norm(text)
    found = [b for b in root.findChildren(QAbstractButton) if norm(b.text()) == wanted]
    if exclude is not None:
        found = [b for b in found if not is_inside(b, exclude)]
    return found


def button(root: Any, text: str, exclude: Any = None) -> Any:
    found = buttons(root, text, exclude)
    if not found:
        raise LookupError(f"no button {text!r} in {type(root).__name__}")
    visible = [b for b in found if b.isVisible()]
    return (visible or found)[0]


def is_inside(widget: Any, ancestor: Any) -> bool:
    while widget is not None:
        if widget is ancestor:
            return True
        widget = widget.parentWidget()
    return False


def click(root: Any, text: str, exclude: Any = None) -> Any:
    b = button(root, text, exclude)
    if not b.isEnabled():
        log(f"  button {text!r} is disabled (tooltip: {b.toolTip()[:120]!r})")
    b.click()
    log(f"  clicked {text!r}")
    return b


def busy(page: Any) -> bool:
    """A visible progress bar in ``page`` (every view shows one while its job runs)."""
    from PySide6.QtWidgets import QProgressBar

    return any(bar.isVisible() for bar in page.findChildren(QProgressBar))


def cancel_enabled(page: Any) -> bool:
    return any(b.isEnabled() and b.isVisible() for b in buttons(page, "Cancel"))


def wait_job(page: Any, start_button: Any, timeout: float, what: str) -> bool:
    """After a click: wait for the job to show (busy / button disabled), then for it to end."""
    if not busy(page) and not cancel_enabled(page) and not start_button.isEnabled():
        wait_ms(1000)
        if not start_button.isEnabled() and not busy(page) and not cancel_enabled(page):
            log(f"  {what}: nothing started (the button stays disabled)")
            return False
    wait_until(lambda: busy(page) or cancel_enabled(page) or not start_button.isEnabled(), 5, f"{what} to start")
    ok = wait_until(lambda: not busy(page) and not cancel_enabled(page) and start_button.isEnabled(),
                    timeout, what)
    wait_ms(500)
    return ok


def combo_pick(root: Any, contains: str) -> bool:
    """Select the first item containing ``contains`` in the first combo box of ``root`` that has one."""
    from PySide6.QtWidgets import QComboBox

    for combo in root.findChildren(QComboBox):
        for i in range(combo.count()):
            if contains.casefold() in combo.itemText(i).casefold():
                combo.setCurrentIndex(i)
                log(f"  picked {combo.itemText(i)!r}")
                return True
    log(f"  no combo item containing {contains!r}")
    return False


def set_field(window: Any, key: str, value: Any) -> None:
    """A generated Setup form field (object name = the config key)."""
    from PySide6.QtWidgets import QAbstractSpinBox, QCheckBox, QComboBox, QLineEdit, QWidget

    widget = window.findChild(QWidget, key)
    if widget is None:
        raise LookupError(f"no form field {key}")
    if isinstance(widget, QAbstractSpinBox):
        widget.setValue(value)
    elif isinstance(widget, QCheckBox):
        widget.setChecked(bool(value))
    elif isinstance(widget, QComboBox):
        index = widget.findData(value)
        widget.setCurrentIndex(index if index >= 0 else widget.findText(str(value)))
    elif isinstance(widget, QLineEdit):
        widget.setText(str(value))
    else:
        raise TypeError(f"{key}: {type(widget).__name__}")


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_") or "tab"


class Studio:
    """The window and its handles found by title."""

    def __init__(self, window: Any) -> None:
        from PySide6.QtWidgets import QDockWidget, QTabWidget

        self.window = window
        tab_widgets = window.findChildren(QTabWidget)
        titles = lambda t: [t.tabText(i) for i in range(t.count())]  # noqa: E731
        self.tabs = next((t for t in tab_widgets if "Training curves" in titles(t)),
                         max(tab_widgets, key=lambda t: t.count()))
        self.setup_tabs = next((t for t in tab_widgets if "Data" in titles(t)), None)
        self.docks = {d.windowTitle(): d for d in window.findChildren(QDockWidget)}
        log(f"centre tabs: {titles(self.tabs)}; setup tabs: {titles(self.setup_tabs) if self.setup_tabs else None}; "
            f"docks: {list(self.docks)}")

    def page(self, title: str) -> Any:
        for i in range(self.tabs.count()):
            if self.tabs.tabText(i) == title:
                return self.tabs.widget(i)
        raise LookupError(f"no tab {title!r}")

    def show(self, title: str) -> Any:
        page = self.page(title)
        self.tabs.setCurrentWidget(page)
        wait_ms(300)
        return page

    def train_button(self) -> Any:
        return button(self.window, "Train", exclude=self.tabs)

    def train(self, timeout: float) -> bool:
        b = self.train_button()
        if not b.isEnabled():
            log(f"  Train is disabled: {self.blocked_message()}")
        b.click()
        log("  clicked Train")
        wait_until(lambda: not b.isEnabled(), 30, "training to start")
        return wait_until(lambda: b.isEnabled(), timeout, "training to end")

    def blocked_message(self) -> str:
        from PySide6.QtWidgets import QLabel

        texts = [lbl.text() for lbl in self.window.findChildren(QLabel)
                 if lbl.isVisible() and not is_inside(lbl, self.tabs) and lbl.text()]
        return " | ".join(texts[:6])[:300]

    def runs_view(self) -> Any:
        from PySide6.QtWidgets import QAbstractItemView

        dock = self.docks.get("Runs")
        views = dock.findChildren(QAbstractItemView) if dock else []
        if not views:
            raise LookupError("no table in the Runs dock")
        return max(views, key=lambda v: v.width())

    def select_run(self, contains: str) -> bool:
        view = self.runs_view()
        model = view.model()
        for row in range(model.rowCount()):
            texts = [str(model.index(row, c).data() or "") for c in range(model.columnCount())]
            if any(contains.casefold() in t.casefold() for t in texts):
                view.selectRow(row)
                log(f"  selected run row {row}: {texts[:3]}")
                wait_ms(500)
                return True
        log(f"  no run row containing {contains!r}")
        return False


# ------------------------------------------------------------------ the steps
def configure(studio: Studio, args: argparse.Namespace) -> None:
    settings = {"task.n_query": 5, "task.meta_batch_size": 2, "model.hidden_channels": 32,
                "train.steps": args.steps, "train.val_every": max(args.steps // 3, 1), "train.val_episodes": 20,
                "train.checkpoint_every": args.steps, "train.num_threads": 1}
    for key, value in settings.items():
        try:
            set_field(studio.window, key, value)
        except Exception as error:  # noqa: BLE001
            log(f"  field {key}: {error!r}")
    from PySide6.QtWidgets import QCheckBox

    for box in studio.window.findChildren(QCheckBox):
        if norm(box.text()) == norm("Evaluate every finished run"):
            box.setChecked(False)
            log("  unticked 'Evaluate every finished run'")


def set_algorithm(studio: Studio, name: str, title: str) -> None:
    """The Setup panel's algorithm combo: the item whose data is ``name``, else whose text starts with ``title``."""
    from PySide6.QtWidgets import QComboBox

    def has_it(c: Any) -> bool:
        return c.findData(name) >= 0 or any(c.itemText(i).startswith(title) for i in range(c.count()))

    combo = studio.window.findChild(QComboBox, "algorithm")
    if combo is None or not has_it(combo):  # fall back to any Setup combo listing the algorithm
        combo = next(c for c in studio.setup_tabs.findChildren(QComboBox) if has_it(c))
    index = combo.findData(name)
    if index < 0:
        index = next(i for i in range(combo.count()) if combo.itemText(i).startswith(title))
    combo.setCurrentIndex(index)
    log(f"  algorithm: {combo.itemText(index)!r}")
    wait_ms(200)


def train_run(studio: Studio, name: str, title: str, timeout: float) -> None:
    set_algorithm(studio, name, title)
    started = time.monotonic()
    ok = studio.train(timeout)
    log(f"  {title}: training {'ended' if ok else 'DID NOT END'} after {time.monotonic() - started:.1f}s")


def evaluation(studio: Studio) -> None:
    page = studio.show("Evaluation")
    studio.select_run("protonet")
    b = click(page, "Evaluate")
    wait_job(page, b, 300, "the evaluation")


def refresh_runs(page: Any) -> None:
    for b in buttons(page, "↻"):
        b.click()
    wait_ms(300)


def episodes(studio: Studio) -> None:
    page = studio.show("Episodes")
    refresh_runs(page)
    combo_pick(page, "protonet")
    b = click(page, "Inspect")
    wait_job(page, b, 300, "the inspection")
    try:
        click(page, "Next with a mistake")
    except LookupError as error:
        log(f"  {error}")


def inner_loop(studio: Studio) -> None:
    page = studio.show("Inner loop")
    refresh_runs(page)
    combo_pick(page, "maml")
    b = click(page, "Run")
    wait_job(page, b, 300, "the inner loop")


def adapt(studio: Studio) -> None:
    page = studio.show("Adapt")
    b = click(page, "Demo")
    wait_until(lambda: busy(page) or not b.isEnabled(), 10, "the demo to start")
    wait_until(lambda: b.isEnabled() and not busy(page), 300, "the demo")
    wait_ms(1500)


def race(studio: Studio, args: argparse.Namespace) -> None:
    from PySide6.QtWidgets import QCheckBox, QSpinBox

    set_field(studio.window, "train.steps", args.race_steps)
    set_field(studio.window, "train.checkpoint_every", args.race_steps)
    set_field(studio.window, "train.val_every", max(args.race_steps // 3, 1))
    page = studio.show("Race")
    wanted = {norm(t) for t in args.race.split(",")}
    for box in page.findChildren(QCheckBox):
        if box.isVisible() and box.parentWidget() is not None and "algorithm" in \
                getattr(box.parentWidget(), "title", lambda: "")().casefold():
            box.setChecked(norm(box.text()) in wanted)
    log(f"  ticked: {[b.text() for b in page.findChildren(QCheckBox) if b.isChecked()]}")
    spins = [s for s in page.findChildren(QSpinBox) if s.isVisible()]
    if len(spins) == 1:
        spins[0].setValue(100)
        log("  test episodes: 100")
    else:
        log(f"  {len(spins)} spin boxes on the Race tab; test episodes left as they are")
    started = time.monotonic()
    b = click(page, "Start race")
    wait_until(lambda: not b.isEnabled(), 30, "the race to start")
    ok = wait_until(lambda: b.isEnabled(), 600, "the race")
    wait_ms(1000)
    log(f"  race {'ended' if ok else 'DID NOT END'} after {time.monotonic() - started:.1f}s")


def regression(studio: Studio) -> None:
    page = studio.show("Regression")
    wait_until(lambda: not busy(page), 120, "the regression models")
    wait_ms(1500)


def grab_widget(studio: Studio, widget: Any, page_grab: bool) -> Any:
    """``widget`` as shown: the part of ``window.grab()`` it covers (``widget.grab()`` of a page with a
    plot crashed PySide6 under Xvfb)."""
    from PySide6.QtCore import QPoint, QRect

    if page_grab:
        return widget.grab()
    return studio.window.grab(QRect(widget.mapTo(studio.window, QPoint(0, 0)), widget.size()))


def log_texts(title: str, page: Any, most: int = 80) -> None:
    """The visible label texts of a page (HTML stripped), for comparing before / after by text too."""
    from PySide6.QtWidgets import QLabel

    texts = []
    for label in page.findChildren(QLabel):
        text = " ".join(re.sub(r"<[^>]+>", " ", label.text()).replace("&nbsp;", " ").split())
        if label.isVisible() and text and text not in texts:
            texts.append(text)
    log(f"  texts of {title!r}: " + " | ".join(t[:140] for t in texts[:most]))


def capture_windows(studio: Studio, out: Path) -> None:
    """The whole window (docks shown) with each centre tab current: DIR/window_NN_<Title>.png."""
    for i in range(studio.tabs.count()):
        title = studio.tabs.tabText(i)
        studio.tabs.setCurrentIndex(i)
        wait_ms(1200)
        path = out / f"window_{i:02d}_{slug(title)}.png"
        ok = studio.window.grab().save(str(path))
        log(f"  {'wrote' if ok else 'COULD NOT WRITE'} {path} ({studio.window.width()}x{studio.window.height()})")
        log_texts(title, studio.tabs.widget(i))
    studio.tabs.setCurrentIndex(0)


def capture(studio: Studio, out: Path, page_grab: bool = False) -> None:
    window = studio.window
    for title in ("Runs", "Log"):
        if title in studio.docks:
            studio.docks[title].hide()
    wait_ms(400)
    for i in range(studio.tabs.count()):
        title = studio.tabs.tabText(i)
        studio.tabs.setCurrentIndex(i)
        wait_ms(1200)
        path = out / f"{i:02d}_{slug(title)}.png"
        ok = grab_widget(studio, studio.tabs.widget(i), page_grab).save(str(path))
        log(f"  {'wrote' if ok else 'COULD NOT WRITE'} {path}")
        log_texts(title, studio.tabs.widget(i))
    if studio.setup_tabs is not None:
        for i in range(studio.setup_tabs.count()):
            title = studio.setup_tabs.tabText(i)
            studio.setup_tabs.setCurrentIndex(i)
            wait_ms(500)
            target = studio.docks.get("Setup", studio.setup_tabs)
            path = out / f"setup_{i}_{slug(title)}.png"
            ok = grab_widget(studio, target, page_grab).save(str(path))
            log(f"  {'wrote' if ok else 'COULD NOT WRITE'} {path}")
        studio.setup_tabs.setCurrentIndex(0)
    for title in ("Runs", "Log"):
        if title in studio.docks:
            studio.docks[title].show()
    studio.tabs.setCurrentIndex(0)
    wait_ms(1200)
    path = out / "window.png"
    ok = window.grab().save(str(path))
    log(f"  {'wrote' if ok else 'COULD NOT WRITE'} {path}")


def dismiss_dialogs() -> None:
    """Close any modal dialog (an error box would otherwise block the script), logging its text."""
    from PySide6.QtWidgets import QApplication, QMessageBox

    modal = QApplication.activeModalWidget()
    if modal is not None:
        text = modal.text() if isinstance(modal, QMessageBox) else modal.windowTitle()
        log(f"DIALOG {modal.windowTitle()!r}: {text}")
        modal.reject()


def main() -> int:
    args = parse_args()
    SKIP.update(s.strip() for s in args.skip.split(",") if s.strip())
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="meta-studio-all-tabs-"))
    os.environ["META_STUDIO_HOME"] = str(scratch / "home")
    os.environ["XDG_CONFIG_HOME"] = str(scratch / "config")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    log(f"scratch home {scratch}; out {out}")
    import faulthandler

    faulthandler.enable()
    import engine
    import studio

    log(f"engine from {engine.__file__}; studio from {studio.__file__}")
    from PySide6.QtCore import QTimer

    from studio.app import create_application
    from studio.main_window import MainWindow

    app = create_application()
    try:
        window = MainWindow(restore_settings=False)
    except TypeError:
        window = MainWindow()
    errors: list[tuple[str, str]] = []
    if hasattr(window, "show_error"):
        window.show_error = lambda title, message: (errors.append((title, message)),
                                                    log(f"ERROR shown: {title}: {message}"))
    guard = QTimer()
    guard.timeout.connect(dismiss_dialogs)
    guard.start(500)
    width, height = (int(v) for v in args.size.lower().split("x"))
    window.resize(width, height)
    window.move(0, 0)
    window.show()
    studio_ = Studio(window)
    step("wait for the data set", lambda: wait_until(lambda: studio_.train_button().isEnabled(), 180,
                                                      "the data set (Train enabled)"))
    step("configure", lambda: configure(studio_, args))
    step("train ProtoNet", lambda: train_run(studio_, "protonet", "Prototypical Networks", 600))
    step("train MAML", lambda: train_run(studio_, "maml", "MAML", 600))
    step("evaluation", lambda: evaluation(studio_))
    step("episodes", lambda: episodes(studio_))
    step("inner loop", lambda: inner_loop(studio_))
    step("adapt demo", lambda: adapt(studio_))
    if not args.no_race:
        step("race", lambda: race(studio_, args))
    step("regression", lambda: regression(studio_))
    step("open the ProtoNet run's curves", lambda: studio_.select_run("protonet"))
    if args.whole_window:
        step("capture whole windows", lambda: capture_windows(studio_, out))
    else:
        step("capture", lambda: capture(studio_, out, args.page_grab))
    log(f"errors shown: {errors}")
    (out / "log.txt").write_text("\n".join(LOG_LINES) + "\n")
    guard.stop()
    window.close()
    app.processEvents()
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
