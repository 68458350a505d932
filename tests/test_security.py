"""Security properties: where credentials come from and that they never show, that the broker and
object-store clients carry the configured TLS and SASL options, that shared links expire, that
object keys are built from validated ids only, and that network endpoints stay on loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pydantic import SecretStr

from infra.objectstore import ObjectStore
from infra.settings import Settings
from infra.stack import free_port
from schemas import InvalidId, layout, validate_id

HOSTILE_IDS = [
    "",
    "..",
    "../x",
    "a/b",
    "a\\b",
    "a.b",
    "c\u0430m0",
    "\uff43am0",
    "x" * 65,
    "a b",
    "-x",
    "a\x00b",
    "%2e%2e",
    "cam0\n",
    "\u202ecam0",
]


def booth(*args: str, env: dict[str, str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run the `booth` command line as an operator would, with nothing but `env` on top of a
    clean environment (no BOOTH_* leaking in from the test run)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("BOOTH_")}
    return subprocess.run(
        [sys.executable, "-m", "booth.cli", *args],
        env={**base, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# --- credentials ---------------------------------------------------------------------------------


def test_credentials_come_from_the_environment_and_secret_files_and_are_masked(tmp_path):
    env_secret, file_secret = f"env-{uuid.uuid4().hex}", f"file-{uuid.uuid4().hex}"
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "s3_secret_key").write_text(file_secret)
    (secrets / "kafka_sasl_password").write_text(file_secret + "-kafka")
    probe = (
        "from infra.settings import Settings; s = Settings(); "
        "print(s.s3_secret_key.get_secret_value(), s.kafka_sasl_password.get_secret_value())"
    )

    from_files = subprocess.run(
        [sys.executable, "-c", probe],
        env={**_clean_env(), "BOOTH_SECRETS_DIR": str(secrets)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert from_files.stdout.split() == [file_secret, file_secret + "-kafka"], from_files.stderr
    # The environment wins over a secret file.
    env = {"BOOTH_SECRETS_DIR": str(secrets), "BOOTH_S3_SECRET_KEY": env_secret}
    both = subprocess.run(
        [sys.executable, "-c", probe],
        env={**_clean_env(), **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert both.stdout.split() == [env_secret, file_secret + "-kafka"], both.stderr

    shown = booth("-vv", "config", env=env, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    output = shown.stdout + shown.stderr
    assert "s3_secret_key" in output and "**********" in output
    assert env_secret not in output and file_secret not in output


def test_a_config_file_with_a_credential_is_refused_naming_the_way_to_set_it(tmp_path):
    secret = f"toml-{uuid.uuid4().hex}"
    config = tmp_path / "booth.toml"
    config.write_text(f'app_id = "kiosk"\ns3_secret_key = "{secret}"\n')
    refused = booth("config", env={"BOOTH_CONFIG": str(config)}, cwd=tmp_path)
    assert refused.returncode != 0
    output = refused.stdout + refused.stderr
    assert "s3_secret_key" in output and "BOOTH_S3_SECRET_KEY" in output and "BOOTH_SECRETS_DIR" in output
    assert secret not in output
    config.write_text('app_id = "kiosk"\n')  # without the credential the same file is fine
    accepted = booth("config", env={"BOOTH_CONFIG": str(config)}, cwd=tmp_path)
    assert accepted.returncode == 0 and "kiosk" in accepted.stdout


@pytest.mark.slow
def test_a_stack_start_never_shows_the_secret(tmp_path):
    """`booth stack up` with debug logging, a session event through the broker, `stack down`: the
    S3 secret appears in no output, log file, state file, or service command line."""
    secret = f"stack-{uuid.uuid4().hex}"
    state = tmp_path / "state"
    env = {
        "BOOTH_STATE_DIR": str(state),
        "BOOTH_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "BOOTH_S3_ENDPOINT": f"127.0.0.1:{free_port()}",
        "BOOTH_S3_SECRET_KEY": secret,
        "BOOTH_KAFKA_SASL_USERNAME": "svc",
        "BOOTH_KAFKA_SASL_PASSWORD": secret + "-kafka",
    }
    outputs, cmdlines = [], []
    try:
        up = booth("-vv", "stack", "up", "--no-prometheus", env=env, cwd=tmp_path, timeout=120)
        outputs.append(up.stdout + up.stderr)
        assert up.returncode == 0, up.stderr[-2000:]
        for entry in json.loads((state / "stack.json").read_text()).values():
            cmdlines.append(Path(f"/proc/{entry['pid']}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        refused = booth("-vv", "session", "start", "--session", "sec-check", env=env, cwd=tmp_path)
        outputs.append(refused.stdout + refused.stderr)
        assert refused.returncode != 0 and "needs a reference dance" in refused.stderr, refused.stderr[-2000:]
        with pytest.MonkeyPatch.context() as mp:  # a reference in the store, as `booth reference add` leaves one
            for name, value in env.items():
                mp.setenv(name, value)
            ObjectStore(Settings()).put(layout.reference_latest_key("dance"), b'{"name": "dance", "version": 1}')
        event = booth(
            "-vv", "session", "start", "--session", "sec-check", "--reference", "dance", env=env, cwd=tmp_path
        )
        outputs.append(event.stdout + event.stderr)
        assert event.returncode == 0 and "sec-check" in event.stdout, event.stderr[-2000:]
        status = booth("-vv", "stack", "status", env=env, cwd=tmp_path)
        outputs.append(status.stdout + status.stderr)
    finally:
        down = booth("stack", "down", env=env, cwd=tmp_path)
        outputs.append(down.stdout + down.stderr)
    assert len(cmdlines) == 2 and any("nanio" in c for c in cmdlines)
    files = [p.read_text(errors="replace") for p in state.rglob("*") if p.is_file() and p.suffix in (".log", ".json")]
    assert len(files) >= 2  # the services' logs at least
    for text in outputs + cmdlines + files:
        assert secret not in text
    assert any("DEBUG" in text for text in outputs), "debug logging was on, so the check saw the clients' logs"


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("BOOTH_")}


# --- TLS and SASL reach the clients --------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> dict[str, Path]:
    """A throwaway self-signed certificate and key (used as CA, client certificate and key)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=booth-test-ca",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return {"cafile": cert, "certfile": cert, "keyfile": key}


def _secured(tls_files, protocol="SASL_SSL", mechanism="SCRAM-SHA-512") -> Settings:
    return Settings(
        kafka_bootstrap=f"127.0.0.1:{free_port()}",
        kafka_security_protocol=protocol,
        kafka_sasl_mechanism=mechanism,
        kafka_sasl_username="svc-booth",
        kafka_sasl_password="pw-123",
        kafka_ssl_cafile=tls_files["cafile"],
        kafka_ssl_certfile=tls_files["certfile"],
        kafka_ssl_keyfile=tls_files["keyfile"],
    )


def test_kafka_python_clients_carry_sasl_and_tls(tls_files):
    from infra import kafka

    settings = _secured(tls_files)
    wanted = {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "svc-booth",
        "sasl_plain_password": "pw-123",
        "ssl_cafile": str(tls_files["cafile"]),
        "ssl_certfile": str(tls_files["certfile"]),
        "ssl_keyfile": str(tls_files["keyfile"]),
    }
    # Real clients (which reject unknown options); api_version given, so none of them dials out here.
    producer = kafka.producer(settings, api_version=(3, 0))
    try:
        assert {k: producer.config[k] for k in wanted} == wanted
    finally:
        producer.close(timeout=1)
    consumer = kafka.consumer(settings, "t", group_id="g", api_version=(3, 0))
    try:
        assert {k: consumer.config[k] for k in wanted} == wanted
    finally:
        consumer.close()


def test_kafka_admin_client_carries_sasl_and_tls(tls_files, monkeypatch):
    import kafka as kafka_python

    from infra import kafka

    seen = {}

    class Recorder:
        def __init__(self, **options):
            seen.update(options)

    monkeypatch.setattr(kafka_python, "KafkaAdminClient", Recorder)
    kafka.admin(_secured(tls_files))
    assert seen["security_protocol"] == "SASL_SSL" and seen["sasl_plain_password"] == "pw-123"
    assert seen["ssl_cafile"] == str(tls_files["cafile"]) and seen["sasl_mechanism"] == "SCRAM-SHA-512"


@pytest.mark.parametrize(
    "protocol,mechanism", [("SASL_SSL", "SCRAM-SHA-256"), ("SASL_PLAINTEXT", "PLAIN"), ("SSL", None)]
)
def test_faust_app_hands_sasl_and_tls_to_aiokafka(tls_files, protocol, mechanism):
    import ssl

    import faust
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    from infra.kafka import faust_broker_options

    settings = _secured(tls_files, protocol, mechanism)
    app = faust.App(f"sec-{uuid.uuid4().hex[:6]}", **faust_broker_options(settings))
    # The very mapping Faust applies to its aiokafka producer and consumer.
    auth = credentials_to_aiokafka_auth(app.conf.broker_credentials)
    assert auth["security_protocol"] == protocol
    context = auth.get("ssl_context")
    if protocol.endswith("SSL"):
        assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_REQUIRED
        assert any(
            dict(x[0] for x in ca["subject"]).get("commonName") == "booth-test-ca" for ca in context.get_ca_certs()
        )
    else:
        assert context is None
    if mechanism:
        assert (auth["sasl_mechanism"], auth["sasl_plain_username"], auth["sasl_plain_password"]) == (
            mechanism,
            "svc-booth",
            "pw-123",
        )
    else:
        assert "sasl_mechanism" not in auth


def test_no_s3_secret_has_a_default_the_embedded_store_draws_its_own(stack, settings, tmp_path, monkeypatch):
    """No secret in code: without one configured, a clear error; the embedded stack draws a random
    one on first start, kept in its state folder for this user only, and the store refuses the
    secret that used to be everyone's default."""
    from minio.error import S3Error

    from infra.settings import MissingSecretError
    from infra.stack import local_s3_secret

    for name in ("BOOTH_S3_SECRET_KEY", "BOOTH_SECRETS_DIR", "BOOTH_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    bare = Settings(state_dir=tmp_path / "production")
    assert bare.s3_secret_key is None
    with pytest.raises(MissingSecretError, match="BOOTH_S3_SECRET_KEY"):
        ObjectStore(bare).presign("sessions/s/manifest.json", 60)

    # On the command line: one clear line, not retried as if the store were away.
    refused = booth(
        "session", "purge", "x-1", "--settle", "0", env={"BOOTH_STATE_DIR": str(tmp_path / "p")}, cwd=tmp_path
    )
    assert refused.returncode != 0 and "no S3 secret key: set BOOTH_S3_SECRET_KEY" in refused.stderr
    assert "Traceback" not in refused.stderr and "failed 8 times" not in refused.stderr

    kept = stack.state_dir / "s3_secret_key"
    assert kept.stat().st_mode & 0o777 == 0o600
    secret = kept.read_text().strip()
    assert len(secret) >= 32 and secret == stack.settings.s3_secret()
    assert Settings(state_dir=stack.state_dir).s3_secret() == secret  # other commands find it there
    assert local_s3_secret(tmp_path / "another") != secret  # drawn, not derived

    ObjectStore(settings).put("probe/x", b"x")
    for guess in ("booth-local-secret", local_s3_secret(tmp_path / "another")):
        outsider = ObjectStore(settings.model_copy(update={"s3_secret_key": SecretStr(guess)}), attempts=1)
        with pytest.raises(S3Error):
            outsider.list("probe/")


def test_object_store_client_uses_tls_when_configured():
    from infra.objectstore import ObjectStore

    for secure, scheme in ((True, "https://"), (False, "http://")):
        settings = Settings(s3_endpoint="store.example:9000", s3_secure=secure, s3_secret_key="configured-secret")
        # Presigning is offline (the region is configured): the link shows the scheme the client uses.
        url = ObjectStore(settings).presign("sessions/s/manifest.json", 60)
        assert url.startswith(scheme + "store.example:9000/"), url


# --- shared links ----------------------------------------------------------------------------------


def test_presigned_links_work_then_expire(settings):
    from infra.objectstore import ObjectStore

    store = ObjectStore(settings)
    store.put("sessions/s1/results/rendition.mp4", b"video bytes")
    url = store.presign("sessions/s1/results/rendition.mp4", 2)
    assert urllib.request.urlopen(url, timeout=10).read() == b"video bytes"
    forged = url.replace("rendition.mp4", "metrics.json")  # same signature, another object
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(forged, timeout=10)
    assert refused.value.code == 403
    time.sleep(3)
    with pytest.raises(urllib.error.HTTPError) as expired:
        urllib.request.urlopen(url, timeout=10)
    assert expired.value.code == 403


def test_link_expiry_setting_stays_within_what_s3_signs():
    with pytest.raises(ValueError, match="link_expiry_s"):
        Settings(link_expiry_s=8 * 24 * 3600)  # SigV4 links live at most 7 days
    with pytest.raises(ValueError, match="link_expiry_s"):
        Settings(link_expiry_s=0)


# --- object keys --------------------------------------------------------------------------------


KEY_BUILDERS = {
    "session_prefix": lambda i: layout.session_prefix(i),
    "shard_key (session)": lambda i: layout.shard_key(i, "cam0", 0),
    "shard_key (camera)": lambda i: layout.shard_key("s1", i, 0),
    "shard_index_key (camera)": lambda i: layout.shard_index_key("s1", i, 0),
    "manifest_key": lambda i: layout.manifest_key(i),
    "preview_key": lambda i: layout.preview_key(i),
    "sample_key": lambda i: layout.sample_key(i, 0),
    "reference_prefix": lambda i: layout.reference_prefix(i),
    "reference_file_key": lambda i: layout.reference_file_key(i, 1, "poses.npz"),
}


@pytest.mark.parametrize("builder", sorted(KEY_BUILDERS))
@pytest.mark.parametrize("hostile", HOSTILE_IDS, ids=repr)
def test_key_builders_reject_hostile_ids(builder, hostile):
    with pytest.raises(InvalidId):
        KEY_BUILDERS[builder](hostile)


def test_key_builders_reject_hostile_file_names_and_numbers():
    with pytest.raises(ValueError):
        layout.reference_file_key("salsa", 1, "../../sessions/s1/manifest.json")
    with pytest.raises(ValueError):
        layout.shard_key("s1", "cam0", -1)
    with pytest.raises(ValueError):
        layout.reference_source_key("salsa", ".mp4/../../x")


@given(st.text(max_size=80))
@hsettings(max_examples=400, deadline=None)
def test_a_key_either_stays_in_its_session_or_is_refused(candidate):
    try:
        session = validate_id(candidate)
    except InvalidId:
        for build in KEY_BUILDERS.values():
            with pytest.raises(InvalidId):
                build(candidate)
        return
    key = layout.shard_key(session, "cam0", 3)
    assert key.startswith(f"sessions/{session}/") and key.isascii()
    assert ".." not in key.split("/") and "//" not in key and "\\" not in key


# --- network endpoints ----------------------------------------------------------------------------


def _listening(port: int) -> set[str]:
    """Addresses with a listening TCP socket on `port` in this machine's network namespace."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state != "0A" or int(hex_port, 16) != port:
                continue
            raw = bytes.fromhex(address)
            if width == 8:
                found.add(socket.inet_ntop(socket.AF_INET, raw[::-1]))
            else:  # four little-endian 32-bit words
                found.add(socket.inet_ntop(socket.AF_INET6, b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))))
    return found


def test_metrics_endpoint_binds_loopback_unless_configured():
    from infra import metrics

    port = free_port()
    assert metrics.serve(Settings(metrics_port=port), f"sec-loopback-{uuid.uuid4().hex[:6]}") == port
    assert _listening(port) == {"127.0.0.1"}
    assert b"python_info" in urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    wide = free_port()
    assert (
        metrics.serve(Settings(metrics_port=wide, metrics_host="0.0.0.0"), f"sec-wide-{uuid.uuid4().hex[:6]}") == wide
    )
    assert _listening(wide) == {"0.0.0.0"}


def test_embedded_stack_listens_on_loopback_only(stack):
    for address in (stack.settings.kafka_bootstrap, stack.settings.s3_endpoint):
        port = int(address.rsplit(":", 1)[1])
        assert _listening(port) == {"127.0.0.1"}, address


def test_settings_and_console_default_to_loopback():
    assert Settings().metrics_host == "127.0.0.1"
    from console.cli import console

    host = next(p for p in console.params if p.name == "host")
    assert host.default == "127.0.0.1"
