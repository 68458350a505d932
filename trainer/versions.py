"""The versions of a session's video (trainer.progressive): each stored under its own key, copied to
rendition.mp4 (the visitor's link plays the newest), recorded with its figures in versions.json,
then announced as a Rendition. A published version is never overwritten: a resumed job numbers on
from versions.json. The link never outlives the video (infra.retention.video_link_expiry_s)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from infra.objectstore import ObjectStore
from infra.retention import discard_unconsented, video_link_expiry_s
from infra.settings import Settings
from schemas import Rendition, layout

log = logging.getLogger(__name__)


def figures_of(metrics: dict) -> dict[str, float]:
    """The finite numbers of a metrics dict (flags, text and NaN left out), as versions and
    Renditions carry them."""
    return {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)
    }


class Versions:
    """One session's published versions. announce: publishes a Rendition (the renditions topic);
    check: called before a version is announced, raises to stop it (the job's purge check)."""

    def __init__(
        self,
        settings: Settings,
        store: ObjectStore,
        session: str,
        announce: Callable[[Rendition], None],
        check: Callable[[str], None],
    ):
        self.settings, self.store, self.session = settings, store, session
        self.announce, self.check = announce, check
        self.reference = ""  # the reference dance's name: set once the job has read it

    def listed(self) -> list[dict]:
        """The versions published so far (versions.json), oldest first."""
        raw = self.store.get(layout.result_key(self.session, "versions.json"))
        return list(json.loads(raw)["versions"]) if raw else []

    def next_number(self) -> int:
        return max((v["version"] for v in self.listed()), default=0) + 1

    def publish(
        self,
        video_path: Path,
        kind: str,
        metrics: dict,
        *,
        final: bool = False,
        frames: int | None = None,
        picture: np.ndarray | None = None,
    ) -> Rendition:
        """Publish a video as the session's next version. kind: "gan" (the generator) or "preview"
        (training-free); picture: the dance asked | rendered (trainer.fidelity), kept beside it."""
        from trainer.rendition import count_frames

        versions = self.listed()
        n = max((v["version"] for v in versions), default=0) + 1
        video = video_path.read_bytes()
        own_key = layout.rendition_version_key(self.session, n)
        stable = layout.result_key(self.session, "rendition.mp4")
        frames = count_frames(video_path) if frames is None else frames
        self.store.put(own_key, video, "video/mp4")
        if picture is not None:
            from trainer.pix2pix.samples import png_bytes

            png = png_bytes(picture)
            self.store.put(layout.dance_picture_key(self.session, n), png, "image/png")
            self.store.put(layout.result_key(self.session, "dance.png"), png, "image/png")
        written_at = time.time()  # no later than the store's own time for it: the link expires first
        self.store.put(stable, video, "video/mp4")
        figures = figures_of(metrics)
        figures.pop("version", None)
        versions.append(
            {**figures, "version": n, "kind": kind, "final": final, "key": own_key, "wall_time": written_at}
        )
        self.store.put(
            layout.result_key(self.session, "versions.json"),
            json.dumps({"versions": versions}, indent=2).encode(),
            "application/json",
        )
        self.check(f"before version {n} of its video was published")
        # The final version's key is the stable one: it is what a session without consent keeps.
        rendition = self.rendition(
            stable if final else own_key,
            written_at,
            self.reference,
            frames,
            {**figures, "version": n},
            version=n,
            kind=kind,
            final=final,
        )
        self.announce(rendition)
        log.info("session %s: version %d (%s%s) %s", self.session, n, kind, ", final" if final else "", rendition.url)
        return rendition

    def rendition(
        self, video_key: str, written_at: float, name: str, frames: int, results: dict, **version
    ) -> Rendition:
        """The Rendition of a video; its link plays the session's rendition.mp4 (the newest version)."""
        expiry = video_link_expiry_s(self.settings, written_at)
        return Rendition(
            session=self.session,
            reference=name,
            video_key=video_key,
            url=self.store.presign(layout.result_key(self.session, "rendition.mp4"), expiry),
            expires_at=time.time() + expiry,
            frames=frames,
            metrics=figures_of(results),
            wall_time=time.time(),
            **version,
        )

    def made_earlier(self, name: str) -> Rendition | None:
        """A session without consent whose video was made and whose frames are already discarded
        (a redelivery after a crash before the commit): its Rendition again, with a fresh link."""
        video_key = layout.result_key(self.session, "rendition.mp4")
        listed = self.store.list_info(video_key)
        if not listed or self.store.list(layout.shards_prefix(self.session)):
            return None
        raw = self.store.get(layout.result_key(self.session, "metrics.json"))
        results = json.loads(raw) if raw else {}
        frames = int(results.get("rendition_frames") or 0)
        last = (self.listed() or [{}])[-1]
        rendition = self.rendition(
            video_key, listed[0].written_at, name, frames, results, version=last.get("version", 1), final=True
        )
        self.announce(rendition)
        discard_unconsented(self.store, self.session)
        log.info("session %s: its video was made earlier; published again", self.session)
        return rendition
