"""The pose estimators a trainer process lends every session, made once when the process starts
(trainer.service): models belong to the process, as its broker connection does, and a session's
job only uses them. They are the dance's judges (trainer.fidelity.judge_estimator: BlazePose, and
MoveNet for the sessions BlazePose drew) and the held-out pose check's (trainer.evaluation.
held_out_estimator: each session tracks under its own key). One that cannot be made is kept as
the exception it failed with, so each figure it would give is left out with that reason, as
before (a missing model never stops a job).

    estimators = Estimators.load(settings.models_dir)
    estimators.judge("blazepose")   # an estimator, or the exception it could not be made with
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

JUDGES = ("blazepose", "movenet")  # trainer.fidelity.independent_backend picks one of these


class Estimators:
    """judges: backend -> its estimator or exception; held_out: the held-out figures' estimator or exception."""

    def __init__(self, judges: dict[str, object], held_out: object):
        self.judges, self.held_out = judges, held_out

    @classmethod
    def load(cls, models_dir: str | Path | None) -> Estimators:
        """Every estimator the sessions use, from models_dir (vision.models; ../shared/models the fallback)."""
        from trainer.evaluation import held_out_estimator
        from trainer.fidelity import judge_estimator

        judges: dict[str, object] = {}
        for backend in JUDGES:
            try:
                judges[backend] = judge_estimator(backend, models_dir)
            except Exception as exc:  # noqa: BLE001 - kept: each video's figures say why they are missing
                log.warning("the dance judge %s cannot load (%s): videos it would judge go without", backend, exc)
                judges[backend] = exc
        try:
            held_out: object = held_out_estimator(Path(models_dir) if models_dir else None)
        except Exception as exc:  # noqa: BLE001 - kept: metrics.json goes without the pose figure
            log.warning("the held-out pose estimator cannot load (%s): no pose error in the figures", exc)
            held_out = exc
        return cls(judges, held_out)

    def judge(self, backend: str) -> object:
        """The judge `backend`'s estimator, or the exception it could not be made with."""
        return self.judges.get(backend) or ValueError(f"no dance judge named {backend!r}; the judges: {JUDGES}")
