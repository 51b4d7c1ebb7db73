"""rehearsal.ports under concurrency: pytest-xdist's workers (and other test runs on the machine)
pick ports at the same time, and each server binds its port only later, so a port handed out must
stay reserved, in this process and against every other one, until the process that took it ends."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rehearsal import ports

REPO = Path(__file__).resolve().parents[2]
PORTS_PER_PROCESS = 200

# Takes ports, prints them, then holds them (binding none, as a server not started yet) until stdin closes.
_HOLDER = textwrap.dedent(f"""
    import json, sys
    from rehearsal.ports import free_port
    print(json.dumps([free_port() for _ in range({PORTS_PER_PROCESS})]), flush=True)
    sys.stdin.read()
""")


def test_ports_are_outside_the_ephemeral_range_that_outgoing_connections_draw_from():
    ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    assert all(port < ephemeral_low for port in [ports.free_port() for _ in range(PORTS_PER_PROCESS)])


def test_a_process_is_never_handed_the_same_port_twice_even_unbound():
    taken = [ports.free_port() for _ in range(PORTS_PER_PROCESS)]
    assert len(set(taken)) == len(taken)


def test_a_port_another_live_process_took_but_has_not_bound_is_not_handed_out():
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER], cwd=REPO, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        theirs = set(json.loads(holder.stdout.readline()))
        ours = {ports.free_port() for _ in range(PORTS_PER_PROCESS)}
    finally:
        holder.communicate("", timeout=30)
    assert len(theirs) == PORTS_PER_PROCESS
    assert not theirs & ours, f"handed to both processes: {sorted(theirs & ours)[:10]}"


def _listen_in_candidate_range() -> socket.socket:
    """A listener on the highest bindable candidate port (the scan starts at the lowest)."""
    for port in reversed(ports.candidate_ports()):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.bind((ports.LOOPBACK, port))
        except OSError:
            listener.close()
            continue
        listener.listen()
        return listener
    raise AssertionError("no bindable candidate port on this machine")


def test_a_port_something_listens_on_is_skipped_and_its_claim_let_go(monkeypatch):
    listener = _listen_in_candidate_range()
    bound = listener.getsockname()[1]
    monkeypatch.setattr(ports, "candidate_ports", lambda: range(bound, bound + 1))
    with listener:
        with pytest.raises(ports.NoFreePort, match=f"range\\({bound}, {bound + 1}\\) is bound or claimed"):
            ports.free_port()
    assert ports.free_port() == bound
