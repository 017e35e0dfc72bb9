"""Qt-free state of the interactive views (the studio renders it and forwards user actions to it).

``adapt``: :class:`~engine.sessions.adapt.AdaptSession`, the Adapt view's model, support set,
undo/redo history, feature cache and predictions; ``adapt_support``: examples, class cards, drops and
decoding; ``adapt_compute``: the feature cache, adapt-and-predict and the 2-D map; ``adapt_model``: how a
model file becomes the session's model (``open_model``, in any thread).
"""

from engine.sessions.adapt import (DEMO_MODEL, DEMO_SHOTS, MAX_SYNC_IMAGES, SESSION_FILES_PREFIX, AdaptSession,
                                   DemoSummary, demo_selection, support_from_adapted)
from engine.sessions.adapt_model import OpenedModel, open_model
from engine.sessions.adapt_compute import (AdaptationCancelled, AdaptOutput, FeatureCache, MapData,
                                           adapt_and_predict, map_data, pca_2d)
from engine.sessions.adapt_support import (BULK_FILES, ClassState, DecodeResult, DropListing, DropOutcome, Example,
                                           SupportSet, UndoHistory, class_folder_groups, decode_files, drop_message,
                                           list_dropped, name_problem, next_class_name, remote_message, reprocess,
                                           support_key, usable_classes)

__all__ = [
    "AdaptOutput", "AdaptSession", "AdaptationCancelled", "BULK_FILES", "ClassState", "DEMO_MODEL", "DEMO_SHOTS",
    "DecodeResult", "DemoSummary", "DropListing", "DropOutcome", "Example", "FeatureCache", "MAX_SYNC_IMAGES",
    "MapData", "OpenedModel", "SESSION_FILES_PREFIX", "SupportSet", "UndoHistory", "adapt_and_predict",
    "class_folder_groups", "decode_files", "demo_selection", "drop_message", "list_dropped", "map_data",
    "name_problem", "next_class_name", "open_model", "pca_2d", "remote_message", "reprocess", "support_from_adapted",
    "support_key", "usable_classes",
]
