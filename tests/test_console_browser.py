"""The console page driven in headless Chromium: log in, start a session, watch the preview, training and video.

Needs Debian's chromium and chromium-driver (`bash .ci/install-browser.sh`); leaves a screenshot in
artifacts/console.png.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
import time
from pathlib import Path

import av
import httpx2 as httpx
import numpy as np
import pytest

from console.app import create_app
from infra.links import share_url
from infra.objectstore import ObjectStore
from infra.settings import REPO_ROOT
from schemas import Rendition, SessionEvent, TrainingProgress, layout
from schemas.keypoints import IMPUTED, SMOOTHED

from helpers import (
    CONSOLE_PASSWORD,
    console_settings,
    dance_poses,
    fake_metrics,
    make_frame,
    make_pose,
    read_topic,
    send,
    serve,
    store_dance,
    wait_until,
)

CHROMIUM = Path("/usr/bin/chromium")


def require_browser() -> None:
    """Skip, saying how to install them, where Debian's chromium and its driver are absent (CI installs them)."""
    if not CHROMIUM.exists() or shutil.which("chromedriver") is None:
        pytest.skip("headless browser test needs /usr/bin/chromium and chromedriver: run `bash .ci/install-browser.sh`")


ARTIFACTS = REPO_ROOT / "artifacts"


@contextlib.contextmanager
def chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-dev-shm-usage",
        "--window-size=1440,1500",
        "--autoplay-policy=no-user-gesture-required",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    try:
        yield driver
    finally:
        driver.quit()


def tiny_mp4(frames: int = 24, size: int = 128) -> bytes:
    """A short H.264 clip standing in for a rendition: a bar sweeping across."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.mp4"
        with av.open(str(path), "w") as container:
            stream = container.add_stream("libx264", rate=12)
            stream.width = stream.height = size
            stream.pix_fmt = "yuv420p"
            for i in range(frames):
                rgb = np.full((size, size, 3), 30, np.uint8)
                rgb[:, (i * size // frames) : (i * size // frames) + 16] = (230, 120, 40)
                container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
            container.mux(stream.encode(None))
        return path.read_bytes()


def with_dance(settings, name: str):
    """The settings with a default reference dance of synthetic figures in the store."""
    store_dance(settings, name, dance_poses(24))
    return settings.model_copy(update={"default_reference": name})


def stream_camera(settings, session: str, stop: threading.Event) -> None:
    """What the camera and the processors would publish, at a few frames a second."""
    seq = 0
    while not stop.is_set():
        frame = make_frame(session, "cam0", seq)
        send(
            settings,
            [
                (settings.topic_frames, frame),
                (settings.topic_smoothed, make_pose(frame, {9: IMPUTED} if seq % 10 < 5 else None)),
            ],
        )
        seq += 1
        stop.wait(0.2)


def test_console_page_runs_a_session_in_headless_chromium(settings):
    require_browser()
    from selenium.webdriver.common.by import By

    stop = threading.Event()
    with (
        fake_metrics() as pose_metrics,
        serve(
            create_app(console_settings(with_dance(settings, "salsa")), targets={"processors": pose_metrics})
        ) as base,
        chromium() as driver,
    ):
        # Not logged in: the page sends the browser to the login page; a wrong password is refused.
        driver.get(base)
        wait_until(lambda: driver.current_url == f"{base}/login", timeout=10, what="the login page")
        driver.find_element(By.ID, "password").send_keys("not the password")
        driver.find_element(By.ID, "login").click()
        wait_until(
            lambda: "wrong password" in driver.find_element(By.ID, "message").text, timeout=10, what="the refusal"
        )
        password = driver.find_element(By.ID, "password")
        password.clear()
        password.send_keys(CONSOLE_PASSWORD)
        driver.find_element(By.ID, "login").click()
        wait_until(lambda: driver.current_url == f"{base}/", timeout=10, what="the console after logging in")
        (cookie,) = driver.get_cookies()
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert not driver.execute_script("return document.cookie")  # out of scripts' reach

        def text(css: str) -> str:  # read by script: the page redraws its cards, so elements go stale
            return driver.execute_script("return document.querySelector(arguments[0])?.textContent || ''", css)

        wait_until(lambda: driver.find_element(By.ID, "conn").text == "live", timeout=15, what="the event stream")

        cameras = driver.find_element(By.ID, "f-cameras")
        cameras.clear()
        cameras.send_keys("cam0")
        # The dances to pick from, each a skeleton thumbnail; the default is chosen, and plays.
        wait_until(
            lambda: driver.find_elements(By.CSS_SELECTOR, ".ref-option.chosen[data-reference='salsa']"),
            timeout=15,
            what="the reference picker",
        )
        limit = driver.find_element(By.ID, "f-max-seconds")
        limit.clear()
        limit.send_keys("600")
        driver.find_element(By.ID, "f-consent").click()
        driver.find_element(By.ID, "start-session").click()
        message = wait_until(
            lambda: "started" in (t := driver.find_element(By.ID, "message").text) and t,
            timeout=15,
            what="the start confirmation",
        )
        session = message.split()[1]
        (event,) = [m for m in read_topic(settings, settings.topic_sessions, idle_s=0.5) if isinstance(m, SessionEvent)]
        assert (event.session, event.kind, event.cameras, event.reference) == (session, "start", ["cam0"], "salsa")
        assert event.consent and not driver.find_element(By.ID, "f-consent").is_selected()  # asked anew each time
        wait_until(
            lambda: text("#detail .session-id") == session and "recording" in text("#detail"),
            timeout=15,
            what="the session card",
        )
        assert "recording is kept" in text("#detail .consent")

        camera = threading.Thread(target=stream_camera, args=(settings, session, stop), daemon=True)
        camera.start()

        def seq():  # the frame number the preview image shows, once it shows one
            found = driver.find_elements(By.CSS_SELECTOR, "#previews img[data-camera='cam0']")
            return found[0].get_attribute("data-seq") if found else None

        first = wait_until(seq, timeout=20, what="the first preview")
        wait_until(lambda: seq() not in (None, first), timeout=20, what="the preview to update")
        img = lambda: driver.find_element(By.CSS_SELECTOR, "#previews img[data-camera='cam0']")  # noqa: E731
        assert driver.execute_script("return arguments[0].naturalWidth", img()) == 320
        assert img().get_attribute("data-session") == session

        now = time.time()
        cut = (
            "the person is cut off by the frame's edge in 40% of the training frames: what lies outside is never learnt"
        )
        send(
            settings,
            [
                (
                    settings.topic_training,
                    TrainingProgress(
                        session=session,
                        phase="loading",
                        step=0,
                        total_steps=0,
                        message=f"warning: {cut}",
                        wall_time=now,
                    ),
                ),
                (
                    settings.topic_training,
                    TrainingProgress(
                        session=session,
                        phase="training",
                        step=40,
                        total_steps=100,
                        losses={"G_GAN": 0.71, "G_L1": 0.12},
                        eta_s=95,
                        wall_time=now,
                    ),
                ),
            ],
        )
        wait_until(
            lambda: "step 40 / 100" in (t := text("#detail .progress-text")) and "ETA 1 min 35 s" in t,
            timeout=15,
            what="training progress on the page",
        )
        assert driver.execute_script("return document.querySelector('#detail .bar .fill').style.width") == "40%"
        # The trainer's warning in an operator's words, on the card and in the session's line; its
        # own text behind "details", which stays open across the card's redraws once opened.
        wait_until(
            lambda: text("#detail .notice-words").startswith(
                "⚠ The visitor was partly out of the picture (40% of the time)"
            ),
            timeout=10,
            what="the warning in an operator's words",
        )
        assert text("#detail .notice-details") == cut
        assert text("#sessions td.status").endswith("⚠ partly out of the picture")
        details = "return document.querySelector('#detail .notice details').open"
        assert not driver.execute_script(details)
        driver.execute_script("document.querySelector('#detail .notice summary').click()")  # no stale element
        time.sleep(1.5)  # a redraw or more
        assert driver.execute_script(details)

        key = layout.result_key(session, "rendition.mp4")
        clip = tiny_mp4()
        ObjectStore(settings).put(key, clip, content_type="video/mp4")
        url = ObjectStore(settings).presign(key, 3600)
        send(
            settings,
            [
                (
                    settings.topic_training,
                    TrainingProgress(session=session, phase="done", step=100, total_steps=100, wall_time=now + 1),
                ),
                (
                    settings.topic_renditions,
                    Rendition(
                        session=session,
                        reference="salsa",
                        video_key=key,
                        url=url,
                        expires_at=now + 3600,
                        frames=24,
                        wall_time=now + 2,
                    ),
                ),
            ],
        )
        link = wait_until(
            lambda: driver.find_elements(By.CSS_SELECTOR, "#detail a.rendition-link"),
            timeout=15,
            what="the rendition link",
        )[0]
        # The visitor's short link (on the console's own address: no public_url here) leads, without
        # a login, to the same video.
        assert link.get_attribute("href") == share_url(settings, session, base + "/")
        assert httpx.get(link.get_attribute("href"), follow_redirects=True).content == clip
        video = driver.find_element(By.CSS_SELECTOR, "#detail video")
        assert video.get_attribute("src") == url
        assert driver.find_element(By.CSS_SELECTOR, "#detail .versions").text == "version 1 (gan, final)"
        qr = driver.find_element(By.CSS_SELECTOR, "#detail img.qr")
        wait_until(
            lambda: driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", qr),
            timeout=10,
            what="the QR code to load",
        )
        # The presigned link really plays: the browser fetched the clip and read its length.
        duration = wait_until(
            lambda: driver.execute_script("return arguments[0].readyState >= 1 && arguments[0].duration", video),
            timeout=15,
            what="video metadata",
        )
        assert duration == pytest.approx(2.0, abs=0.2)
        # It keeps playing while the page redraws its cards every second.
        playing = "return !arguments[0].paused && arguments[0].currentTime"
        started = wait_until(lambda: driver.execute_script(playing, video), timeout=10, what="the video to play")
        time.sleep(1.3)
        assert driver.execute_script(playing, video) not in (False, started)

        # A pose with guessed keypoints is marked on the page too.
        stop.set()
        camera.join(5)
        last = make_frame(session, "cam0", 1000)
        send(
            settings,
            [
                (settings.topic_frames, last),
                (settings.topic_smoothed, make_pose(last, {9: IMPUTED, 10: IMPUTED | SMOOTHED})),
            ],
        )
        wait_until(
            lambda: seq() == "1000" and "2 imputed" in text("#previews figcaption"),
            timeout=15,
            what="the flagged preview",
        )
        ARTIFACTS.mkdir(exist_ok=True)
        driver.save_screenshot(str(ARTIFACTS / "console-recording.png"))
        # The operator ends the take: the visitor's frame leaves the screen.
        driver.find_element(By.ID, "end-session").click()
        wait_until(
            lambda: "Waiting for the next visitor" in text("#previews") and not seq(),
            timeout=15,
            what="the last visitor's frame to be cleared",
        )
        driver.set_window_size(1440, driver.execute_script("return document.documentElement.scrollHeight") + 140)
        driver.save_screenshot(str(ARTIFACTS / "console.png"))

        # The page's content security policy blocked nothing it needs: no violation was logged.
        logged = driver.get_log("browser")
        assert not [e for e in logged if "Content Security Policy" in e["message"]], logged

        # Logging out ends the login: the page is the login page again.
        driver.find_element(By.ID, "logout").click()
        wait_until(lambda: driver.current_url == f"{base}/login", timeout=10, what="the login page after logout")
        driver.get(base)
        wait_until(lambda: driver.current_url == f"{base}/login", timeout=10, what="the page to stay closed")
