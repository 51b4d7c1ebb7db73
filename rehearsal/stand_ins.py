"""The stand-ins for what a stack gets from its platform: moto for S3 (MinIO, S3), Azurite for Blob,
oidc-provider-mock for an identity provider, and self-signed TLS. Each a process of rehearsal.processes."""

from __future__ import annotations

import datetime
import importlib.util
import ipaddress
import json
import logging
import os
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Optional

from components import render
from rehearsal.ports import free_port

from rehearsal.passwords import generate_password
from rehearsal.processes import (
    REPO_ROOT,
    VENV_BIN,
    ServerUnavailable,
    Service,
    StartupError,
    base_env,
    find_node,
    http_status,
    log_tail,
)

log = logging.getLogger("rehearsal")

MOTO_S3 = REPO_ROOT / "rehearsal" / "moto_s3.py"
MANAGED_IDENTITY = REPO_ROOT / "rehearsal" / "managed_identity.py"
CONNECT_PROXY = REPO_ROOT / "rehearsal" / "connect_proxy.py"
AZURITE_DIR = REPO_ROOT / "rehearsal" / "azurite"
AZURITE_BLOB = AZURITE_DIR / "node_modules" / ".bin" / "azurite-blob"
AZURITE_SAS_SHIM = AZURITE_DIR / "sas_version_shim.js"
"""Teaches Azurite 3.35 the user-delegation SAS layout of the service version the pinned SDK signs (see the file)."""
# Azurite's well-known development account, published in Azurite's documentation (it accepts no
# other by default): not a secret, but handled like one so the real azure stack's pattern holds.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
ARTIFACT_STORES = ("s3", "azurite")



def azurite_problems() -> list[str]:
    """What the Azurite variant lacks: Node.js, the pinned Azurite (npm ci), the Blob SDK."""
    problems = []
    try:
        find_node()
    except ServerUnavailable as error:
        problems.append(str(error))
    if not AZURITE_BLOB.exists():
        folder = AZURITE_DIR.relative_to(REPO_ROOT)
        problems.append(f"{AZURITE_BLOB} not found; install Azurite: `cd {folder} && npm ci` (scripts/test does)")
    if not _importable("azure.storage.blob"):
        problems.append("azure-storage-blob is not installed; install requirements-dev.txt into the venv")
    return problems


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is missing
        return False


# --- the S3 stand-in -------------------------------------------------------------------------------


class S3StandIn:
    """moto's server mode standing in for MinIO: a private bucket, an IAM user whose only policy is
    `render.artifact_bucket_policy` (what the local platform attaches to the MinIO user, in both
    artifacts.transfer modes), the part signer whose only policy is `render.part_signer_bucket_policy` (the local
    platform's second MinIO user with artifacts.transfer direct), and IAM
    enforcement switched on once set up, so the server's key pair is really bucket-scoped.

    `store` picks how presigned requests with unsigned x-amz-* headers are answered (rehearsal/moto_s3.py): "aws"
    (S3 refuses them; the default) or "minio" (MinIO lets them act, e.g. an unsigned x-amz-copy-source turns a
    part upload into an UploadPartCopy, whose source read is authorized with the URL's key).

    moto keeps the objects in memory/spooled temp files of the moto process; its admin API
    (`/moto-api/`) is unauthenticated, which is fine on loopback for a rehearsal."""

    def __init__(self, workdir: Path, bucket: str, prefix: str = "", store: str = "aws"):
        from rehearsal.moto_s3 import STORES

        if store not in STORES:
            raise ValueError(f"store {store!r}: one of {', '.join(STORES)}")
        self.workdir = workdir
        self.bucket = bucket
        self.prefix = prefix
        self.store = store
        self.port = free_port()
        self.service: Optional[Service] = None
        self.admin_credentials: tuple[str, str] = ("", "")
        self.server_credentials: tuple[str, str] = ("", "")
        self.part_signer_credentials: tuple[str, str] = ("", "")
        self.server_user = f"{bucket}-mlflow-server"
        self.part_signer_user = f"{bucket}-mlflow-part-signer"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "S3StandIn":
        self.workdir.mkdir(parents=True, exist_ok=True)
        from rehearsal.moto_s3 import STORE_ENV

        env = {**base_env(self.workdir, self.workdir), STORE_ENV: self.store}
        # moto_server, with presigned URLs checked (rehearsal/moto_s3.py: moto's own IAM check cannot read them)
        self.service = Service("s3 (moto)", [str(VENV_BIN / "python"), str(MOTO_S3), "-H", "127.0.0.1", "-p",
                                             str(self.port)], env, self.workdir / "moto.log", cwd=self.workdir)
        self.service.start()
        deadline = time.monotonic() + 60
        while http_status(f"{self.endpoint}/moto-api/data.json") != 200:
            if not self.service.alive() or time.monotonic() > deadline:
                raise StartupError(f"moto server did not start:\n{log_tail(self.service.log_path)}")
            time.sleep(0.2)
        self._provision()
        return self

    def client(self, service: str, credentials: Optional[tuple[str, str]] = None) -> Any:
        import boto3
        from botocore.config import Config

        key, secret = credentials or self.admin_credentials
        return boto3.client(service, endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=key, aws_secret_access_key=secret,
                            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2},
                                          signature_version="s3v4"))  # presigned URLs too, as MLflow's server signs

    def _provision(self) -> None:
        setup = ("rehearsal-setup", "rehearsal-setup")  # accepted only until enforcement is on
        iam = self.client("iam", setup)
        s3 = self.client("s3", setup)
        # An administrator standing in for MinIO's root user (the launcher's and the tests' key).
        iam.create_user(UserName="rehearsal-admin")
        admin_policy = iam.create_policy(PolicyName="rehearsal-admin", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        iam.attach_user_policy(UserName="rehearsal-admin", PolicyArn=admin_policy["Policy"]["Arn"])
        key = iam.create_access_key(UserName="rehearsal-admin")["AccessKey"]
        self.admin_credentials = (key["AccessKeyId"], key["SecretAccessKey"])
        # The bucket, private, as the local platform creates it on MinIO.
        s3.create_bucket(Bucket=self.bucket, ACL="private")
        s3.put_public_access_block(Bucket=self.bucket, PublicAccessBlockConfiguration={
            "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True})
        # The server's user: only the rendered bucket policy (minio.IamPolicy + attachment); both transfer
        # modes render the same one (exactly MLflow's actions: direct URLs are signed with it).
        self.server_credentials = self._server_user(iam, self.server_user)
        # The part signer (local platform, artifacts.transfer direct): only render.part_signer_bucket_policy.
        iam.create_user(UserName=self.part_signer_user)
        signer_policy = iam.create_policy(PolicyName=self.part_signer_user, PolicyDocument=json.dumps(
            render.part_signer_bucket_policy(self.bucket, self.prefix)))
        iam.attach_user_policy(UserName=self.part_signer_user, PolicyArn=signer_policy["Policy"]["Arn"])
        signer_key = iam.create_access_key(UserName=self.part_signer_user)["AccessKey"]
        self.part_signer_credentials = (signer_key["AccessKeyId"], signer_key["SecretAccessKey"])
        # From now on every request must be signed by a known key and allowed by its policies.
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset-auth", data=b"0", method="POST",
                                         headers={"Content-Type": "text/plain"})
        with urllib.request.urlopen(request, timeout=10) as response:
            if response.status != 200:
                raise StartupError("could not switch on IAM enforcement in moto")

    def _server_user(self, iam: Any, name: str) -> tuple[str, str]:
        iam.create_user(UserName=name)
        policy = iam.create_policy(PolicyName=name, PolicyDocument=json.dumps(
            render.artifact_bucket_policy(self.bucket, self.prefix)))
        iam.attach_user_policy(UserName=name, PolicyArn=policy["Policy"]["Arn"])
        # moto-only: moto authorizes a multi-object delete (POST ?delete, what MLflow's
        # delete_artifacts uses) as s3:DeleteObject on the *bucket* ARN, where AWS and MinIO check
        # each object ARN (which the rendered policy allows). This grants nothing on AWS/MinIO.
        iam.put_user_policy(UserName=name, PolicyName="moto-multi-delete-quirk",
                            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{
                                "Effect": "Allow", "Action": ["s3:DeleteObject"],
                                "Resource": [f"arn:aws:s3:::{self.bucket}"]}]}))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]

    def credentials_for(self, direct: bool) -> tuple[str, str]:
        """The server's key pair for a stack with artifacts.transfer direct or proxied: one, as both modes
        render one bucket policy."""
        return self.server_credentials

    def stop(self) -> None:
        if self.service:
            self.service.stop()


# --- the Azure Blob stand-in -----------------------------------------------------------------------


class AzuriteStandIn:
    """Azurite's Blob service standing in for the azure stack's storage account: a private container
    in Azurite's development account, kept on disk under `workdir`. A stopped Azurite keeps its blobs;
    one that crashed loses what it wrote in its last 5 s (it saves its metadata every 5 s).

    The azure stack gives the server a managed identity (AZURE_CLIENT_ID) and no key. By default
    (`identity=False`) Azurite knows no identities, so the server gets a connection string with the
    account key instead, which MLflow's Azure Blob repository tries first. With `identity=True` Azurite
    runs as the real account does for an identity: HTTPS (a certificate for the account's public host name,
    `<account>.blob.core.windows.net`, which the server and clients trust through REQUESTS_CA_BUNDLE) and
    OAuth (`--oauth basic`: bearer tokens from ManagedIdentityStandIn, user-delegation keys and the SAS
    signed with them), reached under the public name through StorageNameProxy. Azurite's telemetry (on by
    default) is switched off."""

    def __init__(self, workdir: Path, container: str, prefix: str = "", identity: bool = False):
        self.workdir = workdir
        self.container = container
        self.prefix = prefix
        self.account = AZURITE_ACCOUNT
        self.identity = identity
        self.port = free_port()
        self.service: Optional[Service] = None
        self.certificate_path = workdir / "tls" / "blob.crt"
        self.trust_bundle = workdir / "tls" / "trust-bundle.pem"
        """The public CAs plus Azurite's certificate: what REQUESTS_CA_BUNDLE names (identity only)."""

    @property
    def scheme(self) -> str:
        return "https" if self.identity else "http"

    @property
    def endpoint(self) -> str:
        """The account's Blob endpoint on loopback; Azurite serves accounts path-style."""
        return f"{self.scheme}://127.0.0.1:{self.port}/{self.account}"

    @property
    def public_host(self) -> str:
        """The host name MLflow's repository builds from the wasbs:// URI (with an identity, it always uses it)."""
        return f"{self.account}.blob.core.windows.net"

    @property
    def connection_string(self) -> str:
        """AZURE_STORAGE_CONNECTION_STRING for this endpoint: holds the key, so only ever in an env var."""
        return (f"DefaultEndpointsProtocol={self.scheme};AccountName={self.account};AccountKey={AZURITE_ACCOUNT_KEY};"
                f"BlobEndpoint={self.endpoint};")

    def start(self) -> "AzuriteStandIn":
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.identity:
            self._write_certificate()
        self.service = Service("blob (azurite)", self._argv(), base_env(self.workdir, self.workdir),
                               self.workdir / "azurite.log", cwd=self.workdir)
        self._launch()
        self._provision()
        return self

    def _write_certificate(self) -> None:
        """A certificate for the public host name (and 127.0.0.1, for the rehearsal's own key-signed client)."""
        import certifi

        if self.certificate_path.exists():  # restarted on the same work directory
            return
        certificate, key = self_signed_certificate((self.public_host, "127.0.0.1"), 30)
        self.certificate_path.parent.mkdir(parents=True, exist_ok=True)
        self.certificate_path.write_text(certificate)
        key_path = self.certificate_path.with_suffix(".key")
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(key)
        self.trust_bundle.write_text(Path(certifi.where()).read_text() + "\n" + certificate)

    def _argv(self) -> list[str]:
        """Blob service only, loopback, on disk; quiet (no access log) and no telemetry. The newest
        SDKs speak API versions newer than Azurite knows, hence --skipApiVersionCheck."""
        shim = ["-r", str(AZURITE_SAS_SHIM)] if self.identity else []
        argv = [find_node(), *shim, str(AZURITE_BLOB), "--blobHost", "127.0.0.1", "--blobPort", str(self.port),
                "--location", str(self.workdir / "data"), "--skipApiVersionCheck", "--disableTelemetry", "--silent"]
        if self.identity:
            argv += ["--oauth", "basic", "--cert", str(self.certificate_path),
                     "--key", str(self.certificate_path.with_suffix(".key"))]
        return argv

    def _launch(self, timeout: float = 60.0) -> None:
        """Start the process and wait until it answers HTTP (unsigned requests get 403: it listens)."""
        assert self.service is not None
        self.service.start()
        context = ssl._create_unverified_context() if self.identity else None
        deadline = time.monotonic() + timeout
        while http_status(f"{self.endpoint}?comp=properties&restype=service", context=context) is None:
            if not self.service.alive() or time.monotonic() > deadline:
                raise StartupError(f"Azurite did not start:\n{log_tail(self.service.log_path)}")
            time.sleep(0.2)

    def client(self) -> Any:
        """A BlobServiceClient with the development account's key (the launcher's and the tests' access).
        The SDK logs every request and response at INFO; the rehearsal's log is for its own steps."""
        from azure.storage.blob import BlobServiceClient

        logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)
        verify: Any = str(self.trust_bundle) if self.identity else True
        return BlobServiceClient.from_connection_string(self.connection_string, retry_total=2,
                                                        connection_verify=verify)

    def _provision(self) -> None:
        """The container, private (no anonymous access), as the azure stack creates it."""
        from azure.core.exceptions import ResourceExistsError

        try:
            self.client().create_container(self.container, public_access=None)
        except ResourceExistsError:  # restarted on the same location
            pass

    def restart(self) -> None:
        """Start again on the same port and location (whatever it left in its group stopped first);
        the container is made again if a crash lost it."""
        assert self.service is not None
        self.service.stop(timeout=10)
        self._launch()
        self._provision()

    def stop(self) -> None:
        if self.service:
            self.service.stop()


class ManagedIdentityStandIn:
    """The managed identity endpoint Container Apps gives a container (rehearsal/managed_identity.py): the
    server's user-assigned identity (a client id, a principal id, the tenant) gets Azure Storage tokens from
    IDENTITY_ENDPOINT with the IDENTITY_HEADER secret, as azure-identity's ManagedIdentityCredential asks."""

    def __init__(self, workdir: Path):
        import uuid

        self.workdir = workdir
        self.port = free_port()
        self.client_id = str(uuid.uuid4())
        self.principal_id = str(uuid.uuid4())
        self.tenant_id = str(uuid.uuid4())
        self.header_secret = generate_password(32)
        self.service: Optional[Service] = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/msi/token"

    def container_env(self) -> dict[str, str]:
        """What Container Apps puts into the environment of a container with a managed identity."""
        return {"IDENTITY_ENDPOINT": self.endpoint, "IDENTITY_HEADER": self.header_secret}

    def start(self, timeout: float = 30.0) -> "ManagedIdentityStandIn":
        self.workdir.mkdir(parents=True, exist_ok=True)
        secret_file = self.workdir / "identity-header"
        fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(self.header_secret)
        argv = [str(VENV_BIN / "python"), str(MANAGED_IDENTITY), "--port", str(self.port), "--secret-file",
                str(secret_file), "--client-id", self.client_id, "--principal-id", self.principal_id,
                "--tenant-id", self.tenant_id]
        self.service = Service("managed identity endpoint", argv, base_env(self.workdir, self.workdir),
                               self.workdir / "identity.log", cwd=self.workdir)
        self.service.start()
        deadline = time.monotonic() + timeout
        while http_status(self.endpoint) is None:  # 401 without the header: it listens
            if not self.service.alive() or time.monotonic() > deadline:
                raise StartupError(f"managed identity endpoint did not start:\n{log_tail(self.service.log_path)}")
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        if self.service:
            self.service.stop()


class StorageNameProxy:
    """Where the storage account's public host name leads (rehearsal/connect_proxy.py): an HTTP CONNECT
    proxy that tunnels `<account>.blob.core.windows.net:443` to Azurite and refuses everything else. The
    server and the clients get it as HTTPS_PROXY (loopback exempt through NO_PROXY)."""

    def __init__(self, workdir: Path, routes: dict[str, tuple[str, int]]):
        self.workdir = workdir
        self.routes = routes
        self.port = free_port()
        self.service: Optional[Service] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, trust_bundle: Path) -> dict[str, str]:
        """The network a client needs for the public name: the proxy, loopback direct, Azurite's certificate."""
        return {"HTTPS_PROXY": self.url, "NO_PROXY": "127.0.0.1,localhost", "REQUESTS_CA_BUNDLE": str(trust_bundle)}

    def start(self, timeout: float = 30.0) -> "StorageNameProxy":
        import socket

        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [str(VENV_BIN / "python"), str(CONNECT_PROXY), "--port", str(self.port)]
        for name, (host, port) in self.routes.items():
            argv += ["--route", f"{name}={host}:{port}"]
        self.service = Service("storage name proxy", argv, base_env(self.workdir, self.workdir),
                               self.workdir / "proxy.log", cwd=self.workdir)
        self.service.start()
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError as error:
                if not self.service.alive() or time.monotonic() > deadline:
                    message = f"storage name proxy did not start:\n{log_tail(self.service.log_path)}"
                    raise StartupError(message) from error
                time.sleep(0.1)

    def stop(self) -> None:
        if self.service:
            self.service.stop()


class OidcProviderStandIn:
    """oidc-provider-mock (PyPI) standing in for the company's identity provider (auth.mode oidc):
    any client id and secret are accepted, users sign in by typing their subject into its form
    (or a POST of `sub`), and `PUT /users/<sub>` with claims adds one. It starts with one user per
    role the stack's config knows: an admin, a user and someone in no allowed group."""

    def __init__(self, workdir: Path, admin_group: str, user_group: str):
        self.workdir = workdir
        self.port = free_port()
        self.client_id = "mlflow-rehearsal"
        self.client_secret = generate_password()
        self.users = {
            "alice": {"sub": "alice", "email": "alice@example.com", "name": "Alice Admin", "groups": [admin_group]},
            "bob": {"sub": "bob", "email": "bob@example.com", "name": "Bob User", "groups": [user_group]},
            "eve": {"sub": "eve", "email": "eve@example.com", "name": "Eve Outsider", "groups": ["contractors"]},
        }
        self.service: Optional[Service] = None

    @property
    def issuer(self) -> str:
        """Where clients reach it; the mock names itself after the host it is asked on, so always this one."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def start(self, timeout: float = 60.0) -> "OidcProviderStandIn":
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = [str(VENV_BIN / "oidc-provider-mock"), "--host", "127.0.0.1", "--port", str(self.port)]
        for claims in self.users.values():
            argv += ["--user-claims", json.dumps(claims)]
        self.service = Service("oidc provider", argv, base_env(self.workdir, self.workdir),
                               self.workdir / "oidc-provider.log", cwd=self.workdir)
        self.service.start()
        deadline = time.monotonic() + timeout
        while http_status(self.discovery_url) != 200:
            if not self.service.alive() or time.monotonic() > deadline:
                raise StartupError(f"oidc-provider-mock did not start:\n{log_tail(self.service.log_path)}")
            time.sleep(0.2)
        log.info("oidc provider at %s (users %s)", self.issuer, ", ".join(self.users))
        return self

    def stop(self) -> None:
        if self.service:
            self.service.stop()


# --- TLS -----------------------------------------------------------------------------------------


def self_signed_certificate(hostnames: tuple[str, ...], validity_days: int) -> tuple[str, str]:
    """(certificate PEM, key PEM) equivalent to the ReverseProxy's pulumi-tls resources: ECDSA
    P-256, CN = first host name, DNS names for names, IP SANs for addresses (127.0.0.1 if none),
    key usages key_encipherment, digital_signature, server_auth; not a CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0]),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "MLflow platform")])
    dns_names, ips = render.certificate_names(hostnames)
    sans = [x509.DNSName(host) for host in dns_names] + [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=validity_days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True, content_commitment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption()).decode()
    return cert_pem, key_pem

