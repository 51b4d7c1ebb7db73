"""How a command is connected when the tools reach it through `docker exec -i` or `docker run -i`, for
the stand-ins that run it natively (the rehearsal's StackAccess, the interrupt harness, the docker CLI
shim): through pipes, and with the CLI's own answer to SIGTERM.

- Pipes: nothing can seek (pg_dump writes no data offsets, pg_restore reads the archive in order), the
  exit status is the command's own, also when it stops reading its input early, and the output ends when
  the command exits although its input is still open (a psql whose session ended: ops.lock).
- SIGTERM, `docker exec` (`FORWARD=False`): the CLI exits and the command is NOT signalled
  (docker/cli#5309, moby/moby#9098): its input ends (the daemon closes an exec's stdin with the client's
  stream) and it runs on, its output read and dropped. So a psql script already sent runs to its end
  after the tool stopped its client (review 23, F2).
- SIGTERM, a one-off (`FORWARD=True`): ops/oneoff.py stops and removes the container; the stand-in
  passes SIGTERM on to the command.
"""

from __future__ import annotations

import sys

PIPES_SOURCE = r"""
import os, signal, subprocess, sys, threading
forward = sys.argv[1] == "forward"
child = subprocess.Popen(sys.argv[2:], stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def client_gone(*_):
    # as the docker CLI killed under `docker exec`: this process exits at once; the command gets EOF on
    # its input and runs on, its output drained by a copy of this process that nobody waits for
    if os.fork():
        os._exit(128 + signal.SIGTERM)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    try:
        child.stdin.close()
    except OSError:
        pass


signal.signal(signal.SIGTERM, (lambda *_: child.terminate()) if forward else client_gone)


def feed():
    try:
        while chunk := sys.stdin.buffer.read1(65536):
            child.stdin.write(chunk)
            child.stdin.flush()
    except (OSError, ValueError):
        pass
    try:
        child.stdin.close()
    except (OSError, ValueError):
        pass


threading.Thread(target=feed, daemon=True).start()
while chunk := child.stdout.read1(65536):
    sys.stdout.buffer.write(chunk)  # a full disk or a closed pipe fails this process, as it fails the CLI
    sys.stdout.buffer.flush()
status = child.wait()
os._exit(status if status >= 0 else 128 - status)
"""


def through_pipes(argv: list[str], *, forward_sigterm: bool) -> list[str]:
    """`argv` run as through `docker exec -i` (`forward_sigterm` False) or a one-off container's helper
    (True): see the module docstring."""
    return [sys.executable, "-c", PIPES_SOURCE, "forward" if forward_sigterm else "exec", *argv]
