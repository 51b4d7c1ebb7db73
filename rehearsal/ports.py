"""Free loopback ports for the servers the rehearsal and the tests start.

Several processes pick ports at the same time: pytest-xdist's workers, a second test run, other
checkouts on the same machine. A port is only chosen here; the server that listens on it starts
later (PostgreSQL, Nginx, MLflow, moto, Azurite), and a restarted one leaves it unbound for a while.
Binding to port 0 and closing cannot reserve it across that gap, and hands out ports from the
kernel's ephemeral range, which every outgoing connection also draws its local port from.

So a port is taken from below the ephemeral range, must be bindable now, and is claimed with an
exclusive `flock` on a per-port file that this process holds until it exits (the kernel releases
it then, also on a crash): no other process using this module hands it out meanwhile, and this
process never hands it out twice.
"""

from __future__ import annotations

import fcntl
import os
import socket
import tempfile
from pathlib import Path

LOOPBACK = "127.0.0.1"
# The lowest port handed out: above the registered services most machines run.
LOWEST_PORT = 20000
# Where the kernel's ephemeral range starts when /proc cannot tell (Linux's default).
DEFAULT_EPHEMERAL_LOW = 32768
EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
# Fewer ports than this below the ephemeral range: use the ports above it as well.
MINIMUM_POOL = 1000
HIGHEST_PORT = 65535

# port -> the descriptor of its lock file, held (and so claimed) for this process's lifetime
_claimed: dict[int, int] = {}


class NoFreePort(RuntimeError):
    """Every candidate port is claimed by a process or bound."""


def lock_dir() -> Path:
    """One directory per user on the machine, so that every run of that user sees the others' claims."""
    path = Path(tempfile.gettempdir()) / f"rehearsal-ports-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


def candidate_ports() -> range:
    """From LOWEST_PORT up to the ephemeral range (or the whole upper range if that leaves too few)."""
    try:
        ephemeral_low = int(EPHEMERAL_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = DEFAULT_EPHEMERAL_LOW
    if ephemeral_low - LOWEST_PORT < MINIMUM_POOL:
        return range(LOWEST_PORT, HIGHEST_PORT + 1)
    return range(LOWEST_PORT, ephemeral_low)


def _claim(port: int, directory: Path) -> bool:
    """Take the port's lock without waiting; False when another process (or descriptor) holds it."""
    descriptor = os.open(directory / f"{port}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        return False
    _claimed[port] = descriptor
    return True


def _release(port: int) -> None:
    os.close(_claimed.pop(port))


def bindable(port: int) -> bool:
    """Nothing listens on it, nor holds it as a local address (no SO_REUSEADDR: TIME_WAIT counts too)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now and that no other caller of this function,
    in this process or another one alive, has been or will be handed while this process runs."""
    directory = lock_dir()
    for port in candidate_ports():
        if port in _claimed or not _claim(port, directory):
            continue
        if bindable(port):
            return port
        _release(port)
    raise NoFreePort(f"every TCP port on {LOOPBACK} in {candidate_ports()} is bound or claimed by a running process "
                     f"(claims: locks on the files in {directory}); stop the servers or test runs that hold them")
