"""A race as a job for the training child process (:class:`engine.training.process.TrainingProcess`).

The child runs any :class:`~engine.training.process.ChildJob`; this one builds a
:class:`~engine.race.scheduler.Race` there and returns its ``RaceResult``, reporting through the
hooks of :class:`~engine.race.results.RaceCallback`. Importing this module does not import torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.race.config import RaceConfig
from engine.race.results import RaceCallback, RaceResult

if TYPE_CHECKING:
    from engine.data.dataset import FewShotData
    from engine.training.control import RunControl


@dataclass
class RaceJob:
    """One race (``engine.race.Race``) to run in the child; its :meth:`run` returns the ``RaceResult``.

    ``data``: the decoded data set, or None for the race to load it (in the child)."""

    config: RaceConfig
    race_dir: Path | None = None
    data: FewShotData | None = None

    @property
    def protocol(self) -> type:
        return RaceCallback

    def run(self, callback: Any, control: RunControl) -> RaceResult:
        from engine.race.scheduler import Race

        return Race(self.config, race_dir=self.race_dir, callbacks=[callback], control=control, data=self.data).run()

    def force_stopped_message(self, last_step: int, checkpoint_step: int | None) -> str:
        return (f"the race's training process was ended on request after step {last_step}; each algorithm's "
                "run folder keeps its last checkpoint")
