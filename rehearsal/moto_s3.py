"""moto's S3 server, taught to check presigned URLs as S3 and MinIO do (run as a script: `python
rehearsal/moto_s3.py -H 127.0.0.1 -p PORT`, moto_server's arguments).

With IAM enforcement on, moto 5.2 reads every request's `Authorization` header, and a presigned URL
(SigV4 in the query string: what MLflow's server hands clients for multipart uploads and downloads)
has none: moto answered 500 to every one. Without enforcement it would accept any URL, signed or not.
Here a request that carries `X-Amz-Credential` in its query is authenticated the way S3 does it: the
signature recomputed over the canonical request (UNSIGNED-PAYLOAD) with the named key's secret, the
URL's lifetime (`X-Amz-Date` + `X-Amz-Expires`, at most 7 days), and then the key's own IAM policies
for the action (moto's usual check). A request with an `Authorization` header is checked by moto as
before, and an unsigned request without either fails as before.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import sys
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

MAX_EXPIRES_SECONDS = 7 * 24 * 3600
"""S3's limit on X-Amz-Expires."""
SIGNED_QUERY = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders",
                "X-Amz-Signature")


def _uri_encode(value: str, safe: str = "-_.~") -> str:
    return quote(value, safe=safe)


def presigned_string_to_sign(method: str, path: str, query: list[tuple[str, str]], headers: Any) -> tuple[str, str]:
    """(string to sign, the request's signature) of a SigV4 presigned request, as S3 builds it."""
    params = dict(query)
    signed_headers = params["X-Amz-SignedHeaders"].split(";")
    canonical_query = "&".join(f"{_uri_encode(k)}={_uri_encode(v)}" for k, v in sorted(
        (k, v) for k, v in query if k != "X-Amz-Signature"))
    lower = {str(name).lower(): str(value) for name, value in headers.items()}
    canonical_headers = "".join(f"{name}:{' '.join(lower.get(name, '').split())}\n" for name in signed_headers)
    canonical_request = "\n".join([method.upper(), _uri_encode(unquote(path), safe="/-_.~"), canonical_query,
                                   canonical_headers, ";".join(signed_headers), "UNSIGNED-PAYLOAD"])
    scope = params["X-Amz-Credential"].split("/", 1)[1]
    string_to_sign = "\n".join(["AWS4-HMAC-SHA256", params["X-Amz-Date"], scope,
                                hashlib.sha256(canonical_request.encode()).hexdigest()])
    return string_to_sign, params["X-Amz-Signature"]


def sigv4_signature(secret: str, scope: str, string_to_sign: str) -> str:
    date, region, service, terminal = scope.split("/")
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, terminal):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def install() -> None:
    """Replace moto's S3IAMRequest with one that also reads presigned (query-string) authentication."""
    from moto.iam import access_control
    from moto.s3.exceptions import S3AccessDeniedError

    base = access_control.S3IAMRequest

    class PresignedAwareS3IAMRequest(base):  # type: ignore[misc, valid-type]
        def __init__(self, account_id, method, path, data, body, headers, action):
            split = urlsplit(path)
            query = parse_qsl(split.query, keep_blank_values=True)
            params = dict(query)
            self._presigned = "Authorization" not in headers and all(name in params for name in SIGNED_QUERY)
            if not self._presigned:
                super().__init__(account_id, method, path, data, body, headers, action)
                return
            if params["X-Amz-Algorithm"] != "AWS4-HMAC-SHA256":
                raise S3AccessDeniedError()
            # The parent reads the credential scope from the Authorization header: give it the query's.
            synthetic = dict(headers.items())
            synthetic["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={params['X-Amz-Credential']}, "
                                          f"SignedHeaders={params['X-Amz-SignedHeaders']}, "
                                          f"Signature={params['X-Amz-Signature']}")
            super().__init__(account_id, method, path, data, body, synthetic, action)
            self._string_to_sign, self._signature = presigned_string_to_sign(method, split.path, query, headers)
            self._scope = params["X-Amz-Credential"].split("/", 1)[1]
            self._issued = datetime.datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(
                tzinfo=datetime.timezone.utc)
            self._expires = int(params["X-Amz-Expires"])

        def check_signature(self) -> None:
            if not self._presigned:
                return super().check_signature()
            now = datetime.datetime.now(datetime.timezone.utc)
            if not 0 < self._expires <= MAX_EXPIRES_SECONDS or now > self._issued + datetime.timedelta(
                    seconds=self._expires) or now < self._issued - datetime.timedelta(minutes=15):
                raise S3AccessDeniedError()  # S3: "Request has expired"
            secret = self._access_key.create_credentials().secret_key
            if not hmac.compare_digest(sigv4_signature(secret, self._scope, self._string_to_sign), self._signature):
                self._raise_signature_does_not_match()

    access_control.S3IAMRequest = PresignedAwareS3IAMRequest


def main() -> int:
    install()
    from moto.server import main as moto_main

    return moto_main(sys.argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
