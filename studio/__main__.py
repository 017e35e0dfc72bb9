"""``python -m studio`` opens the Meta Studio window."""

import sys

from studio.app import main

sys.exit(main())
