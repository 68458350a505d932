"""The assembler: a consumer group over frames, smoothed poses and session events that writes each
session's training samples to object storage as WebDataset shards.

Delivery guarantees:
* Offsets are committed only up to the lowest offset still held by an unwritten shard or an open
  session (assembler.offsets), so a crash re-reads exactly what was not yet persisted.
* Shard objects are a pure function of the messages in their seq range (assembler.join,
  .shards) and a written shard is never rebuilt from a partial replay (its index record marks it
  done), so replays rewrite nothing or rewrite identical bytes.
* A session is finished in the store once its manifest is written and DatasetReady was published
  (recorded as ``dataset_ready.json``); replayed messages of a finished session are skipped.
  A crash between the manifest and that record re-publishes DatasetReady once (at least once).

Scaling out: a session's events and all its cameras' streams must reach the same process, while
a consumer group would spread them over its members. So N assemblers shard by session instead:
each is started as member i of N, reads every partition in a group of its own
(<group>-<i>of<N>, offsets of its own), and keeps only the sessions that hash to it (murmur2 of
the session id, as Kafka's default partitioner), skipping the others by key before decoding.
Each session is assembled by exactly one member; the price is that every member reads every
record. A restarted member resumes from its own committed offsets.

Privacy: a session's start records the visitor's consent in the store (``consent.json``, and in
the manifest). A failed dataset of a session without consent keeps no frames (no video will be
made). A purge event drops an open session without writing anything more, and a purged session
(its marker in the store) is never taken up again, not even from a replay.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields, replace
from typing import Any

from assembler.join import (
    INVALID,
    LATE,
    NO_POSE,
    NOT_RECEIVED,
    UNKNOWN_SESSION,
    Outcome,
    SessionState,
    ShardBuffer,
    record_bytes,
)
from assembler.metrics import BYTES, DATASET_READY_SECONDS, GAVE_UP, REJECTED, SAMPLES
from assembler.offsets import Held, OffsetTracker
from dataset.manifest import (
    CONDITIONINGS,
    build_manifest,
    failure_reason,
    manifest_bytes,
    preview_choice,
    render_preview,
)
from dataset.reader import shard_samples
from dataset.representation import DEFAULT_REPRESENTATION, LazySegmenter, check_representation, needs_parts
from dataset.shards import build_shard
from infra import deadletters, kafka
from infra.consume import ConsumeLoop
from infra.objectstore import ObjectStore
from infra.retention import discard_unconsented
from infra.settings import Settings
from schemas import DatasetReady, Frame, SchemaError, SessionEvent, SmoothedPose, decode, layout, parse_frame_key
from schemas.ids import InvalidId, validate_id

log = logging.getLogger(__name__)

STAGE = "assembler"
_REMEMBERED_SESSIONS = 10_000


@dataclass(frozen=True)
class AssemblerConfig:
    group_id: str = "booth-assembler"
    shard_size: int = 32  # samples per camera per tar shard
    resolution: int = 256  # pose map size (square)
    min_samples: int = 20  # fewer usable frames: the dataset is failed
    # After the end event: cameras that announced their last frame (camera-end) are waited for
    # until those frames' poses are in, or end_timeout_s without messages (a counted give-up);
    # cameras that did not are given end_grace_s without messages (poses lag frames).
    end_grace_s: float = 3.0
    end_timeout_s: float = 300.0
    inactivity_timeout_s: float = 300.0  # a session without an end is closed after this silence
    unknown_session_grace_s: float = 10.0  # messages of an unknown session wait this long for its start
    commit_interval_s: float = 1.0
    max_poll_records: int = 200
    quiet: bool = False  # no progress lines
    representation: str = DEFAULT_REPRESENTATION  # generator input: "pose", "parts" or "pose+parts"
    segmenter: str = "auto"  # part segmenter for the parts representations (vision.parts)
    # What the session's generator should read besides the pose map (trainer.warp_framing), recorded
    # in the manifest for the trainer; None: the trainer's own choice.
    conditioning: str | None = None
    members: int = 1  # assemblers sharing the sessions (see the module docstring)
    member: int = 0  # this one's index, 0 .. members - 1

    def __post_init__(self) -> None:
        if self.members < 1 or not 0 <= self.member < self.members:
            raise ValueError(f"member {self.member} of {self.members}: need members >= 1 and 0 <= member < members")
        for name in ("shard_size", "resolution", "max_poll_records"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.resolution > 4096:
            raise ValueError(f"resolution {self.resolution} is too large (max 4096)")
        if self.min_samples < 0:
            raise ValueError(f"min_samples must be >= 0, got {self.min_samples}")
        for name in (
            "end_grace_s",
            "end_timeout_s",
            "inactivity_timeout_s",
            "unknown_session_grace_s",
            "commit_interval_s",
        ):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0 seconds, got {getattr(self, name)}")
        if not self.group_id:
            raise ValueError("group_id is empty")
        check_representation(self.representation)
        if self.conditioning not in (None, *CONDITIONINGS):
            raise ValueError(f"unknown conditioning {self.conditioning!r}; choose one of {', '.join(CONDITIONINGS)}")
        from vision.parts import KINDS as SEGMENTERS

        if self.segmenter not in SEGMENTERS:
            raise ValueError(f"unknown part segmenter {self.segmenter!r}; choose one of {', '.join(SEGMENTERS)}")

    @property
    def consumer_group(self) -> str:
        """One group when alone; a group per member when sharded (each reads every partition)."""
        return self.group_id if self.members == 1 else f"{self.group_id}-{self.member}of{self.members}"

    def owns(self, session: str | None) -> bool:
        """Whether this member assembles `session` (None: a message naming no session; member 0
        dead-letters those, so each is dead-lettered once)."""
        if self.members == 1:
            return True
        if session is None:
            return self.member == 0
        from kafka.partitioner.default import murmur2

        return (murmur2(session.encode()) & 0x7FFFFFFF) % self.members == self.member


@dataclass
class _Orphan:
    first_seen: float
    items: list[tuple[Any, Any, Held]] = field(default_factory=list)  # (message, record, held)


@dataclass
class Summary:
    samples: int = 0
    shards: int = 0
    rejected: Counter = field(default_factory=Counter)
    dead_letters: int = 0
    ready: list[DatasetReady] = field(default_factory=list)
    closed: dict[str, str] = field(default_factory=dict)  # session -> ready / failed / aborted


class Assembler:
    """Assemble sessions into datasets. `run()` is the service; `process_batch()` and `tick()` are
    its core, usable without a consumer (records need .topic .partition .offset .key .value)."""

    def __init__(
        self,
        settings: Settings,
        config: AssemblerConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        **overrides: Any,
    ) -> None:
        config = config or AssemblerConfig()
        if overrides:
            unknown = set(overrides) - {f.name for f in fields(AssemblerConfig)}
            if unknown:
                raise TypeError(f"unknown assembler options: {sorted(unknown)}")
            config = replace(config, **overrides)
        self.settings = settings
        self.config = config
        self.clock = clock
        self.tracker = OffsetTracker()
        self.sessions: dict[str, SessionState] = {}
        self.closed: OrderedDict[str, str] = OrderedDict()  # session -> "here" / "store"
        self.orphans: dict[str, _Orphan] = {}
        self.summary = Summary()
        self._store_closed: dict[str, bool] = {}
        self._progress: dict[str, Any] = {}
        self._store: ObjectStore | None = None
        self._producer = None
        self._unflushed_sends = False
        self._committed: dict[tuple[str, int], int] = {}
        # Loaded when the first session starts, so a missing model stops the service right away
        # instead of rejecting every frame.
        self.segmenter = LazySegmenter(settings, config.segmenter) if needs_parts(config.representation) else None

    # --- clients ---------------------------------------------------------------------------
    @property
    def store(self) -> ObjectStore:
        if self._store is None:
            self._store = ObjectStore(self.settings)
        return self._store

    @property
    def producer(self):
        if self._producer is None:
            self._producer = kafka.producer(self.settings)
        return self._producer

    def _put(self, key: str, data: bytes, content_type: str) -> None:
        self.store.put(key, data, content_type)
        BYTES.inc(len(data))

    # --- the core --------------------------------------------------------------------------
    def process_batch(self, records: Iterable[Any], now: float | None = None) -> int:
        """Take in consumed records; flush every shard they complete. Returns samples joined."""
        now = self.clock() if now is None else now
        records = list(records)
        # Session events first, so a start read in the same batch as its first frames comes first.
        records.sort(key=lambda r: r.topic != self.settings.topic_sessions)
        touched: set[str] = set()
        joined = 0
        for rec in records:
            held = self.tracker.consumed(rec.topic, rec.partition, rec.offset)
            if not self.config.owns(self._session_of_key(rec)):
                self.tracker.release(held)  # another member's session: skipped before decoding
                continue
            if rec.topic == self.settings.topic_sessions:
                self._session_event(rec, held, now)
                continue
            session, outcome = self._stream_message(rec, held, now)
            if outcome is not None:
                touched.add(session)
                joined += outcome.sample is not None
        for session in touched:
            state = self.sessions.get(session)
            if state is not None:
                self._flush(state, state.complete_shards())
        return joined

    def _session_of_key(self, rec) -> str | None:
        """The session a record's key names (None if it names none validly)."""
        if rec.key is None:
            return None
        try:
            if rec.topic == self.settings.topic_sessions:
                return validate_id(rec.key.decode("ascii"), "session")
            return parse_frame_key(rec.key)[0]
        except (InvalidId, UnicodeDecodeError):
            return None

    def tick(self, now: float | None = None, *, backlog: bool = False) -> list[str]:
        """Time-based work: give up on unknown sessions, close ended and idle sessions.

        With `backlog` (the last poll was full) nothing is timed out: the messages being waited
        for may simply not have been read yet.
        """
        now = self.clock() if now is None else now
        if backlog:
            return []
        cfg = self.config
        for session, orphan in list(self.orphans.items()):
            if now - orphan.first_seen >= cfg.unknown_session_grace_s:
                del self.orphans[session]
                for _msg, rec, held in orphan.items:
                    self._dead_letter(rec, UNKNOWN_SESSION, f"session {session} was never started")
                    self.tracker.release(held)
        closed = []
        for state in list(self.sessions.values()):
            quiet = now - state.last_activity
            if state.end is not None:
                why = self._may_close(state, quiet)
                if why is not None:
                    self._finalize(state, why, now)
                    closed.append(state.session)
            elif quiet >= cfg.inactivity_timeout_s:
                self._finalize(state, "inactivity", now)
                closed.append(state.session)
        return closed

    def _may_close(self, state: SessionState, quiet: float) -> str | None:
        """How an ended session closes now ("end", or "end-timeout": a give-up), or None to wait."""
        if state.waiting_for():
            return "end-timeout" if quiet >= self.config.end_timeout_s else None
        if state.last_seq and not state.unannounced():
            return "end"  # every camera's announced last frame has its pose
        return "end" if quiet >= self.config.end_grace_s else None

    def busy(self) -> bool:
        """Whether anything is still open (sessions or messages waiting for their session)."""
        return bool(self.sessions or self.orphans)

    # --- session events --------------------------------------------------------------------
    def _session_event(self, rec, held: Held, now: float) -> None:
        try:
            event = SessionEvent.decode(rec.value)
        except SchemaError as exc:
            return self._reject_message(rec, held, f"undecodable session event: {exc}")
        if rec.key is not None and rec.key != event.session.encode():
            return self._reject_message(
                rec, held, f"key {rec.key[:80]!r} does not name the event's session {event.session!r}"
            )
        if event.kind == "purge":
            self._purge(event.session)
            self.tracker.release(held)
            return
        state = self.sessions.get(event.session)
        if event.kind == "start":
            if state is not None or event.session in self.closed:
                self.tracker.release(held)  # a repeated start
                return
            if self._closed_in_store(event.session):
                self.closed[event.session] = "store"  # a replay of a session finished earlier
                self.tracker.release(held)
                return
            self._start(event, held, now)
        elif state is not None:
            state.held.append(held)
            state.last_activity = now
            state.announce(event.last_seq)
            if event.kind == "camera-end":
                log.info(
                    "session %s: cameras announced their last frames %s",
                    event.session,
                    ", ".join(f"{c}={q}" for c, q in sorted(event.last_seq.items())),
                )
            elif event.kind == "end":
                if state.end is None:
                    state.end, state.ended_at = event, now
            else:
                self._abort(state, event, now)
        elif event.session in self.closed or self._closed_in_store(event.session):
            self.tracker.release(held)
        elif event.session in self.orphans:
            self.orphans[event.session].items.append((event, rec, held))
        else:
            self._dead_letter(rec, UNKNOWN_SESSION, f"{event.kind} of session {event.session}, which was never started")
            self.tracker.release(held)

    def _start(self, event: SessionEvent, held: Held, now: float) -> None:
        if self.segmenter is not None:
            self.segmenter.load()  # raises (BackendUnavailable) before anything of the session is held
        done = self._load_done(event.session)
        representation = self.config.representation
        mixed = sorted({r.get("representation", DEFAULT_REPRESENTATION) for r in done.values()} - {representation})
        if mixed:
            log.warning(
                "session %s: shards stored earlier are in representation %s, this assembler writes %s",
                event.session,
                ",".join(mixed),
                representation,
            )
        state = SessionState(
            event,
            shard_size=self.config.shard_size,
            resolution=self.config.resolution,
            now=now,
            done=done,
            representation=representation,
            segment=self.segmenter.segment if self.segmenter else None,
        )
        state.held.append(held)
        self.sessions[event.session] = state
        self._put(
            layout.consent_key(event.session),
            json.dumps(
                {"session": event.session, "consent": event.consent, "recorded_at": event.wall_time}, sort_keys=True
            ).encode(),
            "application/json",
        )
        if not self.config.quiet:
            from tqdm import tqdm

            self._progress[event.session] = tqdm(desc=f"assemble {event.session}", unit=" samples", leave=True)
        orphan = self.orphans.pop(event.session, None)
        log.info(
            "session %s started (cameras %s)%s",
            event.session,
            ",".join(event.cameras) or "?",
            f", {len(done)} shards already stored" if done else "",
        )
        if orphan:
            for msg, rec, h in orphan.items:
                if isinstance(msg, SessionEvent):
                    self._session_event(rec, h, now)
                else:
                    self._add(state, msg, rec, h, now)
            if event.session in self.sessions:  # (an adopted abort closes it at once)
                self._flush(state, state.complete_shards())

    def _load_done(self, session: str) -> dict[tuple[str, int], dict]:
        """Index records of shards already written (by an earlier run of this session)."""
        done = {}
        for key in self.store.list(layout.index_prefix(session)):
            if not key.endswith(".json"):
                continue
            data = self.store.get(key)
            if data is not None:
                record = json.loads(data)
                done[(record["camera"], int(record["index"]))] = record
        return done

    def _closed_in_store(self, session: str) -> bool:
        """Whether the session was finished by an earlier run (its DatasetReady went out, or it was
        aborted): replays of its messages are then skipped."""
        known = self._store_closed.get(session)
        if known is None:
            known = self.store.exists(layout.purge_marker_key(session))
            known = known or self.store.get(layout.dataset_ready_key(session)) is not None
            if not known:
                manifest = self.store.get(layout.manifest_key(session))
                known = manifest is not None and json.loads(manifest).get("status") == "aborted"
            if len(self._store_closed) > _REMEMBERED_SESSIONS:
                self._store_closed.clear()
            self._store_closed[session] = known
        return known

    # --- frames and poses ------------------------------------------------------------------
    def _stream_message(self, rec, held: Held, now: float) -> tuple[str | None, Outcome | None]:
        if rec.topic not in (self.settings.topic_frames, self.settings.topic_smoothed):
            self._reject_message(rec, held, f"the assembler does not read topic {rec.topic}")
            return None, None
        expected = Frame if rec.topic == self.settings.topic_frames else SmoothedPose
        try:
            msg = decode(rec.value)
        except SchemaError as exc:
            self._reject_message(rec, held, f"undecodable {expected.__name__}: {exc}")
            return None, None
        if not isinstance(msg, expected):
            self._reject_message(
                rec, held, f"expected a {expected.__name__} on {rec.topic}, got a {type(msg).__name__}"
            )
            return None, None
        try:
            key = parse_frame_key(rec.key)
        except InvalidId as exc:
            self._reject_message(rec, held, f"unsafe or malformed key: {exc}")
            return None, None
        if key != (msg.session, msg.camera):
            self._reject_message(
                rec, held, f"key {'/'.join(key)} does not match the message's {msg.session}/{msg.camera}"
            )
            return None, None
        state = self.sessions.get(msg.session)
        if state is not None:
            return msg.session, self._add(state, msg, rec, held, now)
        if msg.session in self.closed:
            self.tracker.release(held)
            if self.closed[msg.session] == "here":
                REJECTED.labels(LATE).inc()
                self.summary.rejected[LATE] += 1
                log.warning(
                    "%s %s/%s seq %d arrived after its session was closed",
                    type(msg).__name__,
                    msg.session,
                    msg.camera,
                    msg.seq,
                )
            return None, None
        if self._closed_in_store(msg.session):
            self.closed[msg.session] = "store"
            self.tracker.release(held)
            return None, None
        orphan = self.orphans.setdefault(msg.session, _Orphan(now))
        orphan.items.append((msg, rec, held))
        return None, None

    def _add(self, state: SessionState, msg, rec, held: Held, now: float) -> Outcome:
        outcome = state.add_frame(msg, held, now) if isinstance(msg, Frame) else state.add_pose(msg, held, now)
        if outcome.replay:
            self.tracker.release(held)
        if outcome.problem:  # counted with its shard's rejections when the shard is written
            self._dead_letter(
                rec, outcome.rejected, f"{msg.session}/{msg.camera} seq {msg.seq}: {outcome.problem}", count=False
            )
        if outcome.sample is not None:
            bar = self._progress.get(state.session)
            if bar is not None:
                bar.update(1)
        return outcome

    def _reject_message(self, rec, held: Held, reason: str) -> None:
        self._dead_letter(rec, INVALID, reason)
        self.tracker.release(held)

    def _dead_letter(self, rec, label: str, reason: str, count: bool = True) -> None:
        deadletters.send_dead_letter(
            self.producer, self.settings, STAGE, reason, rec.topic, rec.key, rec.value, rec.partition, rec.offset
        )
        self._unflushed_sends = True
        self.summary.dead_letters += 1
        if count:
            REJECTED.labels(label).inc()
            self.summary.rejected[label] += 1

    # --- persisting ------------------------------------------------------------------------
    def _flush(self, state: SessionState, buffers: list[ShardBuffer]) -> None:
        for buf in buffers:
            tar = build_shard(buf.samples.values()) if buf.samples else b""
            if tar:
                self._put(layout.shard_key(state.session, buf.camera, buf.index), tar, "application/x-tar")
            record = buf.record(state.session, len(tar), state.representation)
            # The index record goes last: it is what marks the shard done.
            self._put(
                layout.shard_index_key(state.session, buf.camera, buf.index), record_bytes(record), "application/json"
            )
            state.done[(buf.camera, buf.index)] = record
            SAMPLES.labels(buf.camera).inc(len(buf.samples))
            for why in buf.rejected.values():
                REJECTED.labels(why).inc()
                self.summary.rejected[why] += 1
            self.summary.samples += len(buf.samples)
            self.summary.shards += 1
            self.tracker.release(*buf.held)

    def _finalize(self, state: SessionState, closed_by: str, now: float) -> DatasetReady:
        cfg = self.config
        waited = state.waiting_for() if closed_by == "end-timeout" else {}
        self._flush(state, state.all_shards())
        records = list(state.done.values())
        samples = sum(len(r["samples"]) for r in records)
        picture = self._preview(records) if samples else None
        preview = layout.preview_key(state.session) if picture else None
        status, reason = "ready", ""
        missing = self._gave_up(state, waited, records)
        if samples < cfg.min_samples:
            rejected = Counter(why for r in records for why in r["rejected"].values())
            rejected.update({NOT_RECEIVED: sum(w[NOT_RECEIVED] for w in waited.values())} if waited else {})
            status, reason = "failed", failure_reason(samples, cfg.min_samples, dict(+rejected))
        elif closed_by == "inactivity":
            reason = f"closed after {cfg.inactivity_timeout_s:g} s without messages (no end event)"
        elif waited:
            reason = missing
        manifest = build_manifest(
            session=state.session,
            status=status,
            reason=reason,
            closed_by=closed_by,
            start=state.start,
            end=state.end,
            records=records,
            resolution=cfg.resolution,
            shard_size=cfg.shard_size,
            min_samples=cfg.min_samples,
            preview_key=preview,
            representation=cfg.representation,
            consent=state.start.consent,
            conditioning=cfg.conditioning,
            waited=waited,
            last_seq=state.last_seq,
            coverage=self._coverage(state.session),
        )
        if preview:
            self._put(preview, picture, "image/jpeg")
        self._put(layout.manifest_key(state.session), manifest_bytes(manifest), "application/json")
        ready = DatasetReady(
            session=state.session,
            status=status,
            reason=reason[:1000],
            manifest_key=layout.manifest_key(state.session),
            samples=samples,
            cameras=manifest["cameras"],
            reference=state.start.reference,
            wall_time=time.time(),
        )
        self.producer.send(self.settings.topic_datasets, key=state.session.encode(), value=ready.encode()).get(
            timeout=30
        )
        self._put(
            layout.dataset_ready_key(state.session),
            json.dumps(ready.model_dump(mode="json"), sort_keys=True).encode(),
            "application/json",
        )
        if state.ended_at is not None:
            DATASET_READY_SECONDS.observe(max(0.0, self.clock() - state.ended_at))
        if status == "failed" and not state.start.consent:
            discard_unconsented(self.store, state.session)  # no video will be made: keep no frames
        self._close(state, status)
        self.summary.ready.append(ready)
        log.info(
            "session %s %s: %d samples in %d shards%s",
            state.session,
            status,
            samples,
            len(manifest["shards"]),
            f" ({reason})" if reason else "",
        )
        return ready

    def _gave_up(self, state: SessionState, waited: dict[str, dict[str, int]], records: list[dict]) -> str:
        """On a give-up, count per camera what its end marker announced and never became a sample:
        frames read without a pose (no_pose, already in the shards' rejections) and frames never
        read at all (not_received); returns the reason the manifest and DatasetReady give."""
        if not waited:
            return ""
        parts = []
        for camera, w in waited.items():
            w[NO_POSE] = sum(
                1 for r in records if r["camera"] == camera for why in r["rejected"].values() if why == NO_POSE
            )
            w[NOT_RECEIVED] = max(0, w["last_seq"] - w["frames_to"])
            REJECTED.labels(NOT_RECEIVED).inc(w[NOT_RECEIVED])
            self.summary.rejected[NOT_RECEIVED] += w[NOT_RECEIVED]
            parts.append(
                f"{camera}: last frame {w['last_seq']}, frames read to {w['frames_to']}, poses to {w['poses_to']}"
                f" ({w[NO_POSE]} without a pose, {w[NOT_RECEIVED]} never received)"
            )
        GAVE_UP.inc()
        log.warning("session %s: gave up waiting for its last poses: %s", state.session, "; ".join(parts))
        return (
            f"gave up waiting for the last poses after {self.config.end_timeout_s:g} s without messages: "
            + "; ".join(parts)
        )

    def _coverage(self, session: str) -> dict | None:
        """The guided capture's last coverage (console.guide), if it was written before closing."""
        raw = self.store.get(layout.coverage_key(session))
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            log.warning("session %s: coverage.json is not JSON; the manifest records none", session)
            return None
        return data if isinstance(data, dict) else None

    def _preview(self, records: list[dict]) -> bytes | None:
        chosen = preview_choice(records)
        wanted: dict[str, set[int]] = {}
        for shard, _camera, seq in chosen:
            wanted.setdefault(shard, set()).add(seq)
        picked = {}
        for shard, seqs in wanted.items():
            data = self.store.get(shard)
            for s in shard_samples(data or b"", shard) if data else ():
                if s.seq in seqs:
                    picked[(shard, s.seq)] = (s.frame, s.posemap, s.pose)
        shown = [picked[(sh, seq)] for sh, _c, seq in chosen if (sh, seq) in picked]
        return render_preview(shown, self.config.resolution) if shown else None

    def _abort(self, state: SessionState, event: SessionEvent, now: float) -> None:
        """Drop everything of the session, keep only a manifest saying it was aborted."""
        doomed = self.store.delete_prefix(layout.session_prefix(state.session))
        manifest = build_manifest(
            session=state.session,
            status="aborted",
            reason=event.note or "aborted",
            closed_by="abort",
            start=state.start,
            end=event,
            records=[],
            resolution=self.config.resolution,
            shard_size=self.config.shard_size,
            min_samples=self.config.min_samples,
            preview_key=None,
            representation=self.config.representation,
            consent=state.start.consent,
        )
        self._put(layout.manifest_key(state.session), manifest_bytes(manifest), "application/json")
        self._store_closed[state.session] = True
        log.info("session %s aborted: %d stored objects removed", state.session, len(doomed))
        self._close(state, "aborted")

    def _purge(self, session: str) -> None:
        """Drop everything of a purged session held here, writing nothing (the purge deletes the rest)."""
        state = self.sessions.get(session)
        if state is not None:
            self._close(state, "purged")
        orphan = self.orphans.pop(session, None)
        for _msg, _rec, held in orphan.items if orphan else ():
            self.tracker.release(held)
        self.closed[session] = "purged"  # later messages of it are skipped without a word
        self._store_closed[session] = True
        log.info("session %s purged%s", session, ": its open dataset was dropped" if state else "")

    def _close(self, state: SessionState, status: str) -> None:
        self.tracker.release(*state.open_held())
        for stream in state.streams.values():
            stream.shards.clear()
        del self.sessions[state.session]
        self.closed[state.session] = "here"
        while len(self.closed) > _REMEMBERED_SESSIONS:
            self.closed.popitem(last=False)
        self.summary.closed[state.session] = status
        bar = self._progress.pop(state.session, None)
        if bar is not None:
            bar.set_postfix_str(status)
            bar.close()

    # --- the service -----------------------------------------------------------------------
    def committable(self) -> dict[tuple[str, int], int]:
        return self.tracker.committable()

    def _commit(self, consumer) -> None:
        from kafka.structs import OffsetAndMetadata, TopicPartition

        if self._unflushed_sends and self._producer is not None:
            self._producer.flush()  # dead letters must be out before their offsets are committed
            self._unflushed_sends = False
        assigned = {(tp.topic, tp.partition) for tp in consumer.assignment()}
        offsets = {
            tp: off
            for tp, off in self.tracker.committable().items()
            if tp in assigned and self._committed.get(tp) != off
        }
        if not offsets:
            return
        consumer.commit({TopicPartition(t, p): OffsetAndMetadata(o, "", -1) for (t, p), o in offsets.items()})
        self._committed.update(offsets)

    def _log_lost(self, partitions) -> None:
        """The broker lost these partitions' logs (reset_lost_logs sought them to their new start):
        what is held of the old ones can never be read again; commit from the new logs on."""
        tps = {(tp.topic, tp.partition) for tp in partitions}
        self.tracker.forget(tps, lost=True)
        for tp in tps:
            self._committed.pop(tp, None)

    def _reset(self) -> None:
        """Forget all in-memory state: what it held was not committed and will be read again."""
        for bar in self._progress.values():
            bar.close()
        self._progress.clear()
        self.sessions.clear()
        self.orphans.clear()
        self.tracker.forget()
        self._committed.clear()

    def run(
        self, stop_event: threading.Event | None = None, idle_exit: float | None = None, serve_metrics: bool = True
    ) -> Summary:
        """Consume until stop_event is set, or (idle_exit) nothing arrived for that many seconds
        while no session was open. Stopping leaves open shards uncommitted, exactly like a crash."""
        from kafka import ConsumerRebalanceListener

        if serve_metrics:
            from infra import metrics

            metrics.serve(self.settings, STAGE)
        s = self.settings
        consumer = kafka.consumer(s, group_id=self.config.consumer_group, max_poll_records=self.config.max_poll_records)
        assembler = self

        class _Rebalance(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked):
                if closing:
                    return  # leaving the group on stop: the state simply ends with the process
                if revoked and (assembler.sessions or assembler.orphans or assembler.tracker.held_count()):
                    log.warning("partitions revoked: dropping in-memory state, it will be read again")
                    try:
                        assembler._commit(consumer)
                    finally:
                        assembler._reset()

            def on_partitions_assigned(self, assigned):
                log.info("assigned %d partitions", len(assigned))

        closing = False
        consumer.subscribe([s.topic_sessions, s.topic_frames, s.topic_smoothed], listener=_Rebalance())

        def handle(records: list, now: float) -> None:
            self.process_batch(records, now)

        def tick(now: float, backlog: bool) -> bool:
            return bool(self.tick(now, backlog=backlog))

        try:
            ConsumeLoop(
                consumer,
                handle,
                tick=tick,
                commit=lambda: self._commit(consumer),
                commit_every_s=self.config.commit_interval_s,
                lag_group=self.config.consumer_group,
                on_log_lost=self._log_lost,
                max_records=self.config.max_poll_records,
                idle_exit_s=idle_exit,
                busy=self.busy,
                stop=stop_event,
                clock=self.clock,
            ).run()
        finally:
            closing = True
            consumer.close(autocommit=False)
            if self._producer is not None:
                self._producer.flush()
                self._producer.close()
                self._producer = None
            for bar in self._progress.values():
                bar.close()
        return self.summary
