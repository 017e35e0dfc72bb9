"""Temporary re-export (moved to :mod:`studio.jobs.background`); removed once no view imports it."""
from studio.jobs.background import BackgroundJobMixin  # noqa: F401
