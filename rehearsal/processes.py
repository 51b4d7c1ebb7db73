"""The rehearsal's processes: the image's programs mapped to local ones, each process started in a
process group of its own and stopped by its PID (rehearsal.launcher runs the stack with them,
rehearsal.platform_run each container as its platform runs it)."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Mapping, Optional

log = logging.getLogger("rehearsal")

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


class ServerUnavailable(RuntimeError):
    """A server binary the rehearsal needs (PostgreSQL, Nginx) is not installed."""


class StartupError(RuntimeError):
    """A process did not come up; the message carries the tail of its log."""


def find_nginx() -> str:
    for candidate in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise ServerUnavailable("nginx not found; install Debian's `nginx` package")


def find_node() -> str:
    """Azurite is a Node.js program, run as `node <script>` by absolute path: a `node` found on the
    caller's PATH (nvm's, say) works under the servers' fixed PATH too."""
    node = shutil.which("node")
    if not node:
        raise ServerUnavailable("node not found; install Node.js (Azurite 3.35 runs on Node 10 and later)")
    return node


def image_binary(name: str) -> str:
    """The local binary standing in for a program on the image's PATH."""
    if name == "python":
        return sys.executable
    if name == "mlflow":
        return str(VENV_BIN / "mlflow")
    if name == "nginx":
        return find_nginx()
    if name == "sh":
        return "/bin/sh"
    raise ValueError(f"no local mapping for image binary {name!r}")


def local_command(command: tuple[str, ...]) -> list[str]:
    """A rendered command with only its program (an image path) mapped to the local binary."""
    return [image_binary(command[0]), *command[1:]]


IMAGE_PLATFORM_LAYOUT = {
    "migration": "migration",
    "mlflow_guard": "mlflow_guard",
    "mlflow_platform_guard-1.0.0.dist-info": "mlflow_guard/dist-info",
}
"""The server image's /opt/mlflow-platform (its PYTHONPATH; docker/mlflow/Dockerfile copies the same):
name there -> path in this repository. The dist-info registers mlflow_guard's apps under MLflow's
--app-name values, so the rehearsal's `mlflow server` runs the guarded auth apps as the image does."""


def image_python_path(workdir: Path) -> str:
    """The image's PYTHONPATH, laid out under `workdir` as links into this repository."""
    platform = workdir / "mlflow-platform"
    platform.mkdir(parents=True, exist_ok=True)
    for name, source in IMAGE_PLATFORM_LAYOUT.items():
        link = platform / name
        if not link.is_symlink():
            link.symlink_to(REPO_ROOT / source, target_is_directory=True)
    return str(platform)


def base_env(home: Path, tmp: Path) -> dict[str, str]:
    """What an image provides besides the spec's env: PATH, HOME, locale. Nothing is inherited
    from the caller (no stray AWS_* or MLFLOW_* settings leak into the servers)."""
    return {
        "PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        "HOME": str(home),
        "TMPDIR": str(tmp),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def http_status(url: str, timeout: float = 3.0, context: Optional[ssl.SSLContext] = None) -> Optional[int]:
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (OSError, urllib.error.URLError):
        return None


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --- processes -----------------------------------------------------------------------------------


class Service:
    """One long-running process in its own process group, logging to a file, stopped by PID."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log_path: Path,
                 cwd: Optional[Path] = None):
        self.name = name
        self.argv = argv
        self.env = dict(env)
        self.log_path = log_path
        self.cwd = cwd
        self.process: Optional[subprocess.Popen] = None
        self.expected_running = False

    @property
    def pid(self) -> Optional[int]:
        return self.process.pid if self.process else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        if self.alive():
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                self.argv, env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL,
                stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.expected_running = True
        log.info("started %s (pid %s)", self.name, self.process.pid)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to the process group this process leads (also when the leader itself is gone
        and left children behind, e.g. uvicorn or nginx workers), SIGKILL after `timeout`."""
        self.expected_running = False
        process = self.process
        if process is None:
            return
        deadline = time.monotonic() + timeout
        self._signal_group(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s (pid %s) ignored SIGTERM for %ss; killing", self.name, process.pid, timeout)
        while self._group_alive(process.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        self._signal_group(process.pid, signal.SIGKILL)
        process.wait()
        log.info("stopped %s (pid %s, exit %s)", self.name, process.pid, process.returncode)

    @staticmethod
    def _group_alive(pgid: int) -> bool:
        try:
            os.killpg(pgid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True

    @staticmethod
    def _signal_group(pgid: int, sig: int) -> None:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def tree_pids(self) -> list[int]:
        """This process and its descendants (for RSS sampling)."""
        if not self.alive():
            return []
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
        result, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            result.append(pid)
            todo.extend(children.get(pid, []))
        return result

    def rss_bytes(self) -> int:
        """Resident set size of the whole process tree."""
        total = 0
        for pid in self.tree_pids():
            try:
                with open(f"/proc/{pid}/status") as status:
                    for line in status:
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1]) * 1024
                            break
            except OSError:
                continue
        return total

