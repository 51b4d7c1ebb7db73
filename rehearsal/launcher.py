"""Start the rendered local stack natively: PostgreSQL, an S3 (or Azure Blob) stand-in, MLflow, Nginx.

Everything the components render is used as is: the server's command and env come from
`render.tracking_server_spec`, the schema step from `render.schema_upgrade_spec`, nginx.conf and the
file list from `render.reverse_proxy_spec`, the htpasswd line from `render.htpasswd_line` (with the
hash scheme of `proxy.passwordHash`), the
database URI from `render.backend_store_uri`, the client lines from `render.client_env_lines`.
The only deviations from a container deployment:

* image paths are mapped to local binaries (`mlflow`/`python` -> this venv, `nginx` -> Debian's), and
  the image's PYTHONPATH (/opt/mlflow-platform: the migration tool, mlflow_guard and its entry points)
  to links into this repository (IMAGE_PLATFORM_LAYOUT);
* the server binds 127.0.0.1 on a free port instead of 0.0.0.0:5000 (`dataclasses.replace`);
* Nginx listens on 127.0.0.1:<port> and its file paths live in a temporary directory;
* the S3 endpoint is moto's server mode instead of MinIO, the database is a private initdb cluster;
* with `artifacts="azurite"`, the azure stack's Blob container is Azurite's (the emulator, from
  rehearsal/azurite), reached with a connection string instead of the managed identity;
* with `auth.mode: oidc` and no `auth.oidc.discoveryUrl`, the identity provider is
  oidc-provider-mock on a loopback port, with three users (OidcProviderStandIn);
* runtime files (the auth app's ini) are written under the work directory, and the env var that
  names the file points there.

Every process is started in its own process group and stopped by its PID (the group led by it),
in reverse order, by `RehearsalStack.stop()`.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.util
import ipaddress
import json
import logging
import os
import secrets
import shutil
import signal
import ssl
import string
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Mapping, Optional

from components import render
from components.config import StackConfig, auth_database_name, parse_stack_config
from components.names import URI_PASSWORD_SPECIALS
from components.spec import ContainerSpec
from rehearsal.ports import bindable, free_port
from rehearsal.postgres import PostgresCluster, PostgresUnavailable

log = logging.getLogger("rehearsal")

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
AZURITE_DIR = REPO_ROOT / "rehearsal" / "azurite"
AZURITE_BLOB = AZURITE_DIR / "node_modules" / ".bin" / "azurite-blob"
# Azurite's well-known development account, published in Azurite's documentation (it accepts no
# other by default): not a secret, but handled like one so the real azure stack's pattern holds.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
ARTIFACT_STORES = ("s3", "azurite")

# The generated passwords use the components' alphabet (MetadataStore / ReverseProxy
# override_special) and always contain every URL-reserved character that could break a URI.
PASSWORD_SPECIALS = URI_PASSWORD_SPECIALS
URL_RESERVED = "@:/?#%&+"


class ServerUnavailable(RuntimeError):
    """A server binary the rehearsal needs (PostgreSQL, Nginx) is not installed."""


class StartupError(RuntimeError):
    """A process did not come up; the message carries the tail of its log."""


# --- helpers -------------------------------------------------------------------------------------


def generate_password(length: int = 32) -> str:
    """Like pulumi-random's RandomPassword with override_special, but guaranteed to hold each of
    @:/?#%&+ (the characters that break URIs and htpasswd handling when not encoded)."""
    alphabet = string.ascii_letters + string.digits + PASSWORD_SPECIALS
    chars = list(URL_RESERVED)
    for pool in (string.ascii_uppercase, string.ascii_lowercase, string.digits):
        chars += [secrets.choice(pool) for _ in range(2)]
    while len(chars) < length:
        chars.append(secrets.choice(alphabet))
    secrets.SystemRandom().shuffle(chars)
    return "".join(chars)


def password_hash(cfg: StackConfig, password: str) -> str:
    """The htpasswd hash the ReverseProxy renders for `cfg.proxy.passwordHash`: render.ssha_hash with
    8 random bytes of salt (pulumi-random's RandomBytes), or bcrypt as pulumi-random makes it."""
    if cfg.proxy.password_hash == "ssha":
        return render.ssha_hash(password, secrets.token_bytes(8))
    return bcrypt_hash(password)


def bcrypt_hash(password: str) -> str:
    """What pulumi-random's RandomPassword.bcrypt_hash holds: bcrypt, $2a$, cost 10."""
    import bcrypt

    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(10, prefix=b"2a")).decode()


def find_nginx() -> str:
    for candidate in (shutil.which("nginx"), "/usr/sbin/nginx"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise ServerUnavailable("nginx not found; install Debian's `nginx` package")


def find_node() -> str:
    """Azurite is a Node.js program, run as `node <script>` by absolute path: a `node` found on the
    caller's PATH (nvm's, say) works under the servers' fixed PATH too."""
    node = shutil.which("node")
    if not node:
        raise ServerUnavailable("node not found; install Node.js (Azurite 3.35 runs on Node 10 and later)")
    return node


def check_prerequisites(artifacts: str = "s3") -> None:
    """Raise ServerUnavailable naming what is missing (PostgreSQL server binaries, Nginx, and the
    artifact store's stand-in: moto for `s3`; Node.js, Azurite and azure-storage-blob for `azurite`)."""
    from rehearsal.postgres import find_postgres_bindir

    if artifacts not in ARTIFACT_STORES:
        raise ValueError(f"artifacts must be one of {ARTIFACT_STORES}, got {artifacts!r}")
    problems = []
    try:
        find_postgres_bindir()
    except PostgresUnavailable as error:
        problems.append(str(error))
    try:
        find_nginx()
    except ServerUnavailable as error:
        problems.append(str(error))
    tools = ("mlflow", "moto_server") if artifacts == "s3" else ("mlflow",)
    for tool in tools:
        if not (VENV_BIN / tool).exists():
            problems.append(f"{VENV_BIN / tool} not found; install requirements-dev.txt into the venv")
    if artifacts == "azurite":
        problems += _azurite_problems()
    if problems:
        raise ServerUnavailable("; ".join(problems))


def _azurite_problems() -> list[str]:
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


def image_binary(name: str) -> str:
    """The local binary standing in for a program on the image's PATH."""
    if name == "python":
        return sys.executable
    if name == "mlflow":
        return str(VENV_BIN / "mlflow")
    if name == "nginx":
        return find_nginx()
    if name == "sh":
        return "/bin/sh"
    raise ValueError(f"no local mapping for image binary {name!r}")


def local_command(command: tuple[str, ...]) -> list[str]:
    """A rendered command with only its program (an image path) mapped to the local binary."""
    return [image_binary(command[0]), *command[1:]]


IMAGE_PLATFORM_LAYOUT = {
    "migration": "migration",
    "mlflow_guard": "mlflow_guard",
    "mlflow_platform_guard-1.0.0.dist-info": "mlflow_guard/dist-info",
}
"""The server image's /opt/mlflow-platform (its PYTHONPATH; docker/mlflow/Dockerfile copies the same):
name there -> path in this repository. The dist-info registers mlflow_guard's apps under MLflow's
--app-name values, so the rehearsal's `mlflow server` runs the guarded auth apps as the image does."""


def image_python_path(workdir: Path) -> str:
    """The image's PYTHONPATH, laid out under `workdir` as links into this repository."""
    platform = workdir / "mlflow-platform"
    platform.mkdir(parents=True, exist_ok=True)
    for name, source in IMAGE_PLATFORM_LAYOUT.items():
        link = platform / name
        if not link.is_symlink():
            link.symlink_to(REPO_ROOT / source, target_is_directory=True)
    return str(platform)


def base_env(home: Path, tmp: Path) -> dict[str, str]:
    """What an image provides besides the spec's env: PATH, HOME, locale. Nothing is inherited
    from the caller (no stray AWS_* or MLFLOW_* settings leak into the servers)."""
    return {
        "PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        "HOME": str(home),
        "TMPDIR": str(tmp),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def _http_status(url: str, timeout: float = 3.0, context: Optional[ssl.SSLContext] = None) -> Optional[int]:
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (OSError, urllib.error.URLError):
        return None


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --- processes -----------------------------------------------------------------------------------


class Service:
    """One long-running process in its own process group, logging to a file, stopped by PID."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log_path: Path,
                 cwd: Optional[Path] = None):
        self.name = name
        self.argv = argv
        self.env = dict(env)
        self.log_path = log_path
        self.cwd = cwd
        self.process: Optional[subprocess.Popen] = None
        self.expected_running = False

    @property
    def pid(self) -> Optional[int]:
        return self.process.pid if self.process else None

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        if self.alive():
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                self.argv, env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL,
                stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.expected_running = True
        log.info("started %s (pid %s)", self.name, self.process.pid)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to the process group this process leads (also when the leader itself is gone
        and left children behind, e.g. uvicorn or nginx workers), SIGKILL after `timeout`."""
        self.expected_running = False
        process = self.process
        if process is None:
            return
        deadline = time.monotonic() + timeout
        self._signal_group(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s (pid %s) ignored SIGTERM for %ss; killing", self.name, process.pid, timeout)
        while self._group_alive(process.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        self._signal_group(process.pid, signal.SIGKILL)
        process.wait()
        log.info("stopped %s (pid %s, exit %s)", self.name, process.pid, process.returncode)

    @staticmethod
    def _group_alive(pgid: int) -> bool:
        try:
            os.killpg(pgid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True

    @staticmethod
    def _signal_group(pgid: int, sig: int) -> None:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def tree_pids(self) -> list[int]:
        """This process and its descendants (for RSS sampling)."""
        if not self.alive():
            return []
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
        result, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            result.append(pid)
            todo.extend(children.get(pid, []))
        return result

    def rss_bytes(self) -> int:
        """Resident set size of the whole process tree."""
        total = 0
        for pid in self.tree_pids():
            try:
                with open(f"/proc/{pid}/status") as status:
                    for line in status:
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1]) * 1024
                            break
            except OSError:
                continue
        return total


# --- the S3 stand-in -------------------------------------------------------------------------------


class S3StandIn:
    """moto's server mode standing in for MinIO: a private bucket, an IAM user whose only policy is
    `render.artifact_bucket_policy` (what the local platform attaches to the MinIO user), and IAM
    enforcement switched on once set up, so the server's key pair is really bucket-scoped.

    moto keeps the objects in memory/spooled temp files of the moto process; its admin API
    (`/moto-api/`) is unauthenticated, which is fine on loopback for a rehearsal."""

    def __init__(self, workdir: Path, bucket: str, prefix: str = ""):
        self.workdir = workdir
        self.bucket = bucket
        self.prefix = prefix
        self.port = free_port()
        self.service: Optional[Service] = None
        self.admin_credentials: tuple[str, str] = ("", "")
        self.server_credentials: tuple[str, str] = ("", "")
        self.server_user = f"{bucket}-mlflow-server"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "S3StandIn":
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = base_env(self.workdir, self.workdir)
        self.service = Service("s3 (moto)", [str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
                               env, self.workdir / "moto.log", cwd=self.workdir)
        self.service.start()
        deadline = time.monotonic() + 60
        while _http_status(f"{self.endpoint}/moto-api/data.json") != 200:
            if not self.service.alive() or time.monotonic() > deadline:
                raise StartupError(f"moto server did not start:\n{_tail(self.service.log_path)}")
            time.sleep(0.2)
        self._provision()
        return self

    def client(self, service: str, credentials: Optional[tuple[str, str]] = None) -> Any:
        import boto3
        from botocore.config import Config

        key, secret = credentials or self.admin_credentials
        return boto3.client(service, endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=key, aws_secret_access_key=secret,
                            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}))

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
        # The server's user: only the rendered bucket policy (minio.IamPolicy + attachment).
        iam.create_user(UserName=self.server_user)
        policy = iam.create_policy(PolicyName=self.server_user, PolicyDocument=json.dumps(
            render.artifact_bucket_policy(self.bucket, self.prefix)))
        iam.attach_user_policy(UserName=self.server_user, PolicyArn=policy["Policy"]["Arn"])
        # moto-only: moto authorizes a multi-object delete (POST ?delete, what MLflow's
        # delete_artifacts uses) as s3:DeleteObject on the *bucket* ARN, where AWS and MinIO check
        # each object ARN (which the rendered policy allows). This grants nothing on AWS/MinIO.
        iam.put_user_policy(UserName=self.server_user, PolicyName="moto-multi-delete-quirk",
                            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{
                                "Effect": "Allow", "Action": ["s3:DeleteObject"],
                                "Resource": [f"arn:aws:s3:::{self.bucket}"]}]}))
        key = iam.create_access_key(UserName=self.server_user)["AccessKey"]
        self.server_credentials = (key["AccessKeyId"], key["SecretAccessKey"])
        # From now on every request must be signed by a known key and allowed by its policies.
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset-auth", data=b"0", method="POST",
                                         headers={"Content-Type": "text/plain"})
        with urllib.request.urlopen(request, timeout=10) as response:
            if response.status != 200:
                raise StartupError("could not switch on IAM enforcement in moto")

    def stop(self) -> None:
        if self.service:
            self.service.stop()


# --- the Azure Blob stand-in -----------------------------------------------------------------------


class AzuriteStandIn:
    """Azurite's Blob service standing in for the azure stack's storage account: a private container
    in Azurite's development account, kept on disk under `workdir`. A stopped Azurite keeps its blobs;
    one that crashed loses what it wrote in its last 5 s (it saves its metadata every 5 s).

    The azure stack gives the server a managed identity (AZURE_CLIENT_ID) and no key. Azurite knows
    no identities, so the server gets a connection string with the account key instead, which MLflow's
    Azure Blob repository tries first. Azurite's telemetry (on by default) is switched off."""

    def __init__(self, workdir: Path, container: str, prefix: str = ""):
        self.workdir = workdir
        self.container = container
        self.prefix = prefix
        self.account = AZURITE_ACCOUNT
        self.port = free_port()
        self.service: Optional[Service] = None

    @property
    def endpoint(self) -> str:
        """The account's Blob endpoint; Azurite serves accounts path-style."""
        return f"http://127.0.0.1:{self.port}/{self.account}"

    @property
    def connection_string(self) -> str:
        """AZURE_STORAGE_CONNECTION_STRING for this endpoint: holds the key, so only ever in an env var."""
        return (f"DefaultEndpointsProtocol=http;AccountName={self.account};AccountKey={AZURITE_ACCOUNT_KEY};"
                f"BlobEndpoint={self.endpoint};")

    def start(self) -> "AzuriteStandIn":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.service = Service("blob (azurite)", self._argv(), base_env(self.workdir, self.workdir),
                               self.workdir / "azurite.log", cwd=self.workdir)
        self._launch()
        self._provision()
        return self

    def _argv(self) -> list[str]:
        """Blob service only, loopback, on disk; quiet (no access log) and no telemetry. The newest
        SDKs speak API versions newer than Azurite knows, hence --skipApiVersionCheck."""
        return [find_node(), str(AZURITE_BLOB), "--blobHost", "127.0.0.1", "--blobPort", str(self.port),
                "--location", str(self.workdir / "data"), "--skipApiVersionCheck", "--disableTelemetry", "--silent"]

    def _launch(self, timeout: float = 60.0) -> None:
        """Start the process and wait until it answers HTTP (unsigned requests get 403: it listens)."""
        assert self.service is not None
        self.service.start()
        deadline = time.monotonic() + timeout
        while _http_status(f"{self.endpoint}?comp=properties&restype=service") is None:
            if not self.service.alive() or time.monotonic() > deadline:
                raise StartupError(f"Azurite did not start:\n{_tail(self.service.log_path)}")
            time.sleep(0.2)

    def client(self) -> Any:
        """A BlobServiceClient with the development account's key (the launcher's and the tests' access).
        The SDK logs every request and response at INFO; the rehearsal's log is for its own steps."""
        from azure.storage.blob import BlobServiceClient

        logging.getLogger("azure.core.pipeline.policies.http_logging_policy").setLevel(logging.WARNING)
        return BlobServiceClient.from_connection_string(self.connection_string, retry_total=2)

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
        while _http_status(self.discovery_url) != 200:
            if not self.service.alive() or time.monotonic() > deadline:
                raise StartupError(f"oidc-provider-mock did not start:\n{_tail(self.service.log_path)}")
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


# --- MLflow server -------------------------------------------------------------------------------


class TrackingServerProcess:
    """`mlflow server` from the TrackingServer component's rendered spec."""

    def __init__(self, name: str, settings: render.TrackingServerSettings, secret_env: Mapping[str, str],
                 workdir: Path, port: Optional[int] = None, runtime_files: Optional[Mapping[str, str]] = None):
        self.name = name
        # The only deviations: bind loopback, a free port (the container's is 5000), runtime files
        # under the work directory.
        self.settings = dataclasses.replace(settings, bind_host="127.0.0.1", port=port or free_port())
        if settings.metrics_dir:  # one per server: the rehearsal runs several on one machine
            self.settings = dataclasses.replace(self.settings, metrics_dir=str(workdir / "prometheus"))
        self.spec = render.tracking_server_spec(self.settings)
        missing = set(self.spec.secret_env_names) ^ set(secret_env)
        if missing:
            raise ValueError(f"secret env does not match the spec's secret_env_names: {sorted(missing)}")
        runtime_files = dict(runtime_files or {})
        if set(runtime_files) != set(self.spec.runtime_file_paths):
            raise ValueError(f"runtime files {sorted(runtime_files)} != spec's {sorted(self.spec.runtime_file_paths)}")
        self.workdir = workdir
        home, tmp, files = workdir / "home", workdir / "tmp", workdir / "files"
        for path in (home, tmp, files):
            path.mkdir(parents=True, exist_ok=True)
        moved: dict[str, str] = {}
        for path, content in runtime_files.items():
            local = files / Path(path).name
            fd = os.open(local, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(content)
            moved[path] = str(local)
        plain = {key: moved.get(value, value) for key, value in self.spec.env.items()}
        env = {**base_env(home, tmp), "PYTHONPATH": image_python_path(workdir), **plain, **secret_env}
        self.service = Service(name, local_command(self.spec.command), env, workdir / "server.log", cwd=home)

    @property
    def port(self) -> int:
        return self.settings.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def health_url(self) -> str:
        assert self.spec.health_check is not None
        return f"http://127.0.0.1:{self.spec.health_check.port}{self.spec.health_check.http_path}"

    def start(self, timeout: float = 180.0) -> None:
        self.service.start()
        self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while _http_status(self.health_url) != 200:
            if not self.service.alive():
                raise StartupError(f"{self.name} exited ({self.service.process.returncode}):\n"
                                   f"{_tail(self.service.log_path)}")
            if time.monotonic() > deadline:
                raise StartupError(f"{self.name} not healthy after {timeout}s:\n{_tail(self.service.log_path)}")
            time.sleep(0.25)
        log.info("%s healthy at %s", self.name, self.health_url)

    def stop(self) -> None:
        self.service.stop()

    def restart(self, down_seconds: float = 0.0) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()


def run_schema_upgrade(settings: render.TrackingServerSettings, secret_env: Mapping[str, str], workdir: Path) -> str:
    """The one-off step the TrackingServer runs before the server (same command and env)."""
    return run_step(render.schema_upgrade_spec(settings), secret_env, workdir)


def run_step(spec: ContainerSpec, secret_env: Mapping[str, str], workdir: Path) -> str:
    """One of the TrackingServer's one-off steps, run to completion (its command and env)."""
    home, tmp = workdir / "home", workdir / "tmp"
    for path in (home, tmp):
        path.mkdir(parents=True, exist_ok=True)
    env = {**base_env(home, tmp), "PYTHONPATH": image_python_path(workdir), **spec.env,
           **{name: secret_env[name] for name in spec.secret_env_names}}
    result = subprocess.run(local_command(spec.command), env=env, cwd=home, capture_output=True, text=True,
                            timeout=600)
    (workdir / f"{spec.name}.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise StartupError(f"{spec.name} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result.stdout + result.stderr


# --- Nginx ---------------------------------------------------------------------------------------


class ProxyProcess:
    """Nginx from the ReverseProxy component's rendered spec: its nginx.conf, its htpasswd line,
    its TLS files. Only paths, the listen address/port and the upstream are local."""

    def __init__(self, name: str, config: StackConfig, upstream: str, workdir: Path, listen_port: int,
                 htpasswd: Optional[str], tls_files: Optional[tuple[str, str]] = None):
        self.name = name
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        os.chmod(workdir, 0o755)  # nginx workers run as nobody: they read htpasswd per request
        paths = render.NginxPaths(
            config=str(workdir / "nginx.conf"),
            htpasswd=str(workdir / "htpasswd"),
            certificate=str(workdir / "tls" / "server.crt"),
            private_key=str(workdir / "tls" / "server.key"),
            pid=str(workdir / "nginx.pid"),
            temp_dir=str(workdir / "tmp"),
            access_log=str(workdir / "access.log"),
            error_log=str(workdir / "error.log"),
        )
        settings = render.proxy_settings(config.proxy, config.server, upstream=upstream, paths=paths, auth=config.auth,
                                         observability=config.observability, hostnames=config.hostnames)
        self.settings = dataclasses.replace(settings, listen_port=listen_port, listen_address="127.0.0.1")
        if settings.metrics_port is not None:
            self.settings = dataclasses.replace(self.settings, metrics_port=free_port())
        self.spec = render.reverse_proxy_spec(self.settings, image=config.proxy.image)
        runtime: dict[str, tuple[str, int]] = {paths.htpasswd: (htpasswd, 0o644)} if htpasswd is not None else {}
        if tls_files:
            runtime[paths.certificate] = (tls_files[0], 0o644)
            runtime[paths.private_key] = (tls_files[1], 0o600)
        if set(runtime) != set(self.spec.runtime_file_paths):
            raise ValueError(f"runtime files {sorted(runtime)} != spec's {sorted(self.spec.runtime_file_paths)}")
        (workdir / "tmp").mkdir(exist_ok=True)
        os.chmod(workdir / "tmp", 0o755)
        for path, content in self.spec.files.items():
            Path(path).write_text(content)
        for path, (content, mode) in runtime.items():
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(content)
            os.chmod(path, mode)
        self.service = Service(name, local_command(self.spec.command), base_env(workdir, workdir / "tmp"),
                               workdir / "nginx.out", cwd=workdir)

    @property
    def port(self) -> int:
        return self.settings.listen_port

    @property
    def scheme(self) -> str:
        return "https" if self.settings.tls else "http"

    @property
    def metrics_url(self) -> Optional[str]:
        """The internal metrics listener (what a scraper on the stack's network reaches)."""
        return f"http://127.0.0.1:{self.settings.metrics_port}" if self.settings.metrics_port else None

    def test_config(self) -> None:
        result = subprocess.run([image_binary("nginx"), "-t", "-c", self.settings.paths.config],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise StartupError(f"nginx -t rejected the rendered config:\n{result.stderr}")

    def start(self, timeout: float = 30.0) -> None:
        self.test_config()
        self.service.start()
        context = ssl._create_unverified_context() if self.settings.tls else None
        url = f"{self.scheme}://127.0.0.1:{self.port}/health"
        deadline = time.monotonic() + timeout
        while _http_status(url, context=context) != 200:
            if not self.service.alive() or time.monotonic() > deadline:
                raise StartupError(f"{self.name} did not become ready at {url}:\n{_tail(self.service.log_path)}\n"
                                   f"{_tail(Path(self.settings.paths.error_log))}")
            time.sleep(0.1)
        log.info("%s ready at %s", self.name, url)

    def stop(self) -> None:
        self.service.stop()


# --- the stack -----------------------------------------------------------------------------------


@dataclasses.dataclass
class Variant:
    """One MLflow server + Nginx pair rendered from one stack config, sharing database and bucket."""

    name: str
    config: StackConfig
    server: TrackingServerProcess
    proxy: ProxyProcess
    username: Optional[str]
    password: Optional[str]
    """What the stack outputs as username/password: Nginx's user (auth.mode proxy), MLflow's admin
    (mlflow), none with single sign-on (oidc)."""
    certificate_path: Optional[str] = None

    @property
    def tracking_uri(self) -> str:
        """What the stack outputs as `tracking_uri` (first host name, public port, prefix)."""
        return render.public_url(self.config.hostnames[0], render.public_scheme(self.config.proxy),
                                 self.proxy.port, self.config.server.static_prefix)

    @property
    def direct_uri(self) -> str:
        """The MLflow server itself, bypassing Nginx (benchmarks only)."""
        return f"{self.server.url}{self.config.server.static_prefix or ''}"

    def client_env(self) -> dict[str, str]:
        env = {"MLFLOW_TRACKING_URI": self.tracking_uri}
        if self.username is not None and self.password is not None:
            env.update(MLFLOW_TRACKING_USERNAME=self.username, MLFLOW_TRACKING_PASSWORD=self.password)
        if self.certificate_path:
            env["MLFLOW_TRACKING_SERVER_CERT_PATH"] = self.certificate_path
        return env

    def env_lines(self) -> str:
        return render.client_env_lines(self.tracking_uri, self.username, self.password, self.certificate_path)


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class RehearsalStack:
    """PostgreSQL + artifact store stand-in + schema upgrade, then any number of server/Nginx variants.

    `artifacts` picks the stand-in: "s3" (moto, the local stack's MinIO) or "azurite" (the azure
    stack's Blob container); every variant of a stack shares it."""

    def __init__(self, raw_config: Optional[Mapping[str, Any]] = None, base_dir: Optional[Path] = None,
                 keep_files: bool = False, artifacts: str = "s3"):
        if artifacts not in ARTIFACT_STORES:
            raise ValueError(f"artifacts must be one of {ARTIFACT_STORES}, got {artifacts!r}")
        self.artifacts = artifacts
        self.base_dir = Path(base_dir) if base_dir else Path(tempfile.mkdtemp(prefix="mlflow-rehearsal-"))
        self.oidc: Optional[OidcProviderStandIn] = None
        self.raw_config = self._with_identity_provider(dict(raw_config or {}))
        self.base_config = parse_stack_config(self.raw_config, "rehearsal config")
        self.base_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base_dir, 0o755)
        self.keep_files = keep_files
        self.postgres: Optional[PostgresCluster] = None
        self.s3: Optional[S3StandIn] = None
        self.azurite: Optional[AzuriteStandIn] = None
        self.db_password = generate_password()
        self.secrets_key = generate_password(48)
        self.backend_uri = ""
        # The auth app's (auth.mode mlflow, oidc): its database's URI, the session key, the admin's password.
        self.auth_uri = ""
        self.session_key = generate_password(48)
        self.admin_password = generate_password()
        self.variants: dict[str, Variant] = {}
        self.lock = threading.RLock()
        self._stopped = False

    def _with_identity_provider(self, raw: dict[str, Any]) -> dict[str, Any]:
        """auth.mode oidc without a provider of the user's: oidc-provider-mock's URL, client and secret."""
        auth = raw.get("auth")
        if isinstance(auth, str):
            auth = json.loads(auth)
        if not isinstance(auth, Mapping) or auth.get("mode") != "oidc":
            return raw
        oidc = dict(auth.get("oidc") or {})
        if oidc.get("discoveryUrl"):
            return raw
        defaults = parse_stack_config({}, "defaults").auth.oidc
        user_groups = oidc.get("userGroups") or list(defaults.user_groups)
        self.oidc = OidcProviderStandIn(self.base_dir / "oidc", oidc.get("adminGroup") or defaults.admin_group,
                                        user_groups[0])
        oidc.update(discoveryUrl=self.oidc.discovery_url, clientId=oidc.get("clientId") or self.oidc.client_id,
                    clientSecret=self.oidc.client_secret)
        return {**raw, "auth": {**auth, "oidc": oidc}}

    # -- lifecycle --

    def start(self) -> "RehearsalStack":
        """Database, bucket and schema; variants are added with `add_variant`."""
        try:
            self._start_backends()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_backends(self) -> None:
        cfg = self.base_config
        started = time.monotonic()
        self.postgres = PostgresCluster(base_dir=self.base_dir / "postgres", max_connections=300)
        self.postgres.start()
        self.postgres.create_database(cfg.database.name, owner=cfg.database.username, owner_password=self.db_password)
        # As the local platform's provisioning step: nobody else may connect to the database.
        self.postgres.psql(f'REVOKE ALL ON DATABASE "{cfg.database.name}" FROM PUBLIC')
        self.backend_uri = render.backend_store_uri(cfg.database.username, self.db_password, "127.0.0.1",
                                                    self.postgres.port, cfg.database.name)
        log.info("postgres up on 127.0.0.1:%s (%.1fs)", self.postgres.port, time.monotonic() - started)
        self._start_artifact_store(cfg)
        log.info("%s stand-in up (%.1fs)", self.artifacts, time.monotonic() - started)
        run_schema_upgrade(self._settings(cfg), {render.BACKEND_URI_ENV: self.backend_uri},
                           self.base_dir / "schema-upgrade")
        log.info("schema upgraded (%.1fs)", time.monotonic() - started)
        if cfg.auth.mode != "proxy":
            self._start_auth(cfg)
            log.info("auth database ready for auth.mode %s (%.1fs)", cfg.auth.mode, time.monotonic() - started)

    def _start_auth(self, cfg: StackConfig) -> None:
        """The auth app's database beside the tracking one, owned by the same role (as the local
        platform's provisioning step makes it), its upgrade step, and the identity provider."""
        assert self.postgres is not None
        name = auth_database_name(cfg.database.name)
        self.postgres.psql(f'CREATE DATABASE "{name}" OWNER "{cfg.database.username}"')
        self.postgres.psql(f'REVOKE ALL ON DATABASE "{name}" FROM PUBLIC')
        self.auth_uri = render.backend_store_uri(cfg.database.username, self.db_password, "127.0.0.1",
                                                 self.postgres.port, name)
        self.run_auth_upgrade(cfg)
        if self.oidc:
            self.oidc.start()

    def _start_artifact_store(self, cfg: StackConfig) -> None:
        """The bucket's (or container's) stand-in, assigned before it starts so a failed start is still stopped."""
        if self.artifacts == "azurite":
            self.azurite = AzuriteStandIn(self.base_dir / "azurite", cfg.artifacts.bucket, cfg.artifacts.prefix)
            self.azurite.start()
            log.info("azurite blob endpoint %s, container %s", self.azurite.endpoint, self.azurite.container)
        else:
            self.s3 = S3StandIn(self.base_dir / "s3", cfg.artifacts.bucket, cfg.artifacts.prefix)
            self.s3.start()
            log.info("s3 endpoint %s, bucket %s", self.s3.endpoint, self.s3.bucket)

    def run_auth_upgrade(self, cfg: Optional[StackConfig] = None) -> str:
        """The TrackingServer's auth upgrade step, as every deployment (every task start) runs it."""
        cfg = cfg or self.base_config
        spec = render.auth_upgrade_spec(self._settings(cfg))
        values = {render.AUTH_DATABASE_URI_ENV: self.auth_uri, render.AUTH_ADMIN_PASSWORD_ENV: self.admin_password}
        return run_step(spec, {name: values[name] for name in spec.secret_env_names}, self.base_dir / "auth-upgrade")

    def _settings(self, cfg: StackConfig) -> render.TrackingServerSettings:
        """The server settings the stack's platform renders: S3 with MinIO's endpoint and key pair, or
        wasbs:// into Azurite's account with the connection string as the one artifact secret."""
        if self.artifacts == "azurite":
            destination = render.blob_artifacts_destination(cfg.artifacts.bucket, AZURITE_ACCOUNT,
                                                            cfg.artifacts.prefix)
            endpoint, secret_names = None, (render.AZURE_CONNECTION_STRING_ENV,)
        else:
            assert self.s3 is not None
            destination = render.artifacts_destination(cfg.artifacts.bucket, cfg.artifacts.prefix)
            endpoint, secret_names = self.s3.endpoint, render.S3_CREDENTIAL_ENVS
        return render.tracking_server_settings(
            cfg.server, cfg.proxy, cfg.hostnames,
            image=f"mlflow-platform/mlflow-server:{cfg.mlflow_version}",
            artifacts_destination=destination,
            s3_endpoint_url=endpoint,
            artifact_secret_env_names=secret_names,
            auth=cfg.auth,
            observability=cfg.observability,
        )

    def _secret_env(self, cfg: StackConfig) -> dict[str, str]:
        """Values of the spec's secret env names (the platform's secret mechanism, here plain env)."""
        env = {render.BACKEND_URI_ENV: self.backend_uri, render.SECRETS_KEK_ENV: self.secrets_key}
        if cfg.auth.mode != "proxy":
            env[render.SESSION_KEY_ENVS[cfg.auth.mode]] = self.session_key
        if cfg.auth.mode == "mlflow":
            env[render.AUTH_ADMIN_PASSWORD_ENV] = self.admin_password
        if cfg.auth.mode == "oidc":
            assert cfg.auth.oidc.client_secret is not None
            env[render.OIDC_CLIENT_SECRET_ENV] = cfg.auth.oidc.client_secret
            env[render.OIDC_USERS_DB_URI_ENV] = self.auth_uri
        if self.artifacts == "azurite":
            assert self.azurite is not None
            return {**env, render.AZURE_CONNECTION_STRING_ENV: self.azurite.connection_string}
        assert self.s3 is not None
        key, secret = self.s3.server_credentials
        return {**env, "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret}

    def add_variant(self, name: str = "default", *, static_prefix: Optional[str] = None, tls: bool = False,
                    port: Optional[int] = None, overrides: Optional[Mapping[str, Any]] = None) -> Variant:
        """Render a config (the stack's, with the public port set to a free loopback port and the
        given static prefix / TLS mode) and start its MLflow server and Nginx."""
        with self.lock:
            if name in self.variants:
                raise ValueError(f"variant {name!r} exists")
            if port is None:
                port = free_port()
            elif not bindable(port):
                raise StartupError(f"port {port} on 127.0.0.1 is in use")
            raw = _merge(self.raw_config, {"proxy": {"port": port, "tls": "self-signed" if tls else "off"}})
            if static_prefix:
                raw = _merge(raw, {"server": {"staticPrefix": static_prefix}})
            raw = _merge(raw, dict(overrides or {}))
            cfg = parse_stack_config(raw, f"rehearsal config ({name})")
            workdir = self.base_dir / name
            runtime_files = {}
            if cfg.auth.mode == "mlflow":
                runtime_files[render.AUTH_CONFIG_PATH] = render.auth_config_ini(cfg.auth.default_permission,
                                                                                self.auth_uri)
            server = TrackingServerProcess(f"mlflow-server[{name}]", self._settings(cfg), self._secret_env(cfg),
                                           workdir / "server", runtime_files=runtime_files)
            tls_files = None
            certificate_path = None
            if tls:
                tls_files = self_signed_certificate(cfg.hostnames, cfg.proxy.certificate_validity_days)
                certificate_path = str(workdir / "mlflow-proxy.crt")  # what users save tls_certificate as
                Path(workdir).mkdir(parents=True, exist_ok=True)
                Path(certificate_path).write_text(tls_files[0])
            username: Optional[str] = None
            password: Optional[str] = None
            htpasswd = None
            if cfg.auth.mode == "proxy":
                username, password = cfg.proxy.username, generate_password()
                htpasswd = render.htpasswd_line(username, password_hash(cfg, password))
            elif cfg.auth.mode == "mlflow":
                username, password = cfg.auth.admin_username, self.admin_password
            proxy = ProxyProcess(f"nginx[{name}]", cfg, f"127.0.0.1:{server.port}", workdir / "nginx", port,
                                 htpasswd, tls_files)
            variant = Variant(name, cfg, server, proxy, username, password, certificate_path)
            self.variants[name] = variant
            server.start()
            proxy.start()
            return variant

    def stop(self) -> None:
        """Stop everything this stack started, in reverse order, by PID; remove its files."""
        with self.lock:
            if self._stopped:
                return
            self._stopped = True
            for variant in reversed(list(self.variants.values())):
                for part in (variant.proxy, variant.server):
                    try:
                        part.stop()
                    except Exception:  # keep stopping the rest
                        log.exception("stopping %s", part)
            for name, store in (("s3", self.s3), ("azurite", self.azurite), ("oidc provider", self.oidc)):
                if store:
                    try:
                        store.stop()
                    except Exception:
                        log.exception("stopping %s", name)
            if self.postgres:
                try:
                    self.postgres.stop("fast")
                except Exception:
                    log.exception("stopping postgres")
            if not self.keep_files:
                shutil.rmtree(self.base_dir, ignore_errors=True)

    # -- faults --

    def restart_server(self, variant: str = "default", down_seconds: float = 0.0) -> None:
        with self.lock:
            self.variants[variant].server.restart(down_seconds)

    def restart_postgres(self, down_seconds: float = 0.0) -> None:
        assert self.postgres is not None
        with self.lock:
            self.postgres.restart(down_seconds)

    def supervise(self) -> list[str]:
        """Restart whatever died unexpectedly (the local platform's restart="unless-stopped").
        Returns what was restarted."""
        restarted: list[str] = []
        with self.lock:
            if self._stopped:
                return restarted
            if self.postgres and not _pid_alive(self.postgres.pid):
                log.warning("postgres is down; starting it again")
                self.postgres.start()
                restarted.append("postgres")
            if self.s3 and self.s3.service and self.s3.service.expected_running and not self.s3.service.alive():
                # moto keeps state in memory: a restarted moto has lost the bucket and the users.
                log.error("the S3 stand-in exited; its in-memory objects are lost (not restarted)")
                self.s3.service.expected_running = False
            if self.azurite and _died(self.azurite.service):
                log.warning("Azurite exited; starting it again (blobs written in its last 5 s may be lost)")
                self.azurite.restart()
                restarted.append("azurite")
            for variant in self.variants.values():
                for part in (variant.server, variant.proxy):
                    if part.service.expected_running and not part.service.alive():
                        log.warning("%s exited (%s); starting it again", part.name, part.service.process.returncode)
                        part.service.stop(timeout=10)  # whatever it left behind in its group
                        part.start()
                        restarted.append(part.name)
        return restarted

    def describe(self) -> dict[str, Any]:
        """PIDs, ports and log files (no secrets)."""
        info: dict[str, Any] = {"base_dir": str(self.base_dir)}
        if self.postgres:
            info["postgres"] = {"port": self.postgres.port, "pid": self.postgres.pid, "log": str(self.postgres.log_file)}
        if self.s3 and self.s3.service:
            info["s3"] = {"endpoint": self.s3.endpoint, "pid": self.s3.service.pid, "bucket": self.s3.bucket,
                          "log": str(self.s3.service.log_path)}
        if self.azurite and self.azurite.service:
            info["azurite"] = {"endpoint": self.azurite.endpoint, "pid": self.azurite.service.pid,
                               "container": self.azurite.container, "location": str(self.azurite.workdir / "data"),
                               "log": str(self.azurite.service.log_path)}
        if self.oidc and self.oidc.service:
            info["oidc_provider"] = {"issuer": self.oidc.issuer, "discovery_url": self.oidc.discovery_url,
                                     "client_id": self.oidc.client_id, "pid": self.oidc.service.pid,
                                     "users": self.oidc.users, "log": str(self.oidc.service.log_path)}
        for name, variant in self.variants.items():
            info[name] = {
                "tracking_uri": variant.tracking_uri,
                "server": {"port": variant.server.port, "pid": variant.server.service.pid,
                           "log": str(variant.server.service.log_path),
                           "command": variant.server.spec.command},
                "nginx": {"port": variant.proxy.port, "pid": variant.proxy.service.pid,
                          "config": variant.proxy.settings.paths.config,
                          "error_log": variant.proxy.settings.paths.error_log,
                          "access_log": variant.proxy.settings.paths.access_log},
            }
        return info


def _died(service: Optional[Service]) -> bool:
    """Exited although it should be running (not stopped by the stack)."""
    return service is not None and service.expected_running and not service.alive()


def _pid_alive(pid: Optional[int]) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie counts as dead.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
