"""Where a storage account's public name leads, on one machine (run as a script:
`python rehearsal/connect_proxy.py --port P --route devstoreaccount1.blob.core.windows.net:443=127.0.0.1:AZ`).

MLflow's Azure Blob repository with an identity always talks to `https://<account>.blob.core.windows.net`
(it builds that URL from the wasbs:// URI), and the user-delegation SAS URLs it hands clients name the same
host. The rehearsal cannot change the machine's DNS, so the server and the clients reach Azurite through this
HTTP CONNECT proxy (HTTPS_PROXY, which requests, azure-core and curl honour): it opens a tunnel to the
address a routed name stands for and relays the bytes, TLS end to end (Azurite's certificate names the
account's host). Any other destination, and any request but CONNECT, is refused (403): nothing leaves the
machine through it.
"""

from __future__ import annotations

import argparse
import os
import socket
import socketserver
import sys
import threading

BUFFER = 256 * 1024


def _relay(source: socket.socket, target: socket.socket) -> None:
    try:
        while True:
            data = source.recv(BUFFER)
            if not data:
                break
            target.sendall(data)
    except OSError:
        pass
    finally:
        try:
            target.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class TunnelHandler(socketserver.StreamRequestHandler):
    rbufsize = 0
    """Unbuffered: the request line and headers are read byte by byte, so nothing the client sends after
    them (its TLS handshake) is left in a buffer instead of reaching the tunnel."""

    def handle(self) -> None:
        routes: dict[str, tuple[str, int]] = self.server.routes  # type: ignore[attr-defined]
        request_line = self.rfile.readline(8192).decode("latin-1").strip()
        while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):  # the request's headers
            pass
        parts = request_line.split()
        if len(parts) != 3 or parts[0] != "CONNECT" or parts[1].lower() not in routes:
            self.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            sys.stderr.write(f"refused: {request_line!r}\n")
            return
        try:
            upstream = socket.create_connection(routes[parts[1].lower()], timeout=10)
        except OSError as error:
            self.wfile.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            sys.stderr.write(f"{parts[1]}: {error}\n")
            return
        upstream.settimeout(None)
        self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        self.wfile.flush()
        client = self.connection
        back = threading.Thread(target=_relay, args=(upstream, client), daemon=True)
        back.start()
        _relay(client, upstream)
        back.join()
        upstream.close()


class TunnelServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def parse_route(text: str) -> tuple[str, tuple[str, int]]:
    name, _, target = text.partition("=")
    host, _, port = target.rpartition(":")
    if not name or ":" not in name or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected NAME:PORT=HOST:PORT, got {text!r}")
    return name.lower(), (host, int(port))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--route", type=parse_route, action="append", required=True,
                        help="NAME:PORT=HOST:PORT (repeatable)")
    args = parser.parse_args(argv)
    server = TunnelServer(("127.0.0.1", args.port), TunnelHandler)
    server.routes = dict(args.route)  # type: ignore[attr-defined]
    sys.stderr.write(f"CONNECT proxy on 127.0.0.1:{args.port} (pid {os.getpid()}): "
                     f"{', '.join(f'{k} -> {h}:{p}' for k, (h, p) in server.routes.items())}\n")
    sys.stderr.flush()
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
