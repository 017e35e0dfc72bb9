"""``python -m studio`` opens the Meta Studio window."""

import sys

from studio.app import main

if __name__ == "__main__":  # the idiom for a main module of a program that spawns processes (training)
    sys.exit(main())
