"""Moved: the Adapt view's Qt-free state and computations now live in :mod:`engine.sessions`
(``adapt_support``: examples, support sets, undo, drops, decoding; ``adapt_compute``: feature cache,
adapt-and-predict, the 2-D map; ``adapt``: the :class:`~engine.sessions.adapt.AdaptSession`).

This module only re-exports the helpers that older imports name (``list_dropped``, ``decode_files``,
``support_key``); new code imports :mod:`engine.sessions`.
"""

from __future__ import annotations

from engine.sessions import (AdaptOutput, ClassState, DecodeResult, DropListing, Example, MapData, SupportSet,
                             decode_files, list_dropped, support_key, usable_classes)

__all__ = ["AdaptOutput", "ClassState", "DecodeResult", "DropListing", "Example", "MapData", "SupportSet",
           "decode_files", "list_dropped", "support_key", "usable_classes"]
