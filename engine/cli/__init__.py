"""``meta-engine``: train, race, evaluate, predict and inspect data sets without a screen.

One module per subcommand (:mod:`~engine.cli.train`, :mod:`~engine.cli.race`,
:mod:`~engine.cli.evaluate`, :mod:`~engine.cli.predict`, :mod:`~engine.cli.datasets`,
:mod:`~engine.cli.regression`), each registering its parser with ``add_parser(sub)``; flags are
generated from the config dataclasses (:mod:`~engine.cli.common`); :mod:`~engine.cli.app` builds
the parser and runs :func:`main` (the ``meta-engine`` entry point and ``python -m engine``).

Bad input never shows a traceback: every :class:`~engine.errors.EngineError`
is printed as ``error: <message>`` and the exit status is 2.
"""

from engine.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
