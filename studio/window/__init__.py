"""The main window's parts (layout, training runs), mixed into :class:`studio.main_window.MainWindow`."""
