"""The direct-transfer rehearsal's own stand-ins, without servers: moto's presigned-URL check
(rehearsal/moto_s3.py) recomputes botocore's signatures exactly and tells a changed URL apart; the managed
identity stand-in's token has the claims Azurite checks; the CONNECT proxy's routes parse."""

from __future__ import annotations

import base64
import json
import urllib.parse

import pytest

from rehearsal.connect_proxy import parse_route
from rehearsal.managed_identity import STORAGE_RESOURCE, storage_token
from rehearsal.moto_s3 import presigned_string_to_sign, sigv4_signature

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def _presigned(method: str, key: str, **params) -> str:
    import boto3
    from botocore.config import Config

    s3 = boto3.client("s3", endpoint_url="http://127.0.0.1:9000", region_name="us-east-1",
                      aws_access_key_id="AKIAIOSFODNN7EXAMPLE", aws_secret_access_key=SECRET,
                      config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
    return s3.generate_presigned_url(method, Params={"Bucket": "mlflow-artifacts", "Key": key, **params},
                                     ExpiresIn=300)


def _check(url: str, method: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    string_to_sign, signature = presigned_string_to_sign(method, parts.path, query, {"Host": parts.netloc})
    scope = dict(query)["X-Amz-Credential"].split("/", 1)[1]
    return sigv4_signature(SECRET, scope, string_to_sign) == signature


@pytest.mark.parametrize(("method", "operation", "key", "params"), [
    ("GET", "get_object", "1/abc/artifacts/model/weights.bin", {}),
    ("PUT", "upload_part", "1/abc/artifacts/a file+with=odd&chars.bin", {"UploadId": "u/p=1", "PartNumber": 3}),
    ("GET", "get_object", "workspaces/team-a/7/r/artifacts/ü.txt", {}),
])
def test_botocores_presigned_urls_verify(method, operation, key, params):
    assert _check(_presigned(operation, key, **params), method)


def test_a_changed_url_does_not_verify():
    url = _presigned("get_object", "1/abc/artifacts/notes.txt")
    assert _check(url, "GET")
    assert not _check(url.replace("notes.txt", "other.txt"), "GET")
    assert not _check(url, "PUT")
    assert not _check(url.replace("X-Amz-Expires=300", "X-Amz-Expires=3000"), "GET")


def test_the_identity_token_has_what_azurite_checks():
    token = storage_token(b"k" * 32, "client", "principal", "tenant", now=1_000_000)
    header, claims, _ = token.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    assert decoded["aud"] == STORAGE_RESOURCE and decoded["iss"] == "https://sts.windows.net/tenant/"
    assert (decoded["oid"], decoded["tid"], decoded["appid"]) == ("principal", "tenant", "client")
    assert decoded["nbf"] == decoded["iat"] == 1_000_000 < decoded["exp"]


def test_proxy_routes_parse_and_refuse_nonsense():
    assert parse_route("devstoreaccount1.blob.core.windows.net:443=127.0.0.1:10000") == (
        "devstoreaccount1.blob.core.windows.net:443", ("127.0.0.1", 10000))
    import argparse

    for bad in ("devstoreaccount1=127.0.0.1:1", "a:443=127.0.0.1", "a:443"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_route(bad)
