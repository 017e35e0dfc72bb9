"""``python -m engine ...`` is ``meta-engine ...``."""

import sys

from engine.cli import main

sys.exit(main())
