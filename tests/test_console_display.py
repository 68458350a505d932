"""The console runs a guided take: display tokens (only the display's read-only data), the take
ending by itself at the coverage target, the console's cameras as a child, sessions started from
the command line followed, on the real broker and store."""

from __future__ import annotations

import httpx2 as httpx

from console.app import create_app
from producers.session import publish
from schemas import SessionEvent

from helpers import (
    CONSOLE_PASSWORD,
    console_settings,
    dance_poses,
    figure_pose,
    read_topic,
    send,
    serve,
    store_dance,
    wait_until,
    write_counter_video,
)


def test_a_display_token_opens_the_display_only_and_can_be_revoked(settings):
    store_dance(settings, "steps", dance_poses(12))
    with serve(create_app(console_settings(settings), targets={})) as base, httpx.Client(timeout=10) as http:
        operator = {"Authorization": f"Bearer {CONSOLE_PASSWORD}", "Origin": base}
        issued = http.post(f"{base}/api/display-tokens", json={}, headers=operator).json()
        assert len(issued["token"]) >= 43 and issued["url"] == f"{base}/display?token={issued['token']}"
        # The link: its token becomes an HttpOnly cookie and leaves the address bar.
        opened = http.get(issued["url"], follow_redirects=False)
        assert opened.status_code == 303 and opened.headers["location"] == "/display"
        assert "httponly" in opened.headers["set-cookie"].lower()
        screen = httpx.Client(timeout=10, cookies={"booth_display": issued["token"]})
        assert screen.get(f"{base}/display").status_code == 200
        assert screen.get(f"{base}/api/display").json()["session"] is None
        assert len(screen.get(f"{base}/api/references/steps/dance.json").json()["poses"]) == 12
        # Nothing else: not the operator's state, previews, page or controls.
        for path in ("/api/state", "/", "/static/app.js", "/api/preview/cam0.jpg", "/api/references"):
            assert screen.get(f"{base}{path}").status_code == 403, path
        posted = screen.post(f"{base}/api/sessions", json={"cameras": ["cam0"]}, headers={"Origin": base})
        assert posted.status_code == 403
        assert screen.post(f"{base}/api/display-tokens", json={}, headers={"Origin": base}).status_code == 403
        # Revoked: the screen is refused; a guessed token counts as a failed login until throttled.
        revoked = http.post(f"{base}/api/display-tokens/revoke", json={"id": issued["id"]}, headers=operator)
        assert revoked.json()["revoked"] == 1
        assert screen.get(f"{base}/api/display").status_code == 401
        codes = [http.get(f"{base}/display?token=guess{i}").status_code for i in range(12)]
        assert codes[0] == 401 and codes[-1] == 429
        screen.close()
    assert [m for m in read_topic(settings, settings.topic_sessions) if isinstance(m, SessionEvent)] == []


def test_the_console_runs_a_guided_take_to_its_target(settings, tmp_path):
    store_dance(settings, "steps", dance_poses(24))
    video = write_counter_video(tmp_path / "cam.mp4", frames=300, fps=10)
    guided = console_settings(settings, console_cameras=f"cam0={video}")
    with serve(create_app(guided, targets={})) as base, httpx.Client(timeout=10) as http:
        http.headers.update({"Authorization": f"Bearer {CONSOLE_PASSWORD}", "Origin": base})
        started = http.post(
            f"{base}/api/sessions", json={"reference": "steps", "until_coverage": 0.8, "max_seconds": 60}
        )
        assert started.status_code == 201, started.text
        session = started.json()["session"]

        def row():
            return next((r for r in http.get(f"{base}/api/state").json()["sessions"] if r["session"] == session), None)

        # The console's camera runs as its child: the session's frames arrive.
        wait_until(lambda: (r := row()) and r["frames"] > 3, timeout=60, what="frames from the console's camera")
        assert row()["take"]["cameras"]["running"] and row()["status_line"].startswith("recording")
        display = http.get(f"{base}/api/display").json()
        assert display["session"]["session"] == session and display["session"]["reference"] == "steps"
        poses = [figure_pose(session, "cam0", i, p) for i, p in enumerate(dance_poses(24))]
        send(settings, [(settings.topic_smoothed, p) for p in poses])
        wait_until(lambda: (r := row()) and r["state"] == "end", timeout=30, what="the take to end at its target")
        assert row()["coverage"]["reason"] == "target" and row()["coverage"]["coverage"] >= 0.8
        wait_until(lambda: not row()["take"]["cameras"]["running"], timeout=15, what="the camera child to stop")
        wait_until(lambda: http.get(f"{base}/api/display").json()["session"] is None, timeout=10, what="idle")

        # A session started at the command line, without a guide, is followed by the console.
        publish(settings, "from-cli", "start", ["cam1"], "steps")
        rows = lambda: http.get(f"{base}/api/state").json()["sessions"]  # noqa: E731
        wait_until(
            lambda: any(r["session"] == "from-cli" and r["coverage"] is not None for r in rows()),
            timeout=20,
            what="the console to follow the command line's session",
        )
    kinds = [(m.session, m.kind) for m in read_topic(settings, settings.topic_sessions) if isinstance(m, SessionEvent)]
    assert kinds == [(session, "start"), (session, "end"), ("from-cli", "start")]  # the CLI's is not ended
