"""infra/compose.yaml read as Docker Compose would (YAML with anchors and merge keys), and checked
for what makes it start cleanly: health checks, start order, one-shot set-up jobs, pinned images,
settings that exist, and the files it mounts. Docker itself does not run here."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from infra.settings import REPO_ROOT, Settings

INFRA = REPO_ROOT / "infra"
COMPOSE = INFRA / "compose.yaml"
ONE_SHOT = {"minio-setup", "setup"}
# Variables the settings read besides the fields: the config file and the secrets folder.
SETTINGS_VARIABLES = {"BOOTH_CONFIG", "BOOTH_SECRETS_DIR"}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def booth_services(services) -> dict:
    return {name: s for name, s in services.items() if "build" in s}


def env_of(service: dict) -> dict:
    env = service.get("environment") or {}
    if isinstance(env, list):  # KEY=VALUE form
        env = dict(item.split("=", 1) for item in env)
    return env


def interpolate(value: str, variables: dict[str, str]) -> str:
    """${VAR}, ${VAR:-default} and ${VAR:?message} as Compose substitutes them."""

    def sub(m: re.Match) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3) or ""
        if name in variables and variables[name] != "":
            return variables[name]
        if op == ":?":
            raise KeyError(f"{name}: {arg}")
        return arg if op == ":-" else ""

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:[-?])([^}]*))?\}", sub, str(value))


def test_every_service_is_pinned_or_built_here(services):
    for name, service in services.items():
        if "build" in service:
            assert (
                REPO_ROOT / service["build"]["context"].replace("..", ".") / service["build"]["dockerfile"]
            ).exists()
            continue
        image = service["image"]
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and re.search(r"\d", tag), f"{name}: image {image} is not pinned"
        assert "/" in repo or repo in {"caddy"}, f"{name}: {image}"


def test_kafka_minio_and_the_console_have_health_checks_and_the_start_order_waits_for_them(services):
    kafka = [n for n in services if n.startswith("kafka-")]
    assert len(kafka) == 3
    for name in [*kafka, "minio", "console"]:
        check = services[name].get("healthcheck")
        assert check and check["test"] and check.get("retries", 0) >= 3, f"{name} has no health check"
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        assert isinstance(depends, dict), f"{name}: depends_on without conditions"
        for other, how in depends.items():
            assert other in services, f"{name} depends on {other}, which is not a service"
            condition = how["condition"]
            assert condition in CONDITIONS, f"{name} -> {other}: {condition}"
            if condition == "service_healthy":
                assert services[other].get("healthcheck"), f"{name} waits for {other} to be healthy; it has no check"
            if condition == "service_completed_successfully":
                assert other in ONE_SHOT and services[other].get("restart") == "no", f"{name} -> {other}"
    # The set-up jobs run once, after what they set up; every service of the project after them.
    assert services["minio-setup"]["depends_on"] == {"minio": {"condition": "service_healthy"}}
    setup_after = services["setup"]["depends_on"]
    assert {k: v["condition"] for k, v in setup_after.items()} == {
        **{k: "service_healthy" for k in kafka},
        "minio-setup": "service_completed_successfully",
    }
    for name, service in booth_services(services).items():
        if name != "setup":
            assert service["depends_on"] == {"setup": {"condition": "service_completed_successfully"}}, name
    assert services["proxy"]["depends_on"]["console"]["condition"] == "service_healthy"
    assert "booth setup" in " ".join(services["setup"]["entrypoint"])


def test_every_booth_setting_it_names_exists(services):
    fields = {f"BOOTH_{name.upper()}" for name in Settings.model_fields}
    named = {key for s in services.values() for key in env_of(s) if key.startswith("BOOTH_")}
    assert named, "no BOOTH_* settings found"
    assert named - fields - SETTINGS_VARIABLES == set()
    # And their values are valid settings (with the variables of infra/env.example filled in).
    example = dict(
        line.split("=", 1)
        for line in (INFRA / "env.example").read_text().splitlines()
        if re.match(r"^[A-Z][A-Z0-9_]*=", line)
    )
    for name, service in booth_services(services).items():
        env = {k: interpolate(v, example) for k, v in env_of(service).items() if k.startswith("BOOTH_")}
        values = {k[len("BOOTH_") :].lower(): v for k, v in env.items() if k not in SETTINGS_VARIABLES}
        if "metrics_targets" in values:
            values["metrics_targets"] = json.loads(values["metrics_targets"])
        settings = Settings(**values)
        specs = settings.topic_specs().values()
        assert {(t.replication_factor, t.min_insync_replicas) for t in specs} == {(3, 2)}, name
        assert settings.kafka_idempotence and settings.public_url == f"https://{example['DOMAIN']}"
        assert len(settings.kafka_bootstrap.split(",")) == 3


def test_every_variable_it_reads_is_in_the_example_env_file(compose):
    used = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", COMPOSE.read_text()))
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", (INFRA / "env.example").read_text(), re.M))
    assert used - documented == set()


def test_the_cluster_keeps_what_the_settings_promise(services):
    kafka = {n: env_of(s) for n, s in services.items() if n.startswith("kafka-")}
    voters = {
        v.split("@")[1].split(":")[0] for v in next(iter(kafka.values()))["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
    }
    assert voters == set(kafka)
    assert len({e["KAFKA_NODE_ID"] for e in kafka.values()}) == 3
    for name, env in kafka.items():
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092"
        assert int(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == 3 and int(env["KAFKA_MIN_INSYNC_REPLICAS"]) == 2
        assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
        assert int(env["KAFKA_MESSAGE_MAX_BYTES"]) >= Settings().kafka_max_message_bytes


def test_the_application_has_its_own_storage_user_limited_to_the_bucket(services):
    bucket = env_of(services["setup"])["BOOTH_S3_BUCKET"]
    app_key = env_of(services["setup"])["BOOTH_S3_ACCESS_KEY"]
    assert "MINIO_ROOT" not in app_key and "s3_secret_key" in services["setup"]["secrets"]
    for name, service in booth_services(services).items():
        assert not any(k.startswith("MINIO_") for k in env_of(service)), f"{name} sees the administrator"
    policy = json.loads((INFRA / "minio-app-policy.json").read_text())
    resources = {r for s in policy["Statement"] for r in s["Resource"]}
    assert resources == {f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"}
    actions = {a for s in policy["Statement"] for a in s["Action"]}
    assert all(a.startswith("s3:") and "*" not in a for a in actions) and "s3:PutObject" in actions
    assert not any(a.startswith(("s3:DeleteBucket", "s3:PutBucketPolicy", "admin:")) for a in actions)
    assert env_of(services["minio-setup"])["BUCKET"] == bucket == env_of(services["proxy"])["BUCKET"]
    script = (INFRA / "minio-setup.sh").read_text()
    for step in ("mc mb --ignore-existing", "mc admin policy create", "mc admin user add", "mc admin policy attach"):
        assert step in script


def test_mounted_files_secrets_and_volumes_exist(compose, services):
    for name, service in services.items():
        for volume in service.get("volumes") or []:
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (INFRA / source).exists(), f"{name} mounts {source}, which is not there"
            else:
                assert source in compose["volumes"], f"{name} uses volume {source}, not declared"
        for secret in service.get("secrets") or []:
            assert secret in compose["secrets"], f"{name} uses secret {secret}, not declared"


def test_grafana_is_provisioned_with_prometheus_and_the_dashboard(services):
    grafana = services["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"] if v.startswith("."))
    provisioning = INFRA / mounts["./grafana/provisioning"].replace("/etc/grafana/provisioning", "grafana/provisioning")
    sources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert [(s["type"], s["url"], s["isDefault"]) for s in sources] == [("prometheus", "http://prometheus:9090", True)]
    assert "prometheus" in services and services["prometheus"]["healthcheck"]
    providers = yaml.safe_load((provisioning / "dashboards" / "booth.yml").read_text())["providers"]
    dashboard_in = mounts["./grafana-dashboard.json"]
    assert [p["options"]["path"] for p in providers] == [dashboard_in.rsplit("/", 1)[0]]
    dashboard = json.loads((INFRA / "grafana-dashboard.json").read_text())
    assert dashboard["panels"] and dashboard["templating"]["list"][0]["query"] == "prometheus"


def test_the_proxy_serves_the_console_and_the_video_links_on_the_public_address():
    caddy = (INFRA / "Caddyfile").read_text()
    assert caddy.lstrip("#").count("{$DOMAIN} {") == 1
    assert re.search(r"@videos \{\s*method GET HEAD\s*path /\{\$BUCKET\}/\*\s*\}", caddy)
    assert re.search(r"handle @videos \{\s*reverse_proxy minio:9000", caddy)
    assert "reverse_proxy console:8080" in caddy


def test_the_image_leaves_local_state_out_and_picks_torch_by_build_argument(services):
    ignored = {line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()}
    assert {".venv", ".booth", ".booth-test", ".git", "infra/secrets", "infra/.env"} <= ignored
    dockerfile = (INFRA / "Dockerfile").read_text()
    assert "ARG TORCH=" in dockerfile and "cuda)" in dockerfile and "cpu)" in dockerfile
    pinned = re.findall(r"torch==([\d.]+)", dockerfile)
    assert pinned and set(pinned) == set(re.findall(r"torch==([\d.]+)", (REPO_ROOT / "Makefile").read_text()))
    args = booth_services(services)["setup"]["build"]["args"]
    assert set(args) == {"TORCH", "TORCH_CPU_INDEX_URL"}


def test_the_console_health_check_passes_on_a_running_console_and_fails_on_a_stopped_one(services, settings):
    """The health check's own command, run against a console answering to the public name only."""
    import subprocess
    import sys

    from console.app import create_app

    from helpers import console_settings, serve

    check = services["console"]["healthcheck"]["test"]
    assert check[:3] == ["CMD", "python", "-c"]
    env = {"BOOTH_CONSOLE_HOSTS": "booth.example.org", "PATH": "/usr/bin:/bin"}
    app = create_app(console_settings(settings, console_hosts="booth.example.org"), targets={})

    def run(port: int) -> int:
        code = check[3].replace("127.0.0.1:8080", f"127.0.0.1:{port}")
        return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=30).returncode

    with serve(app) as base:
        port = int(base.rsplit(":", 1)[1])
        assert run(port) == 0
    assert run(port) != 0
