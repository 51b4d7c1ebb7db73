"""`python -m migration SOURCE TARGET [options]` (also installed as `mlflow-migrate`);
`python -m migration move SOURCE --to TRACKING_URI` moves a laptop's MLflow into a stack (move_cli.py)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys

from migration import __version__, default_jobs
from migration.convert import ArtifactRewrite
from migration.errors import EXIT_FAILED, EXIT_OK, Interrupted, MigrationError
from migration.uris import redact

EPILOG = """\
exit codes: 0 migrated (or dry run fine); 1 failed, target unchanged; 2 bad arguments;
3 refused (newer source, user data in target, schema mismatch), nothing written;
4 verification failed, rolled back; 5 committed and verified, but the MLflow probe failed;
130 interrupted, rolled back.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m migration",
        description="Copy an MLflow SQLite database into PostgreSQL: one transaction, verified before commit, "
                    "MLflow probed after. `python -m migration move --help`: a laptop's database and artifacts "
                    "into a running stack.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("source", metavar="SOURCE", help="SQLite file path or sqlite:///PATH URI (never modified)")
    p.add_argument("target", metavar="TARGET",
                   help="PostgreSQL URI: postgresql://, postgresql+psycopg2:// or postgresql+psycopg://")
    p.add_argument("--mode", choices=("merge", "replace"), default="merge",
                   help="merge (default): refuse if the target holds user data, merge the default "
                        "experiment/workspace rows; replace: empty the target's MLflow tables first")
    p.add_argument("--dry-run", action="store_true", help="report what would be copied; write nothing")
    p.add_argument("--rewrite-artifact-root", metavar="OLD=NEW", action="append", default=[],
                   help="rewrite artifact locations starting with OLD to start with NEW (repeatable)")
    p.add_argument("--jobs", type=int, default=default_jobs(),
                   help="source reader processes (default: %(default)s)")
    p.add_argument("--rebuild-threshold", type=int, default=10_000, metavar="ROWS",
                   help="drop and re-build keys/indexes of tables receiving at least ROWS rows (default: %(default)s)")
    p.add_argument("--task-rows", type=int, default=250_000, metavar="ROWS",
                   help="rows per reader task: bigger tables are read in ranges by all readers (default: %(default)s)")
    p.add_argument("--drop-orphans", action="store_true",
                   help="leave out source rows whose parent row is missing (SQLite kept them, PostgreSQL's "
                        "foreign keys refuse them); counted in the summary")
    p.add_argument("--replace-nul", action="store_true",
                   help="replace NUL characters in text (SQLite kept them, PostgreSQL's text cannot) with "
                        "U+FFFD; counted per column in the summary")
    p.add_argument("--no-probe", action="store_true", help="skip the MLflow probe after commit")
    p.add_argument("--lock-timeout", type=float, default=60.0, metavar="SECONDS",
                   help="how long to wait for locks on the target tables (default: %(default)s)")
    add_output_options(p, masked="passwords")
    return p


def add_output_options(p: argparse.ArgumentParser, masked: str) -> None:
    """--json, -q, -v and --version, as both commands (this one and `move`) take them."""
    p.add_argument("--json", metavar="PATH", help="also write the result as JSON to PATH ('-' for stdout)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output, only the summary")
    p.add_argument("-v", "--verbose", action="store_true", help=f"log details ({masked} stay masked)")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")


def configure_logging(verbose: bool, secrets: list[str], noisy: tuple[str, ...] = ("alembic", "mlflow")) -> None:
    """Log to stderr through the redacting filter; the `noisy` libraries at INFO only with -v."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_RedactingFilter(secrets))
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, handlers=[handler], force=True)
    for name in noisy:
        logging.getLogger(name).setLevel(logging.INFO if verbose else logging.WARNING)


def write_json(path: str | None, data: dict) -> None:
    """--json: `data` to PATH, or to stdout for '-'."""
    if not path:
        return
    text = json.dumps(data, indent=2, default=str)
    if path == "-":
        print(text)
    else:
        with open(path, "w") as handle:
            handle.write(text + "\n")


class _RedactingFilter(logging.Filter):
    def __init__(self, secrets: list[str]):
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage(), self.secrets)
        record.args = ()
        return True


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["move"]:  # `python -m migration move SOURCE --to URI`: migration/move_cli.py
        from migration.move_cli import main as move_main

        return move_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    probe = None
    if not (args.dry_run or args.no_probe):
        from migration.probe import Probe

        probe = Probe()  # first thing: its MLflow import uses the cycles our own start-up leaves idle
    try:
        return _run(parser, args, probe)
    finally:
        if probe is not None:
            probe.close()


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace, probe) -> int:
    from migration.core import Options, migrate
    from migration.report import Reporter
    from migration.uris import parse_target

    reporter = Reporter(quiet=args.quiet)
    secrets: list[str] = []
    try:
        target = parse_target(args.target)
        secrets = target.secrets
        configure_logging(args.verbose, secrets)
        try:
            rewrites = tuple(ArtifactRewrite.parse(s) for s in args.rewrite_artifact_root)
        except ValueError as exc:
            parser.error(str(exc))
        if args.jobs < 1:
            parser.error("--jobs must be at least 1")
        if args.task_rows < 1:
            parser.error("--task-rows must be at least 1")
        opts = Options(source=args.source, target=args.target, mode=args.mode, dry_run=args.dry_run,
                       rewrites=rewrites, jobs=args.jobs, rebuild_threshold=max(0, args.rebuild_threshold),
                       task_rows=args.task_rows, probe=not args.no_probe, lock_timeout=args.lock_timeout,
                       drop_orphans=args.drop_orphans, replace_nul=args.replace_nul)

        def _on_term(signum, frame):
            raise Interrupted()

        signal.signal(signal.SIGTERM, _on_term)
        reporter.info(f"migrating {args.source} -> {target.masked} (mode {args.mode}"
                      f"{', dry run' if args.dry_run else ''})")
        result = migrate(opts, reporter, probe)
    except (KeyboardInterrupt, Interrupted):
        reporter.err.print("error: interrupted; nothing was committed, the target is unchanged", markup=False)
        return 130
    except MigrationError as exc:
        reporter.err.print(f"error: {redact(str(exc), secrets)}", markup=False, style="red")
        return exc.exit_code
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001 - a readable line, never a traceback with secrets
        reporter.err.print(f"error: {type(exc).__name__}: {redact(str(exc), secrets)}", markup=False, style="red")
        if args.verbose:
            import traceback

            reporter.err.print(redact(traceback.format_exc(), secrets), markup=False)
        return EXIT_FAILED
    reporter.summary(result)
    if result.probe is not None:
        reporter.out.print(f"MLflow probe: ok ({result.probe.seconds:.2f} s): {result.probe.detail}", markup=False)
    write_json(args.json, result.as_dict())
    return EXIT_OK


def console_main() -> None:
    code = main()
    if "mlflow" in sys.modules:
        # MLflow was imported here (schema creation, source upgrade, in-process probe): tearing its
        # thousands of modules down takes about a second. Everything of ours is closed and cleaned up
        # by now, and MLflow's exit hooks have nothing left to do (no fluent run is active), so end
        # the process once the output is out.
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    console_main()
