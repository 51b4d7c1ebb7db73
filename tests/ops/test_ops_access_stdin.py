"""ops.access.run_process feeds a file given as stdin through a pipe of its own (review 4 of issue 28,
F1): a restore killed with SIGKILL during its objects upload left the upload one-off reading
objects.tar straight from the file and writing on after the maintenance lock was gone, over what
`--put-back` had just put back. Through the pipe, the command's input ends when the tool dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.harness.program import REPO_ROOT

# Reads its stdin slowly and records how far it got; exits at the end of its input.
SLOW_READER = """
import sys, time
done = 0
while True:
    chunk = sys.stdin.buffer.read(65536)
    if not chunk:
        break
    done += len(chunk)
    open(sys.argv[1], "w").write(str(done))
    time.sleep(0.02)
open(sys.argv[1], "w").write(f"end {done}")
"""

# The tool: runs the reader with the file as stdin, as restore runs the upload with objects.tar.
TOOL = """
import sys
from ops.access import run_process
run_process([sys.executable, "-c", sys.argv[1], sys.argv[2]], {}, stdin=open(sys.argv[3], "rb"))
"""


def test_a_killed_tool_ends_its_commands_input(tmp_path: Path) -> None:
    payload = tmp_path / "objects.tar"
    payload.write_bytes(os.urandom(64 * 1024 * 1024))  # ~20 s for the reader at its pace
    progress = tmp_path / "progress"
    tool = subprocess.Popen([sys.executable, "-c", TOOL, SLOW_READER, str(progress), str(payload)],
                            cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    deadline = time.monotonic() + 30
    while not progress.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert progress.exists(), "the reader never started"
    tool.send_signal(signal.SIGKILL)
    tool.wait()
    deadline = time.monotonic() + 10
    while not progress.read_text().startswith("end") and time.monotonic() < deadline:
        time.sleep(0.1)
    final = progress.read_text()
    assert final.startswith("end"), f"the command still reads after its tool was killed: {final} bytes"
    assert int(final.split()[1]) < payload.stat().st_size, "its input ended with the tool, not at the file's end"
