"""`scripts/rehearse`: run the rendered local stack natively until SIGINT/SIGTERM.

stdout carries exactly the stack's client lines (`render.client_env_lines`: MLFLOW_TRACKING_URI,
MLFLOW_TRACKING_USERNAME, MLFLOW_TRACKING_PASSWORD, and MLFLOW_TRACKING_SERVER_CERT_PATH with
--tls), then a line `ready`. Everything else goes to stderr. With --artifacts azurite the server
stores artifacts in Azure Blob (the azure stack's wasbs:// destination) in Azurite instead of S3.

Authentication follows auth.mode: `--set auth.mode=mlflow` prints MLflow's admin as the user (it adds
users and grants permissions); `--set auth.mode=oidc` prints no user (each signs in, or uses an access
token) and, unless auth.oidc.discoveryUrl is set, starts oidc-provider-mock and describes it in
`#` comment lines before `ready` (its URL, the client id, the users alice, bob and eve).
`--set artifacts.transfer=direct` lets clients move artifacts with presigned URLs straight to the bucket
(S3 stand-in: uploads from MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE on, and downloads) or, with --artifacts
azurite, uploads to Azurite as the server's managed identity signs them; its client lines then also hold
HTTPS_PROXY, NO_PROXY and REQUESTS_CA_BUNDLE, which lead the account's public name to Azurite.
While running:

  SIGINT, SIGTERM   stop everything that was started (by PID, in reverse order) and exit 0
  SIGUSR1           restart the MLflow server (stop, start, wait until healthy)
  SIGUSR2           restart PostgreSQL (3 s outage)

A server, Nginx, PostgreSQL or Azurite that dies on its own is started again, as the local
platform's restart="unless-stopped" does.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Optional

from rehearsal.launcher import RehearsalStack, check_prerequisites
from rehearsal.platform_graph import rehearsed_platforms
from rehearsal.ports import bindable
from rehearsal.scenarios import BY_NAME, SCENARIOS
from rehearsal.processes import REPO_ROOT, ServerUnavailable, StartupError
from rehearsal.stand_ins import ARTIFACT_STORES

log = logging.getLogger("rehearsal")


class _Stop(BaseException):
    """Raised by the SIGINT/SIGTERM handler to unwind startup or the wait loop."""


def _parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/rehearse",
        description="Start the rendered local MLflow stack natively (PostgreSQL, an S3 or Azure Blob stand-in, "
                    "MLflow, Nginx), print the client's export lines and `ready`, and run until SIGINT/SIGTERM.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    parser.add_argument("--port", type=int, default=None,
                        help="public (Nginx) port on 127.0.0.1 (default: the stack's proxy.port, 8080, "
                             "or a free port if that is taken)")
    parser.add_argument("--static-prefix", default=None, metavar="PATH",
                        help="serve MLflow under this prefix (server.staticPrefix), e.g. /mlflow")
    parser.add_argument("--tls", action="store_true",
                        help="proxy.tls=self-signed: HTTPS with a self-signed certificate")
    parser.add_argument("--artifacts", choices=ARTIFACT_STORES, default=None,
                        help="artifact store: s3 (moto standing in for MinIO, default) or azurite (Azure Blob "
                             "as on the azure stack, Azurite from rehearsal/azurite)")
    parser.add_argument("--scenario", choices=[s.name for s in SCENARIOS if s.stack != "none"], default=None,
                        help="start the stack a rehearsal test runs on (rehearsal/scenarios.py; scenario NN is "
                             "tests/rehearsal/test_NN_<name>.py): its configuration over the built-in defaults "
                             "(no stack file unless --stack-file), its artifact store, its first server variant; "
                             "--set and the other options still apply on top")
    parser.add_argument("--platform", choices=rehearsed_platforms(), default=None,
                        help="platform-faithful run: each container as that platform runs it, from the stack's "
                             "registered graph (Pulumi.<platform>.yaml under mocks; any registered platform with a "
                             "rehearsal runtime, rehearsal/runtimes): its command, env, secrets, user, "
                             "init containers and probes (rehearsal/platform_run.py; needs root). Ignores the "
                             "other options but --dir, --keep-files and -v")
    parser.add_argument("--stack-file", default=None, metavar="FILE",
                        help="read the mlflow: config of this Pulumi stack file (default: Pulumi.local.yaml if "
                             "present; 'none' for the built-in defaults)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set server.workers=4 (VALUE is JSON or a plain string)")
    parser.add_argument("--dir", default=None, metavar="DIR", help="work directory (default: a new temporary one)")
    parser.add_argument("--keep-files", action="store_true", help="keep the work directory (logs, data) on exit")
    parser.add_argument("--state-file", default=None, metavar="FILE",
                        help="write PIDs, ports and log paths (no secrets) as JSON to FILE once ready")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    return parser.parse_args(argv)


def _stack_file_config(path: Path) -> dict[str, Any]:
    import yaml

    document = yaml.safe_load(path.read_text()) or {}
    config = document.get("config") or {}
    return {key.split(":", 1)[1]: value for key, value in config.items() if key.startswith("mlflow:")}


def _set(raw: dict[str, Any], assignment: str) -> None:
    key, _, value = assignment.partition("=")
    if not key or not _:
        raise SystemExit(f"--set expects KEY=VALUE, got {assignment!r}")
    try:
        parsed: Any = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    parts = key.split(".")
    target = raw
    for part in parts[:-1]:
        existing = target.get(part)
        if isinstance(existing, str):
            existing = json.loads(existing)
        target[part] = dict(existing or {})
        target = target[part]
    target[parts[-1]] = parsed


def _identity_provider_lines(stack: RehearsalStack) -> str:
    """The stand-in identity provider, as shell comments (harmless to `eval`)."""
    assert stack.oidc is not None
    oidc = stack.base_config.auth.oidc
    groups = {name: ", ".join(claims["groups"]) for name, claims in stack.oidc.users.items()}
    return (f"# identity provider (oidc-provider-mock): {stack.oidc.issuer}, client id {stack.oidc.client_id}\n"
            f"# sign in at MLFLOW_TRACKING_URI/login as: alice (groups: {groups['alice']}; admin group "
            f"{oidc.admin_group}), bob (groups: {groups['bob']}), eve (groups: {groups['eve']}: refused)\n"
            "# add a user: PUT <provider>/users/<subject> with JSON claims, e.g. {\"email\": ..., \"groups\": [...]}\n"
            "# access tokens for the MLflow client: POST MLFLOW_TRACKING_URI/api/2.0/mlflow/users/current/tokens "
            "from a signed-in session; then MLFLOW_TRACKING_USERNAME=<email> MLFLOW_TRACKING_PASSWORD=<token>\n")


def _direct_transfer_lines(stack: RehearsalStack) -> str:
    """artifacts.transfer direct, as shell comments: where the bytes go, and the client's threshold."""
    store = (f"Azurite at https://{stack.azurite.public_host} (through the HTTPS_PROXY above; uploads only, "
             "downloads stay proxied)" if stack.azurite and stack.azure_identity else
             f"Azurite at {stack.azurite.endpoint} (key-signed SAS; uploads only)" if stack.azurite else
             f"the S3 stand-in at {stack.s3.endpoint if stack.s3 else '?'} (uploads and downloads)")
    return (f"# artifacts.transfer direct: clients move artifact bytes with presigned URLs straight to {store}\n"
            "# uploads go direct from MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE bytes on (500 MiB unless a client "
            "lowers it, e.g. export MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE=$((8*1024*1024)))\n")


def main(argv: Optional[list[str]] = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="rehearse: %(message)s")
    scenario = BY_NAME[args.scenario] if args.scenario else None
    args.artifacts = args.artifacts or (scenario.artifacts if scenario else "s3")
    try:
        check_prerequisites(args.artifacts)
    except ServerUnavailable as error:
        print(f"rehearse: cannot start: {error}", file=sys.stderr)
        return 2

    if args.platform:
        return _platform_main(args)

    stack_file = args.stack_file
    if stack_file is None and scenario is None and (REPO_ROOT / "Pulumi.local.yaml").exists():
        stack_file = str(REPO_ROOT / "Pulumi.local.yaml")
    raw: dict[str, Any] = {}
    if stack_file and stack_file != "none":
        raw = _stack_file_config(Path(stack_file))
        log.info("config from %s", stack_file)
    variant_options: dict[str, Any] = {}
    if scenario is not None:
        for section, values in json.loads(json.dumps(scenario.config)).items():
            existing = raw.get(section)
            raw[section] = {**(json.loads(existing) if isinstance(existing, str) else existing or {}), **values}
        variant_options = dict(next(iter(scenario.variants.values())))
        log.info("scenario %02d %s: %s", scenario.number, scenario.name, scenario.proves)
    for assignment in args.set:
        _set(raw, assignment)

    stopping = {"flag": False}
    requests_: list[str] = []

    def on_stop(signum, frame):
        if not stopping["flag"]:
            stopping["flag"] = True
            log.info("%s received; stopping", signal.Signals(signum).name)
            raise _Stop()

    def on_restart(signum, frame):
        requests_.append("server" if signum == signal.SIGUSR1 else "postgres")

    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGHUP, on_stop)
    signal.signal(signal.SIGUSR1, on_restart)
    signal.signal(signal.SIGUSR2, on_restart)

    stack: Optional[RehearsalStack] = None
    try:
        stack = RehearsalStack(raw, base_dir=Path(args.dir) if args.dir else None, keep_files=args.keep_files,
                               artifacts=args.artifacts)
        port = args.port
        if port is None:
            port = stack.base_config.proxy.port
            if not bindable(port):
                from rehearsal.ports import free_port

                log.info("port %s is taken; using a free port", port)
                port = free_port()
        started = time.monotonic()
        stack.start()
        chosen = {**({"static_prefix": args.static_prefix} if args.static_prefix else {}),
                  **({"tls": True} if args.tls else {})}
        variant = stack.add_variant("default", **{**variant_options, **chosen, "port": port})
        info = stack.describe()
        log.info("up in %.1fs; work directory %s", time.monotonic() - started, stack.base_dir)
        for name in ("postgres", "s3", "azurite", "azure_identity", "storage_name_proxy"):
            if name in info:
                log.info("%s: %s", name, json.dumps(info[name]))
        log.info("mlflow server: pid %s on 127.0.0.1:%s, log %s", variant.server.service.pid, variant.server.port,
                 variant.server.service.log_path)
        log.info("nginx: pid %s on 127.0.0.1:%s, config %s", variant.proxy.service.pid, variant.proxy.port,
                 variant.proxy.settings.paths.config)
        log.info("SIGUSR1 restarts the MLflow server, SIGUSR2 restarts PostgreSQL, SIGINT/SIGTERM stops (pid %s)",
                 os.getpid())
        if args.state_file:
            state = {**info, "rehearse_pid": os.getpid()}
            fd = os.open(args.state_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(state, handle, indent=2, default=str)
        sys.stdout.write(variant.env_lines())
        if variant.config.artifacts.transfer == "direct":
            sys.stdout.write(_direct_transfer_lines(stack))
        if stack.oidc is not None:
            sys.stdout.write(_identity_provider_lines(stack))
        sys.stdout.write("ready\n")
        sys.stdout.flush()

        while True:
            time.sleep(0.5)
            while requests_:
                what = requests_.pop(0)
                log.info("restarting %s on request", what)
                if what == "server":
                    stack.restart_server("default")
                else:
                    stack.restart_postgres(down_seconds=3)
                log.info("%s restarted", what)
            for name in stack.supervise():
                log.info("%s was restarted after it exited", name)
    except _Stop:
        return 0
    except StartupError as error:
        print(f"rehearse: startup failed: {error}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if stack is not None:
            stack.stop()
            log.info("stopped")


def _platform_main(args: argparse.Namespace) -> int:
    """`--platform NAME` (aws, azure, ...): rehearsal.platform_run until SIGINT/SIGTERM; prints the client lines
    (the ingress stand-in's URL, the stack's user and password), then `ready`."""
    from rehearsal.platform_graph import platform_graph
    from rehearsal.platform_run import PlatformRun, check_platform_prerequisites

    try:
        check_platform_prerequisites(args.platform)
    except ServerUnavailable as error:
        print(f"rehearse: cannot start: {error}", file=sys.stderr)
        return 2

    def on_stop(signum, frame):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        log.info("%s received; stopping", signal.Signals(signum).name)
        raise _Stop()

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_stop)
    run: Optional[Any] = None
    try:
        run = PlatformRun(platform_graph(args.platform), base_dir=Path(args.dir) if args.dir else None,
                          keep_files=args.keep_files)
        run.start()
        log.info("%s platform run up; work directory %s", args.platform, run.base_dir)
        sys.stdout.write(run.env_lines())
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        while True:
            time.sleep(0.5)
    except _Stop:
        return 0
    except StartupError as error:
        print(f"rehearse: startup failed: {error}", file=sys.stderr)
        return 1
    finally:
        if run is not None:
            run.stop()
            log.info("stopped")


if __name__ == "__main__":
    sys.exit(main())
