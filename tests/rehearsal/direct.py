"""What the direct-transfer rehearsals share (artifacts.transfer direct, issue 26): the client's settings as
users set them, a file above the lowered multipart threshold, the round trip with the MLflow client while
the server's and Nginx's use is measured, and MLflow's multipart and presigned routes asked directly.

Sizes are tens of MiB (the CI budget): users lower MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE (500 MiB by
default) on their clients to send smaller files direct; the rehearsal does the same, with the environment
variable, and leaves MLflow's part size (MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE, 10 MB) as it is.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import requests

from ops.archive import file_sha256
from rehearsal.launcher import Variant
from rehearsal.usage import TreeUsage

MIB = 1024 * 1024
THRESHOLD = 8 * MIB
"""MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE on the rehearsal's clients."""
DIRECT_SIZE = 24 * MIB
"""An artifact above the threshold: three parts of MLflow's default 10 MB."""
FAR_BELOW = DIRECT_SIZE // 8
"""What "did not cross" means for Nginx (read plus written by all its processes, sockets and log) and for
the server's temporary disk and the logged body bytes: under an eighth of the artifact. A proxied transfer
counts about twice the artifact in Nginx (in and out) and the whole artifact in the server's TMPDIR."""
SERVER_IO_BOUND = DIRECT_SIZE
"""The server's own read-plus-written bytes also count its file reads (a worker's first presigned request
loads boto3's service models: 4 MiB measured per worker), so they are bounded by the artifact's size only:
a proxied upload to S3 counts at least four times it (request body in, temporary file out and in, the
bucket's request out)."""
CLIENT_ENV = {"MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE": str(THRESHOLD)}


def random_file(path: Path, size: int) -> str:
    """`size` random bytes at `path`; their sha256."""
    digest = hashlib.sha256()
    with open(path, "wb") as handle:
        for offset in range(0, size, 8 * MIB):
            chunk = os.urandom(min(8 * MIB, size - offset))
            digest.update(chunk)
            handle.write(chunk)
    return digest.hexdigest()


sha256 = file_sha256
"""A file's sha256 (ops.archive's, as backups record it)."""


ACCESS_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<uri>\S+) HTTP/[0-9.]+" (?P<status>\d{3}) (?P<bytes>\d+|-)')


@dataclass(frozen=True)
class AccessLine:
    method: str
    uri: str
    status: int
    body_bytes_sent: int


def access_lines(variant: Variant, since: int = 0) -> list[AccessLine]:
    """Nginx's access-log lines (combined format) from byte offset `since`."""
    with open(variant.proxy.settings.paths.access_log, "rb") as handle:
        handle.seek(since)
        text = handle.read().decode(errors="replace")
    lines = []
    for match in ACCESS_LINE.finditer(text):
        sent = match["bytes"]
        lines.append(AccessLine(match["method"], match["uri"], int(match["status"]), 0 if sent == "-" else int(sent)))
    return lines


def access_log_size(variant: Variant) -> int:
    return os.path.getsize(variant.proxy.settings.paths.access_log)


@dataclass(frozen=True)
class Transfer:
    """One client call measured: the server's and Nginx's process trees, the server's TMPDIR, Nginx's log."""

    seconds: float
    server_cpu_seconds: float
    server_io_bytes: int
    nginx_io_bytes: int
    server_peak_temp_bytes: int
    log: list[AccessLine]

    @property
    def logged_body_bytes(self) -> int:
        return sum(line.body_bytes_sent for line in self.log)

    def routes(self) -> set[str]:
        """The artifact routes the client used: `artifacts` (a file up or down through the server), `mpu`
        (multipart create/complete/abort), `presigned` (a download URL); listings are left out."""
        found = set()
        for line in self.log:
            match = re.search(r"/mlflow-artifacts/(artifacts|mpu|presigned)/", line.uri)
            if match:
                found.add(f"{line.method} {match[1]}")
        return found


def _settled_log_size(variant: Variant, quiet: float = 0.2, limit: float = 3.0) -> int:
    """The access log's size once Nginx has written the lines of the requests already answered: it logs a
    request after sending its response, so a client that just got an answer can start the next window before
    that line is written (a refused mpu/create then showed up in the next download's routes)."""
    size = access_log_size(variant)
    end = time.monotonic() + limit
    while time.monotonic() < end:
        time.sleep(quiet)
        now = access_log_size(variant)
        if now == size:
            break
        size = now
    return size


class measured:
    """`with measured(variant) as result: <client call>`; then `result.transfer`."""

    def __init__(self, variant: Variant):
        self.variant = variant
        self.transfer: Optional[Transfer] = None

    def __enter__(self) -> "measured":
        self._offset = _settled_log_size(self.variant)
        self._usage = TreeUsage({"server": self.variant.server.service, "nginx": self.variant.proxy.service},
                                temp_dirs={"server": self.variant.server.tmp_dir}).__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._usage.__exit__(*exc)
        usage = self._usage
        self.transfer = Transfer(usage.seconds, usage.cpu_seconds("server"), usage.io_bytes("server"),
                                 usage.io_bytes("nginx"), usage.peak_temp("server"),
                                 access_lines(self.variant, self._offset))


def route(variant: Variant, family: str, experiment_id: str, run_id: str, path: str) -> str:
    """MLflow's multipart (`mpu/create`, `mpu/complete`, `mpu/abort`) or presigned route for a run's artifact
    path, through Nginx, as the MLflow client builds it (under the static prefix when there is one)."""
    return f"{variant.tracking_uri}/api/2.0/mlflow-artifacts/{family}/{experiment_id}/{run_id}/artifacts/{path}"


def create_upload(variant: Variant, experiment_id: str, run_id: str, auth=None, session=None,
                  num_parts: int = 1) -> requests.Response:
    """POST mpu/create for `big/x.bin` (one part by default): what the MLflow client asks before a direct upload."""
    client = session or requests
    return client.post(route(variant, "mpu/create", experiment_id, run_id, "big"), auth=auth, timeout=30,
                       json={"path": "x.bin", "num_parts": num_parts})


def presigned_download(variant: Variant, experiment_id: str, run_id: str, path: str, auth=None,
                       session=None) -> requests.Response:
    """GET presigned/<path>: what the MLflow client asks before a direct download."""
    client = session or requests
    return client.get(route(variant, "presigned", experiment_id, run_id, path), auth=auth, timeout=30)


def refused_status(error: BaseException) -> Optional[int]:
    """The HTTP status behind a refused client call. MLflow 3.17.2's client reads the JSON `message` of a
    refused mpu/create (http_artifact_repo.py, _try_multipart_upload), and MLflow's auth app answers 403 in
    plain text: the user sees a JSONDecodeError raised while handling the HTTPError that holds the 403."""
    seen: Optional[BaseException] = error
    while seen is not None:
        response = getattr(seen, "response", None)
        if response is not None and getattr(response, "status_code", None):
            return response.status_code
        if hasattr(seen, "get_http_status_code"):
            return seen.get_http_status_code()
        seen = seen.__cause__ or seen.__context__
    return None
