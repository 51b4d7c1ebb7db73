"""The keep-alive chain, for real: the server started from the rendered command keeps an idle
connection open past uvicorn's own default (5 s), as a hop in front of it (Service Connect's Envoy,
idle timeout proxy.timeoutSeconds) needs; the rendered keep-alive is longer than that timeout."""

from __future__ import annotations

import http.client
import time

from components import render
from rehearsal.launcher import Variant

UVICORN_DEFAULT_KEEP_ALIVE_SECONDS = 5
IDLE_SECONDS = 2 * UVICORN_DEFAULT_KEEP_ALIVE_SECONDS + 1


def _get(connection: http.client.HTTPConnection) -> int:
    """One GET /health on `connection`, its response read whole (keep-alive needs the body consumed)."""
    connection.request("GET", "/health")
    response = connection.getresponse()
    response.read()
    return response.status


def test_the_server_keeps_an_idle_connection_past_uvicorns_default(default_variant: Variant, report_figure):
    """On the session's stack (the stack's default config): what is rendered, not a config of its own."""
    variant = default_variant
    command = list(variant.server.spec.command)
    opts = command[command.index("--uvicorn-opts") + 1].split()
    keep_alive = int(opts[opts.index("--timeout-keep-alive") + 1])
    assert (keep_alive == render.uvicorn_keep_alive_seconds(variant.server.settings)
            > variant.config.proxy.timeout_seconds)
    port = variant.server.port
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        assert _get(connection) == 200
        first_socket = connection.sock
        local_port = first_socket.getsockname()[1]
        time.sleep(IDLE_SECONDS)
        started = time.monotonic()
        # http.client does not reconnect a socket the server closed: the request fails instead.
        assert _get(connection) == 200, f"closed after {IDLE_SECONDS} s idle"
        assert connection.sock is first_socket and connection.sock.getsockname()[1] == local_port
    finally:
        connection.close()
    report_figure("idle connection reused after", IDLE_SECONDS, "s")
    report_figure("second request on it", f"{(time.monotonic() - started) * 1000:.0f}", "ms")
