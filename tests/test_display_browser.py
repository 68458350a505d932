"""The booth display in headless Chromium, opened with a display link: the dance plays, the
visitor's skeleton moves with the session's poses, the meter rises as covered poses arrive, and
the take ends at its target (the display goes back to between-sessions)."""

from __future__ import annotations

import time

import httpx2 as httpx
from test_console_browser import ARTIFACTS, chromium, require_browser

from console.app import create_app
from schemas import SessionEvent
from trainer.figure import figure

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
)


def test_the_display_follows_a_guided_take(settings):
    require_browser()
    from selenium.webdriver.common.by import By

    store_dance(settings, "steps", dance_poses(24))
    with (
        serve(create_app(console_settings(settings), targets={})) as base,
        httpx.Client(timeout=10) as http,
        chromium() as driver,
    ):
        http.headers.update({"Authorization": f"Bearer {CONSOLE_PASSWORD}", "Origin": base})
        link = http.post(f"{base}/api/display-tokens", json={}).json()["url"]
        driver.get(link)
        wait_until(lambda: driver.current_url == f"{base}/display", timeout=10, what="the display, token in a cookie")

        def attr(element: str, name: str) -> str:
            return driver.find_element(By.ID, element).get_attribute(name)

        wait_until(lambda: attr("stage", "data-mode") == "idle", timeout=15, what="the display between sessions")
        body = {"cameras": ["cam0"], "reference": "steps", "until_coverage": 0.8, "max_seconds": 120}
        session = http.post(f"{base}/api/sessions", json=body).json()["session"]

        # The dance plays: its frame moves on.
        wait_until(lambda: attr("stage", "data-mode") == "recording", timeout=15, what="the display to show the take")
        first = wait_until(lambda: (f := attr("dance", "data-frame")) != "-1" and f, timeout=10, what="the dance")
        wait_until(lambda: attr("dance", "data-frame") != first, timeout=10, what="the dance to play on")

        # The visitor's skeleton follows the poses; the meter rises as the dance's poses arrive.
        send(settings, [(settings.topic_smoothed, figure_pose(session, "cam0", 1, figure(0, "down")))])
        wait_until(lambda: attr("visitor", "data-seq") == "1", timeout=10, what="the visitor's skeleton")
        dance = dance_poses(24)
        first_steps = [figure_pose(session, "cam0", 2 + i, p) for i, p in enumerate(dance[:8])]
        send(settings, [(settings.topic_smoothed, p) for p in first_steps])
        wait_until(lambda: attr("visitor", "data-seq") == "9", timeout=10, what="the skeleton to move on")
        risen = wait_until(
            lambda: 0.0 < (c := float(attr("meter", "data-coverage"))) < 0.8 and c, timeout=15, what="the meter"
        )

        # The bar eases to its width (a CSS transition of .4 s); settled, it fills what the label says.
        def bar_matches_label() -> bool:
            fill, label = driver.execute_script(
                "const w = (id) => document.getElementById(id).getBoundingClientRect().width;"
                "return [w('meter-fill') / w('meter'), document.getElementById('meter-text').textContent];"
            )
            assert label.endswith("% of 80%"), label
            return abs(fill - int(label.split("%")[0]) / 100) < 0.01

        wait_until(bar_matches_label, timeout=5, what="the meter's bar to fill the share its label says")
        ARTIFACTS.mkdir(exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "display.png"))
        the_rest = [figure_pose(session, "cam0", 10 + i, p) for i, p in enumerate(dance)]
        send(settings, [(settings.topic_smoothed, p) for p in the_rest])
        # Covered: the take ends by itself and the display goes back to between sessions.
        wait_until(lambda: attr("stage", "data-mode") == "idle", timeout=30, what="the take to end at its target")
        assert risen < 0.8
        logged = driver.get_log("browser")
        assert not [e for e in logged if "Content Security Policy" in e["message"]], logged
    events = [m for m in read_topic(settings, settings.topic_sessions) if isinstance(m, SessionEvent)]
    assert [e.kind for e in events] == ["start", "end"] and "target" in events[1].note


class CuttableProxy:
    """A loopback TCP proxy whose connections can be cut and refused for a while: a lost network."""

    def __init__(self, target_port: int):
        import socket
        import threading

        self.target = target_port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.open = threading.Event()
        self.open.set()
        self.sockets: list = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if not self.open.is_set():
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target))
            with self.lock:
                self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(a, b) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass

    def cut(self) -> None:
        self.open.clear()
        with self.lock:
            for s in self.sockets:
                try:
                    s.shutdown(2)
                except OSError:
                    pass
            self.sockets.clear()

    def restore(self) -> None:
        self.open.set()

    def close(self) -> None:
        self.cut()
        self.server.close()


def test_a_display_that_loses_its_connection_reconnects_and_catches_up(settings):
    require_browser()
    from selenium.webdriver.common.by import By

    store_dance(settings, "steps", dance_poses(12))
    with (
        serve(create_app(console_settings(settings), targets={})) as base,
        httpx.Client(timeout=10) as http,
        chromium() as driver,
    ):
        proxy = CuttableProxy(int(base.rsplit(":", 1)[1]))
        http.headers.update({"Authorization": f"Bearer {CONSOLE_PASSWORD}", "Origin": base})
        token = http.post(f"{base}/api/display-tokens", json={}).json()["token"]
        screen = f"http://127.0.0.1:{proxy.port}"
        driver.get(f"{screen}/display?token={token}")

        def shown(element: str, name: str) -> str:
            return driver.find_element(By.ID, element).get_attribute(name)

        wait_until(lambda: shown("stage", "data-mode") == "idle", timeout=15, what="the display between sessions")
        proxy.cut()
        wait_until(lambda: driver.find_element(By.ID, "conn").is_displayed(), timeout=15, what="reconnecting…")
        # While it is away a take starts and the visitor is seen: nothing of it reaches the screen.
        body = {"cameras": ["cam0"], "reference": "steps", "max_seconds": 120}
        session = http.post(f"{base}/api/sessions", json=body).json()["session"]
        send(settings, [(settings.topic_smoothed, figure_pose(session, "cam0", 7, figure(0, "up")))])
        time.sleep(1.5)
        assert shown("stage", "data-mode") == "idle"
        proxy.restore()
        wait_until(lambda: shown("stage", "data-mode") == "recording", timeout=20, what="the display to catch up")
        wait_until(lambda: shown("visitor", "data-seq") == "7", timeout=10, what="the visitor's newest pose")
        assert not driver.find_element(By.ID, "conn").is_displayed()
        proxy.close()
