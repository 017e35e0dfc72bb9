"""The one way the studio runs work off the GUI thread (see docs/ARCHITECTURE.md)."""
