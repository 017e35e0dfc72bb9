"""``python -m engine.cli ...`` is ``meta-engine ...``."""

import sys

from engine.cli import main

sys.exit(main())
