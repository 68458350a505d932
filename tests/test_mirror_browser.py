"""The live mirror's page in headless Chromium: it shows the skeleton and says why while the dancer
has no generator, and it comes back with new frames after the camera's mirror restarts, after its
stream is cut, and after the console itself restarts (a new login, then back to the mirror)."""

from __future__ import annotations

import contextlib
import threading
from urllib.parse import quote

from test_console_browser import ARTIFACTS, chromium, require_browser
from test_console_mirror import _add_reference
from test_display_browser import CuttableProxy

from console.app import create_app
from trainer.figure import figure

from helpers import CONSOLE_PASSWORD, console_settings, figure_pose, send, serve, wait_until

# A small hash of the picture the page's <img> shows now (the MJPEG stream's current frame).
PICTURE = """
const img = document.getElementById("mirror");
if (!img || !img.naturalWidth) return null;
const c = document.createElement("canvas");
c.width = 64; c.height = 48;
const g = c.getContext("2d");
g.drawImage(img, 0, 0, 64, 48);
const d = g.getImageData(0, 0, 64, 48).data;
let h = 0;
for (let i = 0; i < d.length; i++) h = (h * 31 + d[i]) >>> 0;
return h;
"""


@contextlib.contextmanager
def dancing(settings, camera: str = "cam0"):
    """A visitor in front of the camera, raising and lowering their arms: smoothed poses, ~7 a second."""
    stop = threading.Event()

    def run() -> None:
        seq = 0
        while not stop.is_set():
            arms = ("up", "down", ("up", "down"), ("down", "up"))[seq % 4]
            send(settings, [(settings.topic_smoothed, figure_pose("s1", camera, seq, figure(0, arms)))])
            seq += 1
            stop.wait(0.15)

    thread = threading.Thread(target=run, name="visitor", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)


def test_the_mirror_page_shows_new_frames_again_after_each_kind_of_restart(settings, tmp_path):
    require_browser()
    from selenium.webdriver.common.by import By

    _add_reference(settings, tmp_path)  # a dancer without a generator yet
    settings = console_settings(settings, default_reference="solo")
    page = "/mirror?camera=cam0"
    with chromium() as driver, dancing(settings):

        def read(element: str) -> str:
            return driver.find_element(By.ID, element).text

        def stream() -> str:
            return driver.find_element(By.ID, "mirror").get_attribute("src")

        def moving(what: str) -> None:
            """The page is live and its picture changes: new frames arrive."""
            wait_until(lambda: read("conn") == "live", timeout=20, what=f"{what}: the stream live")
            first = wait_until(lambda: driver.execute_script(PICTURE), timeout=10, what=f"{what}: a picture")
            wait_until(
                lambda: driver.execute_script(PICTURE) not in (None, first), timeout=15, what=f"{what}: new frames"
            )

        def log_in(screen: str) -> None:
            """The login page the mirror page sent the browser to; back to the mirror after it."""
            wait_until(lambda: driver.current_url.startswith(f"{screen}/login"), timeout=20, what="the login page")
            driver.find_element(By.ID, "password").send_keys(CONSOLE_PASSWORD)
            driver.find_element(By.ID, "login").click()
            wait_until(lambda: driver.current_url == f"{screen}{page}", timeout=10, what="the mirror after logging in")

        app = create_app(settings, targets={})
        with serve(app) as base:
            proxy = CuttableProxy(int(base.rsplit(":", 1)[1]))  # the booth screen's network
            screen = f"http://127.0.0.1:{proxy.port}"
            driver.get(f"{screen}/login?next={quote(page)}")
            log_in(screen)
            # No generator of the dancer yet: the page says so, and the skeleton moves with the visitor.
            wait_until(lambda: "showing the skeleton" in read("message"), timeout=15, what="the page saying why")
            assert "booth reference train solo" in read("message")
            moving("first")
            wait_until(lambda: read("s-mode") == "skeleton", timeout=10, what="the skeleton's mode")

            # The camera's mirror restarts: the page sees another feed and reopens its stream.
            opened = stream()
            app.state.mirrors.stop()
            wait_until(lambda: stream() != opened, timeout=15, what="the stream reopened on the new mirror")
            moving("after the mirror restarted")

            # The screen's network drops: the page says so, and comes back when it is back.
            opened = stream()
            proxy.cut()
            wait_until(lambda: read("conn") == "reconnecting…", timeout=15, what="reconnecting…")
            proxy.restore()
            wait_until(lambda: stream() != opened, timeout=15, what="the stream reopened")
            moving("after the stream was cut")
            proxy.cut()

        # The console restarts (a new process would draw a new login key): after a login the
        # screen is back on the mirror, with frames moving again.
        with serve(create_app(settings, targets={})) as base:
            proxy.target = int(base.rsplit(":", 1)[1])
            proxy.restore()
            log_in(screen)
            moving("after the console restarted")
            ARTIFACTS.mkdir(exist_ok=True)
            driver.save_screenshot(str(ARTIFACTS / "mirror.png"))
            logged = driver.get_log("browser")
            assert not [e for e in logged if "Content Security Policy" in e["message"]], logged
            proxy.close()
