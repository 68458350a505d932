"""Prometheus endpoints: every component serves its metrics on its own port (infra/prometheus.yml)."""

from __future__ import annotations

import logging

from infra.settings import Settings

log = logging.getLogger(__name__)

# Default ports, also the scrape targets in infra/prometheus.yml.
DEFAULT_PORTS = {
    "camera": 9101,
    "processors": 9102,
    "assembler": 9103,
    "trainer": 9104,
    "console": 9105,
    "replay": 9106,
}

_served: dict[str, int] = {}


def serve(settings: Settings, component: str, port: int | None = None) -> int:
    """Start the component's /metrics endpoint once per process; returns the port (0 = disabled).

    A busy port (a second camera process, say) is not fatal: metrics are then off, and we say so.
    """
    from prometheus_client import start_http_server

    if component in _served:
        return _served[component]
    if port is None:
        port = settings.metrics_port or DEFAULT_PORTS.get(component, 0)
    if port < 0:
        return 0
    try:
        server, _thread = start_http_server(port, addr=settings.metrics_host)
        port = server.server_address[1]
    except OSError as exc:
        log.warning("%s metrics are off: cannot bind %s:%s (%s)", component, settings.metrics_host, port, exc)
        port = 0
    _served[component] = port
    if port:
        log.info("%s metrics on http://%s:%d/metrics", component, settings.metrics_host, port)
    return port
