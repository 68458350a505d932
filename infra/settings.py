"""One settings object for every component.

Values come from, highest first: keyword arguments, ``BOOTH_*`` environment variables, secret files
(``BOOTH_SECRETS_DIR``, one file per setting name), the TOML file named by ``BOOTH_CONFIG`` (or
``booth.toml`` in the working directory; never credentials), then the defaults below, which point at
the embedded stack.
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
# The embedded stack's S3 secret, drawn on its first start, in the state folder.
LOCAL_S3_SECRET = "s3_secret_key"


class MissingSecretError(ValueError):
    """A credential the component needs is not configured."""


def _default_models_dir() -> Path:
    # vision.models.locate reads it first, then ../shared/models (development machines).
    return REPO_ROOT / ".booth" / "models"


class TopicOverride(BaseModel):
    """What one topic sets for itself (Settings.kafka_topics); None keeps the general value."""

    model_config = ConfigDict(extra="forbid")

    partitions: int | None = Field(None, ge=1)
    replication_factor: int | None = Field(None, ge=1, le=32)
    min_insync_replicas: int | None = Field(None, ge=1, le=32)


@dataclass(frozen=True)
class TopicSpec:
    """How a topic is created: partitions, replicas and the write quorum (min.insync.replicas)."""

    partitions: int
    replication_factor: int
    min_insync_replicas: int

    def configs(self) -> dict[str, str]:
        """The topic-level configuration it is created with."""
        return {"min.insync.replicas": str(self.min_insync_replicas)}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BOOTH_", extra="ignore")

    # --- Kafka ---
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    # The embedded broker makes group joins wait about half the session timeout, and the first
    # member's timeout sticks to the group: short values keep rebalances quick everywhere.
    kafka_session_timeout_ms: int = 6000
    kafka_heartbeat_interval_ms: int = 1000
    kafka_max_message_bytes: int = 16 * 1024 * 1024
    # How long a fetch may wait for data. Some brokers (the embedded one) hold every fetch this long
    # even when data is there, so it bounds the latency of every stage: keep it short.
    kafka_fetch_max_wait_ms: int = Field(100, ge=1, le=5000)
    # The same for the live path (the pose workers), whose hops make capture-to-pose latency: a
    # shorter wait costs the broker more fetches, so only the live path pays it (docs/benchmarks.md, throughput).
    kafka_live_fetch_max_wait_ms: int = Field(20, ge=1, le=5000)

    # Prefix of consumer-group ids (<app_id>-processors, -assembler, -trainer): two deployments on
    # one cluster keep apart by choosing different prefixes.
    app_id: str = Field("booth", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,100}$")

    # --- topics (name, partitions) ---
    topic_frames: str = "booth.frames"
    topic_poses: str = "booth.poses"
    topic_smoothed: str = "booth.poses.smoothed"
    topic_sessions: str = "booth.sessions"
    topic_datasets: str = "booth.datasets"
    topic_training: str = "booth.training"
    topic_renditions: str = "booth.renditions"
    topic_deadletter: str = "booth.deadletter"
    # The trainers' shared queue: who trains which dataset (schemas.Claim); one partition, one order.
    topic_claims: str = "booth.claims"
    partitions_streams: int = Field(4, ge=1, description="frames, poses and smoothed poses")
    partitions_control: int = Field(1, ge=1, description="sessions, training, renditions, dead letters")
    # DatasetReady is keyed by session; every trainer reads every partition (trainer.claims): the
    # count only spreads the topic, it does not limit the trainers.
    partitions_datasets: int = Field(4, ge=1, description="datasets topic partitions")
    # Copies of each partition, and how many must hold a write before the broker acknowledges it
    # (every producer sends with acks=all). A production cluster: 3 and 2, so one broker can be away
    # without losing a write or stopping one (infra/compose.yaml). The embedded broker is a single
    # node: 1 and 1. Faust's changelogs and its internal topics take the same values.
    kafka_replication_factor: int = Field(1, ge=1, le=32)
    kafka_min_insync_replicas: int = Field(1, ge=1, le=32)
    # Per topic, over the values above and the partitions_* groups, by topic name:
    # {"booth.datasets": {"partitions": 16}, "booth.deadletter": {"replication_factor": 5}} (JSON in
    # the environment).
    kafka_topics: dict[str, TopicOverride] = Field(default_factory=dict)
    # The idempotent producer: a retried send is written once and in order with several requests in
    # flight. Every Apache Kafka cluster supports it: on in production. Off by default because the
    # embedded broker forgets producer ids when it restarts, which the client treats as fatal; then
    # one request in flight keeps each key's order and the stages drop a retried duplicate by seq.
    kafka_idempotence: bool = False

    # --- object storage ---
    s3_endpoint: str = "127.0.0.1:9000"
    s3_access_key: str = "booth"
    # No default: production sets it (environment or BOOTH_SECRETS_DIR); the embedded stack draws one
    # on its first start and keeps it in <state_dir>/s3_secret_key (mode 0600), read from there.
    s3_secret_key: SecretStr | None = None
    s3_secure: bool = False
    s3_bucket: str = "booth"
    s3_region: str = "us-east-1"
    link_expiry_s: int = Field(7 * 24 * 3600, ge=60, le=7 * 24 * 3600)
    # The address visitors reach the booth on (scheme://host[:port], no path), e.g.
    # https://booth.example.org: the visitor's short link and its QR code point there
    # (<public_url>/v/<token>, the console redirects it to a fresh presigned link). Unset: the
    # console's own address as the browser reached it.
    public_url: str | None = Field(None, pattern=r"^https?://[A-Za-z0-9.\[\]:-]+$")
    # Where presigned links point (scheme://host[:port]): an address outside the deployment can
    # reach the bucket on, path-style (/<bucket>/<key>). Unset: public_url when that is set (a proxy
    # there passes /<bucket>/ to the object store, as infra/Caddyfile does), else s3_endpoint.
    s3_public_url: str | None = Field(None, pattern=r"^https?://[A-Za-z0-9.\[\]:-]+$")
    # The key short links are signed with (a secret). Unset: derived from s3_secret_key; set it to
    # keep links working when the storage credentials change (a new value ends every link given).
    link_secret: SecretStr | None = None
    # Tries per object-store call before it counts as away (backoff 0.5 s doubling to 10 s: 8 tries
    # ride out about 35 s); the trainer then retries the whole session with its own backoff.
    s3_attempts: int = Field(8, ge=1, le=20)

    # --- trainers ---
    # A trainer holds the session it trains by a lease on the claims topic, renewed every third of
    # this; one that stops renewing (crashed, cut off) stops itself before the lease ends, and
    # another takes the session over (from its checkpoint) a sixth of it after the end.
    trainer_lease_s: float = Field(30.0, ge=1.0, le=3600)

    # --- privacy: how long a visitor's data is kept, in days after each object was written ---
    retention_frames_days: int = Field(14, ge=1, le=3650, description="frames, shards and the dataset preview")
    retention_checkpoints_days: int = Field(2, ge=1, le=3650, description="training checkpoints")
    retention_videos_days: int = Field(7, ge=1, le=3650, description="the rendition and its pictures")
    # How long the broker keeps a visitor's frames, poses, smoothed poses and dead letters (hours
    # after each was written): the pipeline needs them only until the session is assembled. Set
    # on those topics (retention.ms) when they are created, and on existing ones by `booth stack
    # up` and the compose set-up; the workers' keyed state is compacted within the same time.
    broker_retention_hours: float = Field(24.0, ge=0.1, le=24 * 365)
    # How often a training job looks for a purge of its session (a marker in the store).
    purge_check_s: float = Field(5.0, gt=0, le=300)

    # --- operator console ---
    # Addresses (IPs or networks, comma-separated) of reverse proxies whose X-Forwarded-For is
    # believed; from anyone else the header is ignored and the peer address is the client.
    trusted_proxies: str = ""
    # Largest request body the console reads from a logged-in client (before login: LOGIN_MAX_BODY).
    console_max_body_bytes: int = Field(64 * 1024, ge=1024, le=16 * 1024 * 1024)
    # The login: a password or token of at least 12 characters (a secret: environment or
    # BOOTH_SECRETS_DIR only). The console does not start without one.
    console_password: SecretStr | None = None
    # Host names the console answers to (comma-separated; a request for any other Host is refused,
    # which defeats DNS rebinding). Behind a proxy: the public name.
    console_hosts: str = "127.0.0.1,localhost,::1"
    # Mark the login cookie Secure (sent over HTTPS only): on behind TLS.
    console_secure_cookie: bool = False
    console_login_ttl_s: int = Field(12 * 3600, ge=60, le=7 * 24 * 3600)
    # The cameras the console starts for a session, ID=SOURCE comma-separated (as `booth camera
    # --source`: cam0=0,cam1=/dev/video2); empty: the console starts none (cameras run elsewhere).
    console_cameras: str = ""
    # Guided capture (docs/guided-capture.md): a take ends at this share of the dance covered, or
    # at the time cap; a display token opens the booth display for this long.
    guide_until_coverage: float = Field(0.8, gt=0, le=1)
    guide_max_seconds: float = Field(30.0, gt=0, le=600)
    guide_countdown_s: float = Field(3.0, ge=0, le=30)
    display_token_ttl_s: int = Field(12 * 3600, ge=60, le=30 * 24 * 3600)

    # The reference dance of sessions that name none; without it, a session must name one.
    default_reference: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")

    # --- models and processing ---
    models_dir: Path = Field(default_factory=_default_models_dir)
    pose_backend: Literal["auto", "movenet", "blazepose", "posenet"] = "auto"
    # Parallelism: TFLite threads within one frame, and worker processes (`booth process`, several
    # split the partitions); each worker estimates its frames one at a time, in order.
    pose_threads: int = Field(1, ge=1, description="TFLite threads per interpreter")
    # Where each worker runs its pose backend: a child process of its own (the step's Python then
    # never waits for the event loop's, see processors/estimate.py) or a thread of the worker.
    pose_inference: Literal["process", "thread"] = "process"
    # Frames handed to the inference process ahead of the one being published, so it never waits on
    # the event loop between frames (their offsets are committed only once their poses are sent).
    pose_prefetch: int = Field(4, ge=1, le=64, description="frames queued for inference ahead of publishing")
    # Several people (the posenet backend): at most this many per frame, the strongest; the rest are
    # counted (booth_pose_people_dropped_total). Each has a track id; a track unseen this long ends.
    pose_max_people: int = Field(8, ge=1, le=32, description="people kept per frame, strongest first")
    track_max_lost_s: float = Field(1.0, gt=0, le=60, description="seconds a lost person keeps their track id")

    # --- local state, metrics ---
    state_dir: Path = REPO_ROOT / ".booth"
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(0, ge=-1, description="0 = the component's default port, -1 = no endpoint")
    # Where `booth status` and the console scrape each component, when not on metrics_host at its
    # default port: {"processors": "http://worker-1:9102/metrics", ...} (JSON in the environment).
    metrics_targets: dict[str, str] = Field(default_factory=dict)

    # --- embedded stack (its broker and S3 ports are those of kafka_bootstrap and s3_endpoint) ---
    stack_prometheus_port: int = 9090

    @model_validator(mode="after")
    def _local_s3_secret(self) -> Settings:
        if self.s3_secret_key is None:
            path = self.state_dir / LOCAL_S3_SECRET
            if path.is_file():
                self.s3_secret_key = SecretStr(path.read_text().strip())
        return self

    def s3_secret(self) -> str:
        """The S3 secret key, or a clear error when none is configured."""
        if self.s3_secret_key is None:
            raise MissingSecretError(
                "no S3 secret key: set BOOTH_S3_SECRET_KEY or put a file named s3_secret_key in BOOTH_SECRETS_DIR "
                f"(only the embedded stack, `booth stack up`, makes one itself, in {self.state_dir / LOCAL_S3_SECRET})"
            )
        return self.s3_secret_key.get_secret_value()

    def trusted_proxy_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        out = []
        for entry in (e.strip() for e in self.trusted_proxies.split(",")):
            if entry:
                try:
                    out.append(ipaddress.ip_network(entry, strict=False))
                except ValueError:
                    raise ValueError(
                        f"BOOTH_TRUSTED_PROXIES: {entry!r} is not an IP address or network (e.g. 10.0.0.0/8)"
                    ) from None
        return out

    @classmethod
    def settings_customise_sources(
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config = os.environ.get("BOOTH_CONFIG") or ("booth.toml" if Path("booth.toml").is_file() else None)
        sources = [init_settings, env_settings]
        secrets = os.environ.get("BOOTH_SECRETS_DIR")
        if secrets:
            if not Path(secrets).is_dir():
                raise FileNotFoundError(f"BOOTH_SECRETS_DIR names {secrets}, which is not a folder")
            # Files named after the setting (s3_secret_key), not after its variable: no BOOTH_ prefix.
            # Read when settings are made, so the variable counts wherever it is set.
            sources.append(SecretsSettingsSource(settings_cls, secrets_dir=secrets, env_prefix=""))
        if config:
            if not Path(config).is_file():
                raise FileNotFoundError(f"BOOTH_CONFIG names {config}, which does not exist")
            _refuse_secrets(Path(config))
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config))
        return tuple(sources)

    @model_validator(mode="after")
    def _check_topics(self) -> Settings:
        names = set(self.topic_partitions())
        unknown = sorted(set(self.kafka_topics) - names)
        if unknown:
            known = ", ".join(sorted(names))
            raise ValueError(f"kafka_topics names {', '.join(unknown)}, which are not this project's topics ({known})")
        if (self.kafka_topics.get(self.topic_claims) or TopicOverride()).partitions not in (None, 1):
            raise ValueError(f"kafka_topics sets partitions for {self.topic_claims}: it has one, so one order")
        for name in self.stream_topics():
            if (self.kafka_topics.get(name) or TopicOverride()).partitions is not None:
                raise ValueError(
                    f"kafka_topics sets partitions for {name}: the stream topics and the workers' tables "
                    "share one partition count, set partitions_streams instead"
                )
        for name, spec in self.topic_specs().items():
            if spec.min_insync_replicas > spec.replication_factor:
                raise ValueError(
                    f"topic {name}: min_insync_replicas {spec.min_insync_replicas} is more than its "
                    f"replication factor {spec.replication_factor}: no write could ever be acknowledged"
                )
        return self

    def retention_days(self) -> dict[str, int]:
        """Days each retention class (schemas.layout) is kept; records as long as the longest."""
        days = {
            "frames": self.retention_frames_days,
            "checkpoints": self.retention_checkpoints_days,
            "videos": self.retention_videos_days,
        }
        return {**days, "records": max(days.values())}

    def console_camera_sources(self) -> dict[str, str]:
        """console_cameras as {camera id: source}; ValueError naming a malformed entry."""
        out: dict[str, str] = {}
        for item in (i.strip() for i in self.console_cameras.split(",")):
            if not item:
                continue
            camera, sep, source = item.partition("=")
            if not sep or not camera.strip() or not source.strip():
                raise ValueError(f"console_cameras entry {item!r} is not ID=SOURCE (cam0=0, cam1=/dev/video2)")
            out[camera.strip()] = source.strip()
        return out

    def console_host_names(self) -> list[str]:
        return [h.strip().lower().strip("[]") for h in self.console_hosts.split(",") if h.strip()]

    def group(self, component: str) -> str:
        return f"{self.app_id}-{component}"

    def stream_topics(self) -> tuple[str, str, str]:
        """The topics the stream workers read and write with their tables: one partition count."""
        return (self.topic_frames, self.topic_poses, self.topic_smoothed)

    def topic_partitions(self) -> dict[str, int]:
        streams, control = self.partitions_streams, self.partitions_control
        groups = {
            self.topic_frames: streams,
            self.topic_poses: streams,
            self.topic_smoothed: streams,
            self.topic_sessions: control,
            self.topic_datasets: self.partitions_datasets,
            self.topic_training: control,
            self.topic_renditions: control,
            self.topic_deadletter: control,
            self.topic_claims: 1,
        }
        return {name: (self.kafka_topics.get(name) or TopicOverride()).partitions or n for name, n in groups.items()}

    def topic_specs(self) -> dict[str, TopicSpec]:
        """Every project topic with its partitions, replication factor and min.insync.replicas."""
        specs = {}
        for name, partitions in self.topic_partitions().items():
            over = self.kafka_topics.get(name) or TopicOverride()
            specs[name] = TopicSpec(
                partitions=partitions,
                replication_factor=over.replication_factor or self.kafka_replication_factor,
                min_insync_replicas=over.min_insync_replicas or self.kafka_min_insync_replicas,
            )
        return specs

    def visitor_topics(self) -> list[str]:
        """The topics that hold a visitor's pictures or body (time-limited by broker_retention_hours)."""
        return [self.topic_frames, self.topic_poses, self.topic_smoothed, self.topic_deadletter]

    def to_env(self, **overrides: object) -> dict[str, str]:
        """This process's environment plus BOOTH_* variables that give a child process exactly these
        settings (how the demo, tests and benchmarks start workers); overrides are setting names."""
        env = dict(os.environ)
        for name, value in {**self.model_dump(), **overrides}.items():
            if hasattr(value, "get_secret_value"):
                value = value.get_secret_value()
            if isinstance(value, (dict, list)):
                value = json.dumps(value)  # how the environment spells a structured setting
            if value is not None:
                env[f"BOOTH_{name.upper()}"] = str(value)
        return env

    def safe_summary(self) -> dict[str, object]:
        """What may be printed or logged: secrets are masked by SecretStr."""
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in self.model_dump().items()}


# Credentials come from the environment or secret files only: config files get copied and committed.
SECRET_FIELDS = ("kafka_sasl_password", "s3_secret_key", "console_password", "link_secret")


def _refuse_secrets(config: Path) -> None:
    import tomllib

    found = sorted(set(tomllib.loads(config.read_text())) & set(SECRET_FIELDS))
    if found:
        raise ValueError(
            f"{config} sets {', '.join(found)}: credentials are not read from config files; set "
            + " / ".join(f"BOOTH_{name.upper()}" for name in found)
            + " or put a file of that name in BOOTH_SECRETS_DIR"
        )


def load(**overrides) -> Settings:
    return Settings(**overrides)
