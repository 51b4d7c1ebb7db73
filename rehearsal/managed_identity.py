"""A stand-in for the managed identity endpoint Azure Container Apps gives each container (run as a script:
`python rehearsal/managed_identity.py --port P --secret-file F --client-id C --principal-id O --tenant-id T`).

Container Apps puts IDENTITY_ENDPOINT and IDENTITY_HEADER into the container's environment; azure-identity's
ManagedIdentityCredential (through MSAL's App Service flow) then asks
`GET $IDENTITY_ENDPOINT?api-version=2019-08-01&resource=<resource>&client_id=<AZURE_CLIENT_ID>` with the header
`X-IDENTITY-HEADER: $IDENTITY_HEADER`, and gets `{"access_token", "expires_on", "resource", "token_type",
"client_id"}`. This endpoint answers that for the one user-assigned identity the stack gives the server (its
client id) and the Storage resource only, and refuses a wrong header, another identity or another resource.

The token is a JWT of the shape Microsoft Entra issues (issuer https://sts.windows.net/<tenant>/, audience
https://storage.azure.com, oid = the identity's principal id, tid, nbf/iat/exp). Azurite's `--oauth basic`
checks issuer, audience and lifetime but not the signature, and keys a user-delegation key to oid and tid;
the token is signed with a key of this process all the same (HS256), so nothing here accepts a forged one.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import secrets
import sys
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

STORAGE_RESOURCE = "https://storage.azure.com"
API_VERSION = "2019-08-01"
TOKEN_LIFETIME_SECONDS = 3600


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def storage_token(key: bytes, client_id: str, principal_id: str, tenant_id: str, now: int,
                  lifetime: int = TOKEN_LIFETIME_SECONDS) -> str:
    """An access token for Azure Storage as Entra issues one to a user-assigned managed identity."""
    header = {"alg": "HS256", "typ": "JWT"}
    claims = {"aud": STORAGE_RESOURCE, "iss": f"https://sts.windows.net/{tenant_id}/", "iat": now, "nbf": now,
              "exp": now + lifetime, "appid": client_id, "appidacr": "2", "idtyp": "app", "oid": principal_id,
              "sub": principal_id, "tid": tenant_id, "uti": uuid.uuid4().hex, "ver": "1.0",
              "xms_mirid": "/subscriptions/rehearsal/resourcegroups/rehearsal/providers/"
                           "Microsoft.ManagedIdentity/userAssignedIdentities/mlflow-server"}
    signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64url(signature)}"


class IdentityHandler(BaseHTTPRequestHandler):
    server_version = "ManagedIdentityStandIn/1"

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        config = self.server.config  # type: ignore[attr-defined]
        url = urlsplit(self.path)
        query = {key: values[0] for key, values in parse_qs(url.query).items()}
        header = self.headers.get("X-IDENTITY-HEADER", "")
        if not hmac.compare_digest(header.encode(), config["secret"].encode()):
            return self._answer(401, {"error": "invalid_request", "error_description": "X-IDENTITY-HEADER"})
        if query.get("api-version") != API_VERSION:
            return self._answer(400, {"error": "invalid_request", "error_description": "api-version"})
        resource = query.get("resource", "").rstrip("/")
        if resource != STORAGE_RESOURCE:
            return self._answer(400, {"error": "invalid_resource", "error_description": f"not {STORAGE_RESOURCE}"})
        # A user-assigned identity is named by client_id (or object/resource id): the container has only this one.
        asked = query.get("client_id") or query.get("principal_id") or query.get("object_id")
        if asked not in {config["client_id"], config["principal_id"]}:
            return self._answer(400, {"error": "invalid_request",
                                      "error_description": "no such identity assigned to this container"})
        now = int(time.time())
        token = storage_token(config["key"], config["client_id"], config["principal_id"], config["tenant_id"], now)
        config["issued"] += 1
        self._answer(200, {"access_token": token, "expires_on": str(now + TOKEN_LIFETIME_SECONDS),
                           "resource": STORAGE_RESOURCE, "token_type": "Bearer", "client_id": config["client_id"]})

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the stdlib's name
        # The query names no secret; the header is not logged.
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret-file", required=True, help="file holding IDENTITY_HEADER's value")
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--principal-id", required=True)
    parser.add_argument("--tenant-id", required=True)
    args = parser.parse_args(argv)
    config = {"secret": Path(args.secret_file).read_text().strip(), "client_id": args.client_id,
              "principal_id": args.principal_id, "tenant_id": args.tenant_id, "key": secrets.token_bytes(32),
              "issued": 0}
    server = ThreadingHTTPServer(("127.0.0.1", args.port), IdentityHandler)
    server.config = config  # type: ignore[attr-defined]
    sys.stderr.write(f"managed identity endpoint on 127.0.0.1:{args.port} (pid {os.getpid()})\n")
    sys.stderr.flush()
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
