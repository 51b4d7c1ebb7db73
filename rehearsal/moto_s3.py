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

Every signed request (query or header) must also be signed for this endpoint's region and for `s3`, as S3 refuses
one whose credential scope names another region or service (400 AuthorizationQueryParametersError for a presigned
URL, AuthorizationHeaderMalformed for a header: https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html,
"List of error codes"; "the region 'x' is wrong; expecting 'y'"), and a presigned URL's scope date must be its
X-Amz-Date's (moto itself recomputes the signature with whatever region the scope names, so a URL signed for another
region passed). The region is MOTO_S3_REGION (default us-east-1: render sets AWS_DEFAULT_REGION=us-east-1 beside an
S3 endpoint, and the rehearsal's buckets are moto's us-east-1 ones).

Headers a presigned request adds unsigned (fourth cloud review of issue 26): the stand-in plays one of two stores,
MOTO_S3_STORE (rehearsal/stand_ins.py, S3StandIn(store=...)):
- `aws` (the default): S3 refuses a presigned request carrying an x-amz-* header that X-Amz-SignedHeaders does not
  name, x-amz-content-sha256 excepted, with 403 AccessDenied "There were headers present in the request which were
  not signed" and the names in HeadersNotSigned (S3's answers quoted in soto-project/soto#374 and
  ex-aws/ex_aws_s3#73; rustfs/rustfs#7425 and demarche-numerique/ds_proxy#164 implement the same rule and its
  x-amz-content-sha256 exception). moto recomputed the signature over the signed headers only and let the rest act:
  a part URL sent back with an unsigned `x-amz-copy-source` was a 200 UploadPartCopy.
- `minio` (the local stack's rehearsal): MinIO reads only the signed headers and lets the others act
  (extractSignedHeaders, minio/minio cmd/signature-v4-utils.go), as moto does.
In both, a request that copies (`x-amz-copy-source`: CopyObject, UploadPartCopy) is also authorized for
s3:GetObject on the source with the request's own key, as S3 does (the s3:GetObject permission "to read the source
object": https://docs.aws.amazon.com/AmazonS3/latest/API/API_UploadPartCopy.html, Authentication and authorization)
and as MinIO does
(CopyObjectPartHandler and CopyObjectHandler, cmd/object-multipart-handlers.go and cmd/object-handlers.go:
checkRequestAuthType(..., policy.GetObjectAction, srcBucket, srcObject)); moto checked only the destination.

Still not rehearsed (S3 differs; tests/rehearsal/test_23_direct_transfers.py says the same): the bucket policy's
TLS-only condition (aws:SecureTransport: this endpoint is plain HTTP, and moto's IAM check does not read bucket
policies), the local stack's Docker DNS path (MinIO's network alias; here one loopback address serves server and
clients), and session tokens (X-Amz-Security-Token: the rehearsal's keys are long-term ones; a URL signed with
temporary credentials dying with them, the aws README's 10-15 minutes, is not reproduced).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import os
import sys
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

MAX_EXPIRES_SECONDS = 7 * 24 * 3600
"""S3's limit on X-Amz-Expires."""
REGION_ENV = "MOTO_S3_REGION"
DEFAULT_REGION = "us-east-1"
STORE_ENV = "MOTO_S3_STORE"
STORES = ("aws", "minio")
"""Which store's handling of unsigned headers the stand-in plays (module docstring); `aws` by default."""
UNSIGNED_ALLOWED = frozenset({"x-amz-content-sha256"})
"""The one x-amz-* header S3 takes unsigned on a presigned request."""
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


def scope_problem(credential: str, expected_region: str, amz_date: str | None = None) -> str | None:
    """Why S3 would refuse a credential (`AKID/date/region/service/aws4_request`) here; None: it would not."""
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        return f"the credential '{credential}' is malformed"
    _, date, region, service, _ = parts
    if region != expected_region:
        return f"the region '{region}' is wrong; expecting '{expected_region}'"
    if service != "s3":
        return f"the service '{service}' is wrong; expecting 's3'"
    if amz_date is not None and amz_date[:8] != date:
        return f"the date '{date}' is wrong; expecting '{amz_date[:8]}'"
    return None


def unsigned_amz_headers(signed_headers: str, headers: Any) -> list[str]:
    """The x-amz-* headers of a request that a presigned request's X-Amz-SignedHeaders does not name (S3 refuses
    them; x-amz-content-sha256 excepted)."""
    signed = {name.strip().lower() for name in signed_headers.split(";")}
    return sorted({str(name).lower() for name in headers.keys()
                   if str(name).lower().startswith("x-amz-") and str(name).lower() not in signed | UNSIGNED_ALLOWED})


def copy_source_arn(headers: Any) -> str | None:
    """The ARN of the object a request copies (`x-amz-copy-source: [/]bucket/key[?versionId=...]`), or None."""
    lower = {str(name).lower(): str(value) for name, value in headers.items()}
    source = lower.get("x-amz-copy-source")
    if not source:
        return None
    path = unquote(source.split("?", 1)[0]).lstrip("/")
    return f"arn:aws:s3:::{path}"


def install() -> None:
    """Replace moto's S3IAMRequest with one that also reads presigned (query-string) authentication and refuses a
    credential scope for another region or service."""
    from moto.iam import access_control
    from moto.s3.exceptions import S3AccessDeniedError, S3ClientError

    class AuthorizationQueryParametersError(S3ClientError):
        code = "AuthorizationQueryParametersError"

    class AuthorizationHeaderMalformed(S3ClientError):
        code = "AuthorizationHeaderMalformed"

    class HeadersNotSigned(S3ClientError):
        code = "AccessDenied"

        def __init__(self, names: list[str]):
            super().__init__("AccessDenied", "There were headers present in the request which were not signed")
            self.headers_not_signed = ", ".join(names)

    region = os.environ.get(REGION_ENV) or DEFAULT_REGION
    store = os.environ.get(STORE_ENV) or "aws"
    if store not in STORES:
        raise SystemExit(f"{STORE_ENV}={store!r}: one of {', '.join(STORES)}")
    base = access_control.S3IAMRequest

    class PresignedAwareS3IAMRequest(base):  # type: ignore[misc, valid-type]
        def __init__(self, account_id, method, path, data, body, headers, action):
            split = urlsplit(path)
            query = parse_qsl(split.query, keep_blank_values=True)
            params = dict(query)
            self._presigned = "Authorization" not in headers and all(name in params for name in SIGNED_QUERY)
            if not self._presigned:
                authorization = str(headers.get("Authorization", ""))
                if "Credential=" in authorization:
                    problem = scope_problem(authorization.split("Credential=", 1)[1].split(",", 1)[0].strip(), region)
                    if problem:
                        raise AuthorizationHeaderMalformed(
                            "AuthorizationHeaderMalformed", f"The authorization header is malformed; {problem}")
                super().__init__(account_id, method, path, data, body, headers, action)
                return
            if params["X-Amz-Algorithm"] != "AWS4-HMAC-SHA256":
                raise S3AccessDeniedError()
            problem = scope_problem(params["X-Amz-Credential"], region, params["X-Amz-Date"])
            if problem:
                raise AuthorizationQueryParametersError(
                    "AuthorizationQueryParametersError", f"Error parsing the X-Amz-Credential parameter; {problem}")
            # The parent reads the credential scope from the Authorization header: give it the query's.
            synthetic = dict(headers.items())
            synthetic["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={params['X-Amz-Credential']}, "
                                          f"SignedHeaders={params['X-Amz-SignedHeaders']}, "
                                          f"Signature={params['X-Amz-Signature']}")
            super().__init__(account_id, method, path, data, body, synthetic, action)
            self._unsigned = unsigned_amz_headers(params["X-Amz-SignedHeaders"], headers)
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
            if store == "aws" and self._unsigned:
                raise HeadersNotSigned(self._unsigned)

        def check_action_permitted(self, resource: str) -> None:
            super().check_action_permitted(resource)
            source = copy_source_arn(self._headers) if self._method.upper() == "PUT" else None
            if source is not None:  # the copy's source is read with this request's key (module docstring)
                action, self._action = self._action, "s3:GetObject"
                try:
                    super().check_action_permitted(source)
                finally:
                    self._action = action

    access_control.S3IAMRequest = PresignedAwareS3IAMRequest


def main() -> int:
    install()
    from moto.server import main as moto_main

    return moto_main(sys.argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
