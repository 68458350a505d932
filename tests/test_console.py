"""The operator console's API against the real broker: sessions, previews, training, renditions, SSE."""

from __future__ import annotations

import json
import time

import cv2
import httpx2 as httpx
import numpy as np
import pytest
from starlette.testclient import TestClient

from console.app import create_app
from console.overlay import IMPUTED_COLOUR, NOTE_COLOUR, OUTLIER_COLOUR, PreviewError, render_preview, track_colour
from console.preview import PreviewFeed
from console.qr import qr_png
from console.state import build_state
from infra import kafka
from infra.links import share_url
from infra.objectstore import ObjectStore
from infra.settings import Settings
from schemas import (
    DatasetReady,
    DeadLetter,
    Person,
    Rendition,
    SessionEvent,
    TrainingProgress,
    layout,
)
from schemas.keypoints import IMPUTED, NUM_KEYPOINTS, OUTLIER, SMOOTHED

from helpers import (
    console_settings,
    fake_metrics,
    logged_in,
    make_frame,
    make_pose,
    read_topic,
    send,
    serve,
    wait_until,
)

W, H = 320, 240
BASE = "http://127.0.0.1"


def console(settings, **kw) -> TestClient:
    """The console app on ``settings`` in a TestClient, logged in (enter it with `with`)."""
    return TestClient(create_app(console_settings(settings), **kw), base_url=BASE)


def session_row(client, session):
    for row in client.get("/api/state").json()["sessions"]:
        if row["session"] == session:
            return row
    return None


# --- drawing, pairing and QR codes (no broker) -----------------------------------------------------
def _border(jpeg: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).astype(int)
    return image[H // 2, 2]  # a pixel in the left border, away from labels


def test_preview_draws_the_pose_and_marks_imputed_and_outlier_frames():
    frame = make_frame("s1", "cam0", 3)
    raw = cv2.imdecode(np.frombuffer(frame.image, np.uint8), cv2.IMREAD_COLOR).astype(int)
    clean = cv2.imdecode(np.frombuffer(render_preview(frame, make_pose(frame)), np.uint8), cv2.IMREAD_COLOR).astype(int)
    # The figure is drawn (pixels along the torso change) and a clean pose leaves the edge alone.
    assert np.abs(clean[75:130, 140:180] - raw[75:130, 140:180]).mean() > 10
    assert np.abs(_border(render_preview(frame, make_pose(frame))) - raw[H // 2, 2]).max() < 25

    imputed = _border(render_preview(frame, make_pose(frame, {9: IMPUTED | SMOOTHED, 10: IMPUTED})))
    outlier = _border(render_preview(frame, make_pose(frame, {9: IMPUTED, 15: OUTLIER})))
    assert np.abs(imputed - IMPUTED_COLOUR).max() < 40, imputed
    assert np.abs(outlier - OUTLIER_COLOUR).max() < 40, outlier  # an outlier outranks imputation

    broken = frame.model_copy(update={"image": b"\xff\xd8 not a jpeg"})
    with pytest.raises(PreviewError, match="does not decode"):
        render_preview(broken, None)


def _people_pose(frame, tracks: dict[int, float], main: int | None):
    """Two small figures, at x offsets -70 and +70, with the given track ids; `main` in persons."""
    base = np.array(make_pose(frame).persons[0].keypoints, np.float32)
    people = {}
    for (track, dx), flags in zip(tracks.items(), ([1] * NUM_KEYPOINTS, [5] * NUM_KEYPOINTS)):
        kp = base.copy()
        kp[:, 0] = (kp[:, 0] - 160) * 0.5 + 160 + dx
        kp[:, 1] = (kp[:, 1] - 40) * 0.6 + 70
        people[track] = Person.from_array(kp, 0.9, track=track, flags=flags)
    persons = [people[main]] if main is not None else []
    return make_pose(frame).model_copy(
        update={
            "persons": persons,
            "flags": persons[0].flags if persons else [],
            "others": [p for t, p in people.items() if t != main],
        }
    )


def _near(image: np.ndarray, colour, region) -> float:
    """Share of the region's pixels within a JPEG's error of the colour."""
    (y0, y1), (x0, x1) = region
    patch = image[max(0, y0) : y1, max(0, x0) : x1]
    return float((np.abs(patch - np.array(colour)).max(axis=2) < 60).mean())


def test_preview_tags_each_tracked_person_in_the_colour_of_their_track():
    frame = make_frame("s1", "cam0", 3)
    pose = _people_pose(frame, {3: -70, 5: 70}, main=3)
    image = cv2.imdecode(np.frombuffer(render_preview(frame, pose), np.uint8), cv2.IMREAD_COLOR).astype(int)
    assert track_colour(3) != track_colour(5) and track_colour(3) == track_colour(3 + 8 * 5)
    for person in pose.persons + pose.others:
        kp = person.array()
        x0, y0 = kp[:, :2].min(axis=0).astype(int) - 4
        tag = ((y0 - 12, y0 - 1), (x0, x0 + 14))  # the filled tag above the box
        assert _near(image, track_colour(person.track), tag) > 0.4, person.track
        other = 5 if person.track == 3 else 3
        assert _near(image, track_colour(other), tag) < 0.1
    # The main person hidden: the others are still drawn, and the label says who is missing.
    hidden = _people_pose(frame, {3: -70, 5: 70}, main=None)
    nobody = hidden.model_copy(update={"others": []})

    def label_width(p) -> int:
        im = cv2.imdecode(np.frombuffer(render_preview(frame, p), np.uint8), cv2.IMREAD_COLOR).astype(int)
        return int((np.abs(im[14] - np.array(NOTE_COLOUR)).max(axis=1) < 40).sum())

    assert label_width(hidden) > 1.5 * label_width(nobody) > 0  # "main person not in view" / "no person"


def test_preview_feed_pairs_frames_with_their_poses_and_counts_per_session():
    feed = PreviewFeed(Settings())  # not started: fed by hand
    now = time.time()
    frames = [make_frame("s1", "cam0", i, now + i * 0.1) for i in range(6)]
    for f in frames:
        feed.apply(f.encode())
    for f in frames[:4]:  # the poses lag two frames behind
        feed.apply(make_pose(f, {0: IMPUTED} if f.seq == 3 else None).encode())
    feed.apply(b"garbage, not an envelope")

    (cam,) = feed.cameras(now=now + 1)
    assert (cam["camera"], cam["session"], cam["seq"], cam["posed"], cam["imputed"]) == ("cam0", "s1", 3, True, 1)
    shot = feed.preview("cam0")
    assert (shot.seq, shot.posed) == (3, True) and shot.jpeg[:2] == b"\xff\xd8"
    assert feed.preview("cam0") is shot  # drawn once, then cached
    assert feed.preview("nope") is None
    counts = feed.sessions()["s1"]
    assert (counts["frames"], counts["poses"], counts["with_person"]) == (6, 4, 4)
    assert counts["imputed_share"] == pytest.approx(1 / (4 * NUM_KEYPOINTS))
    assert feed.invalid == 1 and "bad magic" in feed.last_error

    # Poses too far behind (no processor running, say): the newest frame is shown bare.
    late = make_frame("s1", "cam0", 6, now + 5)
    feed.apply(late.encode())
    assert (feed.preview("cam0").seq, feed.preview("cam0").posed) == (6, False)


def test_qr_png_decodes_back_to_the_link():
    url = "http://127.0.0.1:9000/booth/sessions/s1/rendition.mp4?X-Amz-Signature=" + "ab12" * 16
    image = cv2.imdecode(np.frombuffer(qr_png(url), np.uint8), cv2.IMREAD_GRAYSCALE)
    text, _points, _ = cv2.QRCodeDetector().detectAndDecode(image)
    assert text == url
    with pytest.raises(ValueError, match="non-empty"):
        qr_png("")


# --- the API on the real broker --------------------------------------------------------------------
def test_the_status_line_gives_the_trainers_warnings_in_an_operators_words():
    cut = "the person is cut off by the frame's edge in 40% of the training frames: what lies outside is never learnt"
    spots = "camera cam0: the person covered 80% of the frame in every training frame; the plate there is filled in"
    row = {
        "session": "s1",
        "state": "end",
        "dataset": "ready",
        "samples": 300,
        "phase": "training",
        "step": 50,
        "total_steps": 100,
        "eta_s": 600,
        "warnings": [cut, "too few frames to hold any out: the quality figures are on training frames", spots, "new"],
    }
    dead = {"total": 0, "by_stage": {}, "last": []}

    def line(**changes) -> str:
        snapshot = {"sessions": [{**row, **changes}], "stages": {}, "deadletters": dead}
        (r,) = build_state(snapshot, {}, [])["sessions"]
        return r["status_line"]

    # What may show in the video, in a few words each; an unknown warning as a trainer note.
    heads_up = " · ⚠ partly out of the picture, background smudges possible, trainer note"
    assert line() == "training 50%, about 10 min left" + heads_up
    final = {"rendition_url": "http://x/v.mp4", "versions": [{"version": 1, "final": True}]}
    assert line(**final) == "final video ready" + heads_up
    assert line(warnings=[]) == "training 50%, about 10 min left"
    assert line(failure="training failed: out of memory") == "failed: training failed: out of memory"


def test_start_and_end_sessions_publish_session_events_and_bad_input_is_refused(settings):
    store = ObjectStore(settings)
    for name in ("salsa", "house"):  # the reference dances in the store, as `booth reference add` leaves them
        store.put(layout.reference_latest_key(name), b'{"version": 1}')
    with console(settings.model_copy(update={"default_reference": "house"}), targets={}) as client:
        logged_in(client)
        r = client.post(
            "/api/sessions",
            json={"session": "visitor-1", "cameras": ["cam0", "cam1"], "reference": "salsa", "consent": True},
        )
        assert r.status_code == 201, r.text
        assert r.json()["session"] == "visitor-1"
        generated = client.post("/api/sessions", json={"cameras": ["cam0"]})
        assert generated.status_code == 201 and generated.json()["session"].startswith("s")
        assert client.post("/api/sessions/visitor-1/end", json={}).status_code == 200
        assert client.post("/api/sessions/visitor-1/end", json={"abort": True}).json()["event"]["kind"] == "abort"

        bad = {
            "the request body is not valid JSON": client.post(
                "/api/sessions", content=b"{nope", headers={"Content-Type": "application/json"}
            ),
            "must be a JSON object": client.post("/api/sessions", json=["cam0"]),
            "session '../etc' has a forbidden character '.'": client.post("/api/sessions", json={"session": "../etc"}),
            "cameras must be a list": client.post("/api/sessions", json={"cameras": "cam0"}),
            "cameras[1]": client.post("/api/sessions", json={"cameras": ["cam0", "cam 1"]}),
            "cameras lists an id twice": client.post("/api/sessions", json={"cameras": ["cam0", "cam0"]}),
            "unknown field(s) camera": client.post("/api/sessions", json={"camera": ["cam0"]}),
            "abort must be true or false": client.post("/api/sessions/visitor-1/end", json={"abort": "yes"}),
            "session 'a.b' has a forbidden": client.post("/api/sessions/a.b/end", json={}),
            "consent must be true or false": client.post("/api/sessions", json={"consent": "yes"}),
            "reference dance 'tango' does not exist": client.post("/api/sessions", json={"reference": "tango"}),
            "no camera: a session needs at least one": client.post("/api/sessions", json={"session": "v-2"}),
            "until_coverage must be a number in (0, 1]": client.post(
                "/api/sessions", json={"cameras": ["cam0"], "until_coverage": 80}
            ),
        }
        for expected, response in bad.items():
            assert response.status_code == 400, (expected, response.text)
            assert expected in response.json()["error"], (expected, response.json())
        assert client.get("/api/sessions").status_code == 405
        assert client.get("/api/nothing").json() == {"error": "Not Found"}

    events = [m for m in read_topic(settings, settings.topic_sessions) if isinstance(m, SessionEvent)]
    assert [(e.session, e.kind) for e in events] == [
        ("visitor-1", "start"),
        (generated.json()["session"], "start"),
        ("visitor-1", "end"),
        ("visitor-1", "abort"),
    ]
    assert events[0].cameras == ["cam0", "cam1"] and events[0].reference == "salsa"
    assert events[1].reference == "house"  # none named: the configured default, recorded at the start
    assert [e.consent for e in events] == [True, False, False, False]  # consent only when given


def test_a_session_without_a_reference_is_refused_when_no_default_is_configured(settings):
    with console(settings, targets={}) as client:
        logged_in(client)
        refused = client.post("/api/sessions", json={"cameras": ["cam0"]})
    assert refused.status_code == 400 and "needs a reference dance" in refused.json()["error"]
    assert [m for m in read_topic(settings, settings.topic_sessions) if isinstance(m, SessionEvent)] == []


def test_preview_endpoint_serves_the_newest_posed_frame_and_follows_new_frames(settings):
    with console(settings, targets={}) as client:
        logged_in(client)
        assert client.get("/api/preview/cam0.jpg").status_code == 404
        assert "forbidden character" in client.get("/api/preview/c%20am.jpg").json()["error"]

        frames = [make_frame("live-1", "cam0", i) for i in range(3)]
        send(
            settings,
            [(settings.topic_frames, f) for f in frames]
            + [(settings.topic_smoothed, make_pose(f, {9: IMPUTED})) for f in frames],
        )
        first = wait_until(
            lambda: (
                (r := client.get("/api/preview/cam0.jpg")).status_code == 200
                and r.headers["x-frame-seq"] == "2"
                and r.headers["x-frame-posed"] == "1"
                and r
            ),
            timeout=20,
            what="the first preview",
        )
        assert first.headers["content-type"] == "image/jpeg" and first.content[:2] == b"\xff\xd8"
        again = client.get("/api/preview/cam0.jpg", headers={"If-None-Match": first.headers["etag"]})
        assert again.status_code == 304 and again.content == b""

        more = [make_frame("live-1", "cam0", i) for i in range(3, 5)]
        send(
            settings,
            [(settings.topic_frames, f) for f in more] + [(settings.topic_smoothed, make_pose(f)) for f in more],
        )
        second = wait_until(
            lambda: (r := client.get("/api/preview/cam0.jpg")).headers.get("x-frame-seq") == "4" and r,
            timeout=20,
            what="the preview to move on",
        )
        assert second.content != first.content and second.headers["etag"] != first.headers["etag"]

        row = wait_until(
            lambda: (r := session_row(client, "live-1")) and r["poses"] == 5 and r,
            timeout=10,
            what="the session's counts",
        )
        assert (row["frames"], row["poses"]) == (5, 5)
        assert row["imputed_share"] == pytest.approx(3 / (5 * NUM_KEYPOINTS))
        (cam,) = client.get("/api/state").json()["cameras"]
        assert (cam["camera"], cam["seq"], cam["posed"], cam["imputed"]) == ("cam0", 4, True, 0)


def test_training_renditions_throughput_and_dead_letters_reach_the_state(settings):
    now = time.time()
    with (
        fake_metrics() as pose_metrics,
        console(settings, targets={"processors": pose_metrics}) as client,
    ):
        logged_in(client)
        send(
            settings,
            [
                (
                    settings.topic_sessions,
                    SessionEvent(session="done-1", kind="start", wall_time=now, cameras=["cam0"]),
                ),
                (
                    settings.topic_training,
                    TrainingProgress(
                        session="done-1",
                        phase="loading",
                        step=0,
                        total_steps=0,
                        message="warning: the person is cut off by the frame's edge in 40% of the training frames",
                        wall_time=now - 1,
                    ),
                ),
                (
                    settings.topic_training,
                    TrainingProgress(
                        session="done-1",
                        phase="loading",
                        step=0,
                        total_steps=0,
                        message="warning: too few frames to hold any out: the quality figures are on training frames",
                        wall_time=now - 0.5,
                    ),
                ),
                (
                    settings.topic_training,
                    TrainingProgress(
                        session="done-1",
                        phase="training",
                        step=40,
                        total_steps=100,
                        losses={"G_L1": 0.12},
                        eta_s=95,
                        wall_time=now,
                    ),
                ),
            ],
        )
        p = kafka.producer(settings)
        p.send(
            settings.topic_deadletter,
            value=DeadLetter.wrap(
                stage="pose",
                reason="image does not decode",
                topic=settings.topic_frames,
                value=b"junk",
                key=b"done-1/cam0",
                wall_time=now,
            ).encode(),
        )
        p.flush()
        p.close()
        row = wait_until(
            lambda: (r := session_row(client, "done-1")) and r["training"] and r,
            timeout=15,
            what="training progress in the state",
        )
        assert row["training"] == {
            "phase": "training",
            "step": 40,
            "total_steps": 100,
            "fraction": 0.4,
            "eta_s": 95,
            "losses": {"G_L1": 0.12},
            "message": "warning: too few frames to hold any out: the quality figures are on training frames",
            "warnings": [
                "the person is cut off by the frame's edge in 40% of the training frames",
                "too few frames to hold any out: the quality figures are on training frames",
            ],
            # In an operator's words, the trainer's text behind "details" (tools.warning_words).
            "notices": [
                {
                    "kinds": ["cut-off"],
                    "short": "partly out of the picture",
                    "words": "The visitor was partly out of the picture (40% of the time): what the camera did not "
                    "see (often the feet or the head) may look wrong. Ask the next visitor to stay inside the marks.",
                    "affects_video": True,
                    "details": "the person is cut off by the frame's edge in 40% of the training frames",
                },
                {
                    "kinds": ["scores-short-recording"],
                    "short": "quality scores rough",
                    "words": "The recording was short, so the video's quality scores are rough. The video itself "
                    "is not affected.",
                    "affects_video": False,
                    "details": "too few frames to hold any out: the quality figures are on training frames",
                },
            ],
        }
        # The session's one line names what may show in the video, not what only touches the figures.
        assert row["status_line"] == "recording: 0 frames · ⚠ partly out of the picture"
        assert row["state"] == "start" and row["rendition"] is None
        assert client.get("/api/sessions/done-1/qr.svg").status_code == 404

        url = "http://127.0.0.1:1/booth/sessions/done-1/rendition.mp4?X-Amz-Signature=abc"
        send(
            settings,
            [
                (
                    settings.topic_renditions,
                    Rendition(
                        session="done-1",
                        reference="salsa",
                        video_key="k.mp4",
                        url=url,
                        expires_at=now + 600,
                        frames=48,
                        metrics={
                            "box_psnr": 24.5,
                            "box_ssim": 0.81,
                            "psnr": 29.0,
                            "flicker": 0.9,
                            "steps": 300,
                            "dance_limb_error": 0.11,
                            "dance_facing_agreement": 0.9,
                            "dance_judged": 24,
                        },
                        wall_time=now + 1,
                        final=False,
                    ),
                )
            ],
        )
        row = wait_until(
            lambda: (r := session_row(client, "done-1")) and r["rendition"] and r,
            timeout=15,
            what="the rendition in the state",
        )
        assert (row["rendition"]["url"], row["rendition"]["frames"]) == (url, 48)
        # The held-out and dance figures, for the operator to see: quality ones only.
        assert row["rendition"]["quality"] == {
            "box_psnr": 24.5,
            "box_ssim": 0.81,
            "psnr": 29.0,
            "flicker": 0.9,
            "dance_limb_error": 0.11,
            "dance_facing_agreement": 0.9,
        }
        svg = client.get(row["rendition"]["qr_svg"])
        assert svg.headers["content-type"] == "image/svg+xml" and b"<svg" in svg.content
        png = cv2.imdecode(
            np.frombuffer(client.get(row["rendition"]["qr_png"]).content, np.uint8), cv2.IMREAD_GRAYSCALE
        )
        # The code holds the visitor's short link on the console's address (no public_url here), not
        # the long presigned one.
        assert row["rendition"]["link"] == share_url(settings, "done-1", BASE + "/")
        assert cv2.QRCodeDetector().detectAndDecode(png)[0] == row["rendition"]["link"]

        # A better version follows: the console shows the newest, with the curve of all of them.
        newer = url.replace("abc", "def")
        v2 = Rendition(
            session="done-1",
            reference="salsa",
            video_key="k2.mp4",
            url=newer,
            expires_at=now + 600,
            frames=48,
            metrics={"box_psnr": 26.0, "box_ssim": 0.85, "train_seconds": 120.0},
            wall_time=now + 2,
            version=2,
        )
        send(settings, [(settings.topic_renditions, v2)])
        row = wait_until(
            lambda: (r := session_row(client, "done-1")) and r["rendition"]["version"] == 2 and r,
            timeout=15,
            what="the second version in the state",
        )
        assert row["rendition"]["url"] == newer and row["rendition"]["quality"] == {"box_psnr": 26.0, "box_ssim": 0.85}
        curve = [(v["version"], v["final"], v["box_psnr"]) for v in row["rendition"]["versions"]]
        assert curve == [(1, False, 24.5), (2, True, 26.0)]

        def pipeline_ready():
            pipe = client.get("/api/state").json()["pipeline"]
            stages = {s["stage"]: s for s in pipe["stages"]}
            return pipe["deadletters"]["total"] == 1 and (stages["pose"]["rate"] or 0) > 0 and pipe

        pipe = wait_until(pipeline_ready, timeout=15, what="throughput and dead letters")
        pose = next(s for s in pipe["stages"] if s["stage"] == "pose")
        assert pose["up"] and pose["total"] >= 500 and pose["deadletters"] == 1
        assert next(s for s in pipe["stages"] if s["stage"] == "camera")["total"] is None  # not scraped: no number
        assert pipe["deadletters"]["last"][0]["reason"] == "image does not decode"


def test_failed_and_inactive_sessions_show_as_such_and_metrics_targets_come_from_the_settings(settings):
    """A session whose dataset or training failed shows `failed` with the reason; one the assembler
    closed for inactivity (no end event) stops showing "recording"; the pipeline panel scrapes the
    components where BOOTH_METRICS_TARGETS says they are."""
    now = time.time()
    with fake_metrics() as pose_metrics:
        configured = settings.model_copy(update={"metrics_targets": {"processors": pose_metrics}})
        with console(configured) as client:
            logged_in(client)
            start = [
                (settings.topic_sessions, SessionEvent(session=s, kind="start", wall_time=now, cameras=["cam0"]))
                for s in ("f-data", "f-train", "f-idle")
            ]
            send(
                settings,
                [
                    *start,
                    (settings.topic_sessions, SessionEvent(session="f-train", kind="end", wall_time=now + 1)),
                    (
                        settings.topic_datasets,
                        DatasetReady(
                            session="f-data",
                            status="failed",
                            reason="only 3 usable frames",
                            samples=3,
                            wall_time=now + 2,
                        ),
                    ),
                    (
                        settings.topic_datasets,
                        DatasetReady(session="f-train", status="ready", samples=90, wall_time=now + 2),
                    ),
                    (
                        settings.topic_training,
                        TrainingProgress(
                            session="f-train",
                            phase="failed",
                            step=0,
                            total_steps=0,
                            message="DatasetError: shard 1 cannot be read",
                            wall_time=now + 3,
                        ),
                    ),
                    (
                        settings.topic_datasets,
                        DatasetReady(
                            session="f-idle",
                            status="ready",
                            samples=40,
                            wall_time=now + 4,
                            reason="closed after 300 s without messages (no end event)",
                        ),
                    ),
                ],
            )
            rows = wait_until(
                lambda: (
                    all(
                        session_row(client, s) and session_row(client, s)["dataset"]
                        for s in ("f-data", "f-train", "f-idle")
                    )
                    and {s: session_row(client, s) for s in ("f-data", "f-train", "f-idle")}
                ),
                timeout=15,
                what="the three sessions in the state",
            )
            rows["f-train"] = wait_until(lambda: (r := session_row(client, "f-train"))["failure"] and r, timeout=15)
            assert rows["f-data"]["failure"] == "dataset failed: only 3 usable frames"
            assert rows["f-train"]["failure"] == "training failed: DatasetError: shard 1 cannot be read"
            assert rows["f-idle"]["failure"] is None and rows["f-idle"]["state"] == "closed"
            assert rows["f-data"]["state"] == "closed" and rows["f-train"]["state"] == "end"

            def pose_up():
                stages = {s["stage"]: s for s in client.get("/api/state").json()["pipeline"]["stages"]}
                return stages.get("pose", {}).get("up") and stages["pose"]

            assert wait_until(pose_up, timeout=15, what="the configured processors endpoint")["total"] >= 500


def test_event_stream_sends_the_state_about_every_second(settings):
    send(settings, [(settings.topic_sessions, SessionEvent(session="sse-1", kind="start", wall_time=time.time()))])
    with (
        serve(create_app(console_settings(settings), targets={}, event_interval_s=0.2)) as base,
        httpx.Client(timeout=10) as http,
    ):
        logged_in(http, base)
        states = []
        with http.stream("GET", f"{base}/api/events") as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            for line in response.iter_lines():
                if line.startswith("data: "):
                    states.append(json.loads(line[6:]))
                    seen = any(r["session"] == "sse-1" for r in states[-1]["sessions"])
                    if (seen and len(states) >= 2) or len(states) > 100:
                        break
        assert len(states) >= 2 and states[-1]["now"] > states[0]["now"]
        assert any(r["session"] == "sse-1" and r["state"] == "start" for r in states[-1]["sessions"])
        page = http.get(base + "/")
        assert page.status_code == 200 and 'id="start-session"' in page.text and 'id="f-consent"' in page.text
        assert http.get(base + "/static/app.js").status_code == 200


def test_console_command_serves_on_loopback_by_default_and_warns_otherwise(settings, monkeypatch):
    import uvicorn
    from click.testing import CliRunner
    from starlette.applications import Starlette

    from console.cli import console

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))  # not actually serving
    # No password: the console does not start, and says how to set one.
    refused = CliRunner().invoke(console, ["--no-metrics"], obj={"settings": settings})
    assert refused.exit_code != 0 and not calls
    assert "BOOTH_CONSOLE_PASSWORD" in refused.output and "BOOTH_SECRETS_DIR" in refused.output

    settings = console_settings(settings)
    result = CliRunner().invoke(console, ["--port", "8123", "--no-metrics"], obj={"settings": settings})
    assert result.exit_code == 0, result.output
    ((app, kw),) = calls
    assert isinstance(app, Starlette) and (kw["host"], kw["port"]) == ("127.0.0.1", 8123)
    assert app.state.hub.settings is settings and "warning" not in result.output

    exposed = CliRunner().invoke(console, ["--host", "0.0.0.0", "--no-metrics"], obj={"settings": settings})
    assert exposed.exit_code == 0 and "over plain HTTP" in exposed.output and "BOOTH_CONSOLE_HOSTS" in exposed.output
    assert calls[-1][1]["host"] == "0.0.0.0" and calls[-1][1]["port"] == 8080
    behind_tls = console_settings(settings, console_secure_cookie=True, console_hosts="booth.example.org")
    quiet = CliRunner().invoke(console, ["--host", "0.0.0.0", "--no-metrics"], obj={"settings": behind_tls})
    assert quiet.exit_code == 0 and "warning" not in quiet.output
    bad = CliRunner().invoke(console, ["--port", "0"], obj={"settings": settings})
    assert bad.exit_code != 0 and "0 is not in the range" in bad.output
