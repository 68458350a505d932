"""The live mirror on the console, against the real broker and store: behind the login, fed by
the smoothed-pose topic, streamed as MJPEG, its figures on the state endpoint and in metrics, and
served again by a restarted console."""

from __future__ import annotations

import time

import cv2
import httpx2 as httpx
import numpy as np

from console.app import create_app
from vision.smoothing.synthetic import stick_figure

from helpers import console_settings, logged_in, make_frame, make_pose, send, serve, wait_until


class _Stick:
    """A pose estimator that finds a dancing stick figure (the reference's poses, no model needed)."""

    name = "stick"

    def __init__(self, n: int):
        self.poses, _ = stick_figure(n, seed=5)
        self.i = 0

    def estimate(self, rgb, key=None):
        from types import SimpleNamespace

        pose = self.poses[min(self.i, len(self.poses) - 1)]
        self.i += 1
        return [SimpleNamespace(keypoints=pose.astype(np.float32))]


def _add_reference(settings, tmp_path, name: str = "solo", n: int = 20) -> None:
    from trainer.references import add_reference
    from trainer.references.video import write_mp4

    video = tmp_path / "solo.mp4"
    write_mp4(video, [np.full((480, 640, 3), 30 + k, np.uint8) for k in range(n)], 30)
    add_reference(settings, video, name, estimator=_Stick(n), resolution=64)


def _first_part(http, url: str) -> tuple[dict, bytes]:
    """The headers and JPEG of the first part of an MJPEG stream."""
    with http.stream("GET", url) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("multipart/x-mixed-replace; boundary=mirrorframe")
        data = b""
        for chunk in response.iter_bytes():
            data += chunk
            head, sep, rest = data.partition(b"\r\n\r\n")
            if sep:
                headers = dict(line.split(": ", 1) for line in head.decode().splitlines()[1:])
                if len(rest) >= int(headers["Content-Length"]):
                    return headers, rest[: int(headers["Content-Length"])]
    raise AssertionError("the stream ended before its first frame")


def test_the_mirror_page_streams_the_dancer_behind_the_login_and_reconnects(settings, tmp_path):
    _add_reference(settings, tmp_path)
    settings = console_settings(settings, default_reference="solo")
    app = create_app(settings, targets={})
    with serve(app) as base, httpx.Client(timeout=10) as http:
        # Not logged in: neither the page nor the stream nor the figures.
        assert http.get(f"{base}/mirror", follow_redirects=False).status_code == 303
        assert http.get(f"{base}/api/mirror/cam0/state").status_code == 401
        assert http.get(f"{base}/api/mirror/cam0.mjpeg").status_code == 401
        logged_in(http, base)
        page = http.get(f"{base}/mirror")
        assert page.status_code == 200 and "/static/mirror.js" in page.text
        assert http.get(f"{base}/static/mirror.js").status_code == 200
        assert http.get(f"{base}/api/mirror/cam0/state?reference=nobody").status_code == 404
        assert http.get(f"{base}/api/mirror/..%2Fx/state").status_code in (400, 404)

        state = http.get(f"{base}/api/mirror/cam0/state").json()
        assert state["generator"] is False and "booth reference train solo" in state["message"]
        assert state["mode"] == "idle" and state["reference"] == "solo"

        # The visitor dances in front of cam0 (and someone else in front of cam1): poses until the mirror has some.
        seq = [0]

        def dance() -> bool:
            frames = [make_frame("s1", "cam0", seq[0] + k, wall_time=time.time()) for k in range(3)]
            other = make_frame("s1", "cam1", seq[0], wall_time=time.time())
            send(settings, [(settings.topic_smoothed, make_pose(f)) for f in [*frames, other]])
            seq[0] += 3
            return http.get(f"{base}/api/mirror/cam0/state").json()["rendered"] >= 2

        wait_until(dance, timeout=30, interval=0.3, what="the mirror to render the visitor's poses")
        headers, jpeg = _first_part(http, f"{base}/api/mirror/cam0.mjpeg")
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (360, 480, 3) and image.max() > 100  # the skeleton, at the dancer's 640 x 480
        assert headers["X-Mirror-Mode"] in ("skeleton", "idle") and int(headers["X-Mirror-Frame"]) >= 1

        state = http.get(f"{base}/api/mirror/cam0/state").json()
        assert state["rendered"] >= 2 and state["offered"] <= seq[0]  # cam1's poses are not cam0's
        assert state["delay_ms_p95"] is not None and state["delay_ms_p95"] < 30_000
        assert state["stale"] + state["superseded"] + state["rendered"] + state["no_person"] <= state["offered"]
        from prometheus_client import REGISTRY  # the console's process-wide metrics, served on their own port

        assert REGISTRY.get_sample_value("booth_mirror_frames_total", {"camera": "cam0"}) >= 2
        assert REGISTRY.get_sample_value("booth_mirror_generator", {"camera": "cam0"}) == 0

        # The camera's mirror restarted: its stream ends, and the state names the new feed, which
        # is how the page knows to reopen its stream.
        feed = state["feed"]
        app.state.mirrors.stop()
        assert http.get(f"{base}/api/mirror/cam0/state").json()["feed"] != feed

    # The console restarted: the page's stream is served again (mirror.js reconnects on its own).
    with serve(create_app(settings, targets={})) as base, httpx.Client(timeout=10) as http:
        logged_in(http, base)
        headers, jpeg = _first_part(http, f"{base}/api/mirror/cam0.mjpeg")
        assert headers["X-Mirror-Mode"] == "idle" and cv2.imdecode(np.frombuffer(jpeg, np.uint8), 1) is not None
