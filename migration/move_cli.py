"""`python -m migration move SOURCE --to TRACKING_URI [options]` (also `mlflow-migrate move ...`)."""

from __future__ import annotations

import argparse

from migration.cli import add_output_options, configure_logging, write_json
from migration.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Interrupted, MigrationError
from migration.uris import redact

EPILOG = """\
credentials: MLflow's own variables, as every MLflow client takes them: MLFLOW_TRACKING_USERNAME and
MLFLOW_TRACKING_PASSWORD (auth.mode proxy: the stack's user; mlflow: the admin), or MLFLOW_TRACKING_TOKEN
(oidc: a token of the admin group); MLFLOW_TRACKING_SERVER_CERT_PATH for a self-signed stack. Never on argv.

order: the database step first (the source's experiment ids become the stack's before any file goes up under
them), then the artifacts into those experiments. Where the database is not reachable from here the step is
printed; the same command run again after it sends the artifacts.

exit codes: 0 moved (or checked, or staged: the database step printed, or finished, or repaired: files of
a moved source lost on the stack sent again); 1 failed (the stack unreachable, files changed between the
plan and their upload, or an error; uploaded files stay in the manifest for the rerun); 2 bad arguments;
3 refused (missing files, links out of the artifact root, folders outside it MLflow does not write there,
names the stack cannot carry, credentials, a stack holding data of its own or this source already, another
move of this source running), nothing written; or files of the source the stack holds otherwise (another
size, or sha256 with --verify full), kept without --overwrite (those the stack lacked were sent); 4
verification failed (--finish: files not on the stack as the laptop has them); 5 committed and verified, but
the MLflow probe failed; 130 interrupted (the rerun resumes: before the database step committed nothing was
written; after it, the rerun sends the artifacts the stack lacks).
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m migration move",
        description="Move a laptop's MLflow (database and artifacts) into a running stack: artifacts through the "
                    "stack's artifact API (parallel, resumable, verified), every location rewritten to the stack's "
                    "mlflow-artifacts:/ layout, then the database in one transaction with ids kept.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", metavar="SOURCE",
                   help="the laptop's database (mlflow.db, sqlite:///mlflow.db), or a FileStore mlruns directory")
    p.add_argument("--to", required=True, metavar="TRACKING_URI",
                   help="the stack's tracking URI (https://host[:port][/prefix]; no user:password@ in it)")
    p.add_argument("--artifacts", metavar="DIR",
                   help="the laptop's artifact root (default: the folder the source's locations point into, e.g. "
                        "./mlruns; ./mlartifacts next to the database for mlflow-artifacts:/ sources)")
    p.add_argument("--database-uri-env", metavar="NAME",
                   help="name of an environment variable holding the stack's PostgreSQL URI: the database step "
                        "runs here (else its one-off command for the stack is printed)")
    p.add_argument("--stack", dest="stack_kind", choices=("local", "aws", "azure"),
                   help="which stack's one-off database step to print (default: all three)")
    p.add_argument("--pulumi-stack", metavar="NAME",
                   help="the Pulumi stack the printed step reads its names from (`pulumi stack output -s NAME`; "
                        "default: local, aws or azure, as --stack)")
    p.add_argument("--jobs", type=int, default=8, help="parallel uploads (default: %(default)s)")
    p.add_argument("--verify", choices=("size", "full"), default="size",
                   help="after upload: size (default: the stack lists each file with its size) or full (read "
                        "back and compare sha256: downloads everything once more)")
    p.add_argument("--manifest", metavar="PATH",
                   help="the resume manifest (default: SOURCE.move/manifest.sqlite)")
    p.add_argument("--allow-missing", action="store_true",
                   help="go on when artifacts the database names are missing on disk (listed)")
    p.add_argument("--overwrite", action="store_true",
                   help="also send the files the stack holds otherwise than this move sent them (another size; "
                        "another sha256 with --verify full), over the stack's (default: kept, listed, exit 3: a user "
                        "may have logged a newer version there)")
    p.add_argument("--check", action="store_true",
                   help="preflight only, writing nothing (on a stack holding the source: what a rerun would send)")
    p.add_argument("--finish", action="store_true",
                   help="check, writing nothing, that the stack holds the source's runs and every artifact as the "
                        "laptop has it (read back with --verify full)")
    add_output_options(p, masked="credentials")
    return p


def main(argv: list[str]) -> int:
    import os

    from migration.report import Reporter

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    if args.finish and args.check:
        parser.error("--finish and --check exclude each other")
    secrets = [v for k in ("MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN") if (v := os.environ.get(k))]
    if args.database_uri_env and (uri := os.environ.get(args.database_uri_env)):
        from migration.uris import parse_target

        try:
            secrets += parse_target(uri).secrets
        except MigrationError:
            pass
    configure_logging(args.verbose, secrets, noisy=("alembic", "mlflow", "urllib3"))
    reporter = Reporter(quiet=args.quiet)
    from migration.move import Move, MoveOptions
    from migration.stack import normalise_stack_uri

    try:
        to = normalise_stack_uri(args.to)  # credentials in it refused: before anything prints or stores it
    except MigrationError as exc:
        reporter.err.print(f"error: {exc}", markup=False, style="red")
        return exc.exit_code
    opts = MoveOptions(source=args.source, to=to, artifacts=args.artifacts, manifest=args.manifest,
                       jobs=args.jobs, verify=args.verify, allow_missing=args.allow_missing, overwrite=args.overwrite,
                       database_uri_env=args.database_uri_env, finish=args.finish, check=args.check,
                       stack_kind=args.stack_kind, pulumi_stack=args.pulumi_stack, quiet=args.quiet)
    move = Move(opts, reporter)
    try:
        result = move.run()
    except (KeyboardInterrupt, Interrupted):
        if move.committed:
            reporter.err.print("error: interrupted after the database step committed: the stack holds the source's "
                               "rows, with part of their artifacts; rerun the same command: it sends the ones the "
                               "stack lacks", markup=False)
            write_json(args.json, {**move.result.as_dict(), "status": "committed", "interrupted": True})
        elif move.held is False:
            reporter.err.print("error: interrupted before the database step committed (rolled back, if it had "
                               "started): nothing was written to the stack; a rerun starts again", markup=False)
            write_json(args.json, {**move.result.as_dict(), "status": "interrupted"})
        else:
            reporter.err.print("error: interrupted before the stack was listed: this run wrote nothing to it; "
                               "whether it holds the source's rows already (an earlier run, or the printed step) "
                               "`move --check` tells; the same command resumes either way", markup=False)
            write_json(args.json, {**move.result.as_dict(), "status": "interrupted"})
        return 130
    except MigrationError as exc:
        reporter.err.print(f"error: {redact(str(exc), secrets)}", markup=False, style="red")
        _say_committed(reporter, move, exc)
        write_json(args.json, {**move.result.as_dict(), "status": "error", "exit_code": exc.exit_code,
                                "error": redact(str(exc), secrets), "committed": move.committed})
        return exc.exit_code
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001 - one readable line, never a traceback with secrets
        message = _one_line(exc)
        reporter.err.print(f"error: {type(exc).__name__}: {redact(message, secrets)}", markup=False, style="red")
        if args.verbose:
            import traceback

            reporter.err.print(redact(traceback.format_exc(), secrets), markup=False)
        _say_committed(reporter, move, exc)
        write_json(args.json, {**move.result.as_dict(), "status": "error", "exit_code": EXIT_FAILED,
                                "error": redact(message, secrets), "committed": move.committed})
        return EXIT_FAILED
    summary(reporter, result)
    write_json(args.json, result.as_dict())
    return EXIT_OK


def _say_committed(reporter, move, exc: BaseException) -> None:
    """After the database step committed (this run's, an earlier one's or the printed step's) a failure is no
    reason to start over elsewhere: the stack holds the rows, and the same command sends what it lacks.
    Refusals say what to do themselves."""
    from migration.errors import RefusedError

    if move.committed and not move.opts.finish and not isinstance(exc, RefusedError):
        reporter.err.print("the database step has committed: the stack holds the source's rows; the same command "
                           "again sends the artifacts it lacks (`move --check` says how many)", markup=False)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def summary(reporter, result) -> None:
    from rich.table import Table

    from migration.move import _size

    table = Table(title=f"MLflow move: {result.status}", title_justify="left")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_column("detail")
    if result.database:
        for name, rows in sorted(result.database["tables"].items()):
            table.add_row(f"rows: {name}", f"{rows:,}", "")
        table.add_row("rows (all tables)", f"{result.database['rows']:,}",
                      "verified" if result.database.get("verified") else "")
    table.add_section()
    table.add_row("artifacts", f"{result.files:,}", _size(result.bytes))
    table.add_row("  uploaded now", f"{result.uploaded:,}", _size(result.uploaded_bytes))
    table.add_row("  already there (manifest, and listed on the stack)", f"{result.skipped:,}", "")
    if result.lost:
        table.add_row("  lost on the stack, sent again", f"{len(result.lost):,}", "; ".join(result.lost[:3]))
    if result.differs:
        table.add_row("  differs on the stack, kept", f"{len(result.differs):,}", "; ".join(result.differs[:3]))
    if result.changed:
        table.add_row("  changed since the plan, not sent", f"{len(result.changed):,}", "; ".join(result.changed[:3]))
    table.add_row("  verified now", f"{result.verified:,}", f"verify {result.verify}")
    table.add_section()
    for name, n in sorted(result.rewritten.items()):
        table.add_row(f"rewritten: {name}", f"{n:,}", "-> mlflow-artifacts:/")
    table.add_row("locations left", f"{len(result.left):,}", "; ".join(x["value"] for x in result.left[:3]))
    table.add_row("missing on disk", f"{len(result.missing):,}", "; ".join(result.missing[:3]))
    reporter.out.print(table)
    reporter.out.print(" ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items()), markup=False)
    if result.one_off:
        reporter.out.print("the stack's database is not reachable from here: run its one-off step, then this "
                           "command again (it sends the artifacts):", markup=False)
        reporter.out.print(result.one_off, markup=False)


__all__ = ["main", "build_parser", "EXIT_USAGE"]
