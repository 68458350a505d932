"""Run the known attacks against a live console (and its broker and store) and print, for each,
whether it was refused or accepted: an operator reruns it after any change to the door.

    python -m tools.probe_doors --url http://127.0.0.1:8080 [--password ...] [--pid PID]

Each throttle attack comes from its own loopback address (127.0.0.2, .3, ...) when the console is
on this machine, so one attack's lock does not decide the next; against a remote console the probe
waits out the Retry-After between them. The broker and store checks use this machine's settings
(BOOTH_*), like every other command. Nothing here needs the password; with it, the probe also
checks that the operator gets in again within a minute of a flood, and the body limit after login.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import click
import httpx2 as httpx

from infra.settings import Settings
from tools.terminal import print_table


@dataclass
class Outcome:
    attack: str
    refused: bool | None  # None: could not be tried here
    detail: str


def _peak_mb(pid: int | None) -> float | None:
    """The process's peak resident memory (a body read whole and freed again shows here)."""
    if not pid:
        return None
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


class Probe:
    def __init__(self, url: str, password: str | None, pid: int | None, settings: Settings | None):
        self.url = url.rstrip("/")
        self.password = password
        self.pid = pid
        self.settings = settings
        host = urlsplit(self.url).hostname or ""
        try:
            self.local = ipaddress.ip_address(host).is_loopback
        except ValueError:
            self.local = host == "localhost"
        self._next_address = 2

    def client(self, address: str | None = None) -> httpx.Client:
        """A client with an address of its own when the console is on loopback."""
        if not self.local:
            return httpx.Client(timeout=30, headers={"Origin": self.url})
        if address is None:
            address = f"127.0.0.{self._next_address}"
            self._next_address += 1
        transport = httpx.HTTPTransport(local_address=address)
        return httpx.Client(timeout=30, transport=transport, headers={"Origin": self.url})

    def wait_unlocked(self, http: httpx.Client) -> float:
        """Wait out this client's throttle (a remote console: one address for every attack)."""
        start = time.monotonic()
        while True:
            r = http.post(f"{self.url}/login", content=b"{}", headers={"Content-Type": "application/json"})
            if r.status_code != 429:
                return time.monotonic() - start
            time.sleep(min(70.0, float(r.headers.get("retry-after", "1"))))

    # --- the attacks ---------------------------------------------------------------------------
    def bearer_flood(self) -> Outcome:
        with self.client() as http:
            codes = [
                http.get(f"{self.url}/api/state", headers={"Authorization": f"Bearer guess-{i}"}).status_code
                for i in range(200)
            ]
            checked = codes.count(401)
            detail = f"200 wrong Bearer passwords: {checked} checked (401), {codes.count(429)} throttled (429)"
            back = self._operator_back(http) if self.password else ""
        return Outcome("Bearer guesses are throttled", 429 in codes and checked <= 10, detail + back)

    def _operator_back(self, http: httpx.Client) -> str:
        assert self.password
        start = time.monotonic()
        while time.monotonic() - start < 75:
            r = http.get(f"{self.url}/api/state", headers={"Authorization": f"Bearer {self.password}"})
            if r.status_code == 200:
                return f"; the right password from the same address works again after {time.monotonic() - start:.0f} s"
            time.sleep(min(5.0, float(r.headers.get("retry-after", "1"))))
        return "; the right password from the same address was still refused after 75 s"

    def forwarded_rotation(self) -> Outcome:
        # From 127.0.0.1, the address uvicorn believes forwarded headers from by default.
        with self.client("127.0.0.1") as http:
            if not self.local:
                self.wait_unlocked(http)
            codes = [
                http.post(
                    f"{self.url}/login", json={"password": "guess-guess"}, headers={"X-Forwarded-For": f"10.0.0.{i}"}
                ).status_code
                for i in range(30)
            ]
        detail = (
            f"30 wrong logins, each with another X-Forwarded-For: {codes.count(401)} checked, {codes.count(429)} 429"
        )
        return Outcome("X-Forwarded-For does not pick the throttle's key", 429 in codes, detail)

    def huge_login_body(self, megabytes: int) -> Outcome:
        before = _peak_mb(self.pid)
        status: int | str
        with self.client() as http:

            def chunks() -> Iterator[bytes]:
                block = b"x" * (1 << 20)
                yield b'{"password": "'
                for _ in range(megabytes):
                    yield block

            try:
                status = http.post(
                    f"{self.url}/login", content=chunks(), headers={"Content-Type": "application/json"}
                ).status_code
            except httpx.HTTPError as exc:  # the console closed the connection mid-upload
                status = f"connection closed ({type(exc).__name__})"
            sized = http.post(
                f"{self.url}/login",
                content=b"x" * (1 << 20),
                headers={"Content-Type": "application/json"},
            ).status_code
        after = _peak_mb(self.pid)
        grew = f"; console peak memory {before:.0f} -> {after:.0f} MB" if before and after else ""
        refused = sized == 413 and status != 200 and (after is None or before is None or after - before < 100)
        detail = f"{megabytes} MB streamed login body: {status}; 1 MB with Content-Length: {sized}{grew}"
        return Outcome("a huge body before login is not read", refused, detail)

    def broken_bodies_count(self) -> Outcome:
        with self.client() as http:
            if not self.local:
                self.wait_unlocked(http)
            codes = [
                http.post(
                    f"{self.url}/login", content=b"{not json", headers={"Content-Type": "application/json"}
                ).status_code
                for _ in range(10)
            ]
        detail = f"10 invalid-JSON logins: {codes.count(400)} answered 400, {codes.count(429)} throttled"
        return Outcome("invalid login bodies count as failed logins", 429 in codes, detail)

    def body_after_login(self) -> Outcome:
        if not self.password:
            return Outcome("a huge body after login is refused", None, "needs --password")
        with self.client() as http:
            r = http.post(
                f"{self.url}/api/sessions",
                content=b'{"note": "' + b"n" * (8 << 20) + b'"}',
                headers={"Authorization": f"Bearer {self.password}", "Content-Type": "application/json"},
            )
        return Outcome(
            "a huge body after login is refused", r.status_code == 413, f"8 MB session start: {r.status_code}"
        )

    def cross_site(self) -> Outcome:
        with self.client() as http:
            form = http.post(f"{self.url}/login", data={"password": "x"}, headers={"Origin": "http://evil.example"})
            rebound = http.get(f"{self.url}/healthz", headers={"Host": "evil.example"})
        detail = f"cross-site form login: {form.status_code}; rebound Host header: {rebound.status_code}"
        return Outcome(
            "cross-site posts and rebound hosts", form.status_code in (403, 415) and rebound.status_code == 400, detail
        )

    def dead_letter_pixels(self, wait_s: float) -> Outcome:
        if self.settings is None:
            return Outcome("dead letters keep no pixels", None, "skipped (--no-broker)")
        import cv2
        import numpy as np

        from infra import kafka
        from schemas import DeadLetter, decode

        s = self.settings
        rgb = np.random.default_rng(1).integers(0, 255, (120, 160, 3), dtype=np.uint8)
        jpeg = cv2.imencode(".jpg", rgb)[1].tobytes()
        bmp = cv2.imencode(".bmp", rgb)[1].tobytes()
        probe = f"probe-{uuid.uuid4().hex[:8]}"
        values = {f"{probe}/x": b"X" + jpeg, f"{probe}/b": bmp, f"{probe}/j": b'{"image": "' + base64.b64encode(jpeg)}
        consumer = kafka.consumer(s, s.topic_deadletter, group_id=None, auto_offset_reset="latest")
        try:
            consumer.poll(timeout_ms=1000)  # join at the end before producing
            producer = kafka.producer(s)
            for key, value in values.items():
                producer.send(s.topic_frames, key=key.encode(), value=value)
            producer.flush(10)
            producer.close()
            letters: list[tuple[bytes, DeadLetter]] = []
            deadline = time.monotonic() + wait_s
            while len(letters) < len(values) and time.monotonic() < deadline:
                for batch in consumer.poll(timeout_ms=500).values():
                    for r in batch:
                        letter = decode(r.value)
                        if isinstance(letter, DeadLetter) and (letter.key or "").startswith(probe):
                            letters.append((r.value, letter))
        finally:
            consumer.close()
        if not letters:
            return Outcome(
                "dead letters keep no pixels", None, f"no dead letter within {wait_s:.0f} s: is a worker running?"
            )
        scan = jpeg[len(jpeg) // 2 : len(jpeg) // 2 + 16]
        kept = [len(letter.original) for _, letter in letters]
        leaked = [
            letter.key
            for raw, letter in letters
            if scan in raw or bmp[-64:-48] in raw or base64.b64encode(scan)[:16] in raw
        ]
        shapes = "an image behind a stray byte, a raw BMP, base64 in broken JSON"
        detail = f"{len(letters)} dead letters for {shapes}: kept {kept} bytes"
        return Outcome("dead letters keep no pixels", not leaked, detail + (f"; pixels in {leaked}" if leaked else ""))

    def broker_retention(self) -> Outcome:
        if self.settings is None:
            return Outcome("the broker forgets a visitor's frames", None, "skipped (--no-broker)")
        from infra import kafka

        s = self.settings
        configs = kafka.topic_settings(s, s.visitor_topics())
        kept_ms = {t: int(c.get("retention.ms", -1)) for t, c in configs.items()}
        limited = all(0 < ms <= s.broker_retention_hours * 3_600_000 for ms in kept_ms.values())
        detail = ", ".join(f"{t} {ms / 3_600_000:g} h" if ms >= 0 else f"{t} not set" for t, ms in kept_ms.items())
        if kafka.embedded_broker(s):
            return Outcome(
                "the broker forgets a visitor's frames",
                False,
                f"set ({detail}) but the embedded broker deletes nothing",
            )
        return Outcome("the broker forgets a visitor's frames", limited, f"retention: {detail}")

    def default_s3_secret(self) -> Outcome:
        if self.settings is None:
            return Outcome("the old default S3 secret opens nothing", None, "skipped (--no-broker)")
        from minio import Minio
        from minio.error import S3Error

        s = self.settings
        client = Minio(s.s3_endpoint, access_key=s.s3_access_key, secret_key="booth-local-secret", secure=s.s3_secure)
        try:
            names = [o.object_name for _, o in zip(range(3), client.list_objects(s.s3_bucket, recursive=True))]
        except S3Error as exc:
            return Outcome("the old default S3 secret opens nothing", True, f"listing refused: {exc.code}")
        return Outcome("the old default S3 secret opens nothing", False, f"listing worked: {names}")


@click.command()
@click.option("--url", default="http://127.0.0.1:8080", show_default=True, help="The console's base URL.")
@click.option("--password", envvar="BOOTH_CONSOLE_PASSWORD", help="The operator password (optional).")
@click.option("--pid", type=int, help="The console's process id, to measure its memory (this machine).")
@click.option("--body-mb", default=300, show_default=True, help="Size of the streamed login body.")
@click.option("--broker/--no-broker", default=True, help="Also probe the broker and the store (BOOTH_* settings).")
@click.option("--wait", default=20.0, show_default=True, help="Seconds to wait for a worker's dead letters.")
def main(url, password, pid, body_mb, broker, wait):
    """Run every attack and print refused / accepted for each."""
    probe = Probe(url, password, pid, Settings() if broker else None)
    attacks: list[Callable[[], Outcome]] = [
        probe.bearer_flood,
        probe.forwarded_rotation,
        lambda: probe.huge_login_body(body_mb),
        probe.broken_bodies_count,
        probe.body_after_login,
        probe.cross_site,
        lambda: probe.dead_letter_pixels(wait),
        probe.broker_retention,
        probe.default_s3_secret,
    ]
    rows = []
    for attack in attacks:
        started = time.monotonic()
        try:
            outcome = attack()
        except Exception as exc:  # noqa: BLE001 - a probe that cannot run says so; the others still run
            outcome = Outcome(getattr(attack, "__name__", "attack"), None, f"could not run: {exc}")
        verdict = {True: "refused", False: "ACCEPTED", None: "not tried"}[outcome.refused]
        rows.append(
            {
                "attack": outcome.attack,
                "result": verdict,
                "detail": outcome.detail,
                "s": f"{time.monotonic() - started:.1f}",
            }
        )
        click.echo(f"{verdict:>9}  {outcome.attack}: {outcome.detail}", err=True)
    print_table(rows, f"door probe of {url}")
    if any(r["result"] == "ACCEPTED" for r in rows):
        raise SystemExit(1)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
