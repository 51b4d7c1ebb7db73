"""Artifact locations of a laptop's MLflow: where each one points on disk, and its place on the stack.

A location stored by MLflow on a laptop is one of
  - a plain absolute path (`/home/me/mlruns/1/<run>/artifacts`: MLflow 3's defaults with sqlite:///mlflow.db),
  - a `file://` URI (`file:///home/me/mlruns/1`, `file:/home/...`; older MLflow, FileStore sources),
  - a relative path (`mlruns/1/...`, `./mlruns/...`: a hand-set location; resolved next to the database),
  - `mlflow-artifacts:/1/...` with or without a host (`mlflow server` on the laptop, over `./mlartifacts`),
  - anything else: a storage URI of the team's own (`s3://`, `gs://`, `wasbs://`, `abfss://`, `hdfs://`,
    `dbfs:/`, `http(s)://`) or a reference (`runs:/`, `models:/`): left as it is.
A Windows path (`C:\\...`, `file:///C:/...`, `\\\\server\\share`) is refused: it cannot be read here.

On the stack every location takes the form the server itself gives (MLflow 3.17.2,
SqlAlchemyStore: `append_to_uri_path(<experiment location>, ...)` under `--serve-artifacts` with no
`--default-artifact-root`, i.e. `mlflow-artifacts:/`):
  experiment    <root>/<experiment id>
  run           <root>/<experiment id>/<run id>/artifacts
  logged model  <root>/<experiment id>/models/<model id>/artifacts
  trace         <root>/<experiment id>/traces/<trace id>/artifacts
where <root> is `mlflow-artifacts:` (`mlflow-artifacts:/workspaces/<name>` for a workspace when the
server runs with workspaces: sqlalchemy_workspace_store.py, _get_artifact_location).
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from migration.errors import RefusedError

SERVED_SCHEME = "mlflow-artifacts"
_WINDOWS_DRIVE = re.compile(r"^/?[A-Za-z]:[\\/]")
_URI = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*):")

MOVED, LEFT = "moved", "left"


class WindowsLocation(RefusedError):
    """A location written on Windows: this machine cannot read it."""


@dataclass(frozen=True)
class Place:
    """Where a stored location points: `path` on this machine (moved when under the artifact root), or
    nowhere here (left: another storage, or a reference such as runs:/ and models:/)."""

    value: str
    path: Path | None  # absolute local path, or None when the location is not a local one

    def under(self, root: Path) -> bool:
        return self.path is not None and (self.path == root or root in self.path.parents)


def local_place(value: str, *, base: Path, served_root: Path) -> Place:
    """The local path a stored location names (None for every non-local form).

    `base` resolves relative paths (the database's directory); `served_root` is the directory a laptop's
    `mlflow server` served `mlflow-artifacts:/` from (its --artifacts-destination, ./mlartifacts)."""
    text = value.strip()
    if not text:
        return Place(value, None)
    if _WINDOWS_DRIVE.match(text) or text.startswith("\\\\") or _windows_file_uri(text):
        raise WindowsLocation(f"artifact location {value} is a Windows path: it cannot be read on this machine",
                              hint="run the move on the machine that wrote it, or copy the files here and give "
                                   "--artifacts DIR")
    match = _URI.match(text)
    if match is None:  # a path: absolute, or relative to the database's directory
        path = Path(text)
        return Place(value, _normal(path if path.is_absolute() else base / path))
    scheme = match.group("scheme").lower()
    parts = urlsplit(text)
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            return Place(value, None)  # file://otherhost/...: not on this machine
        return Place(value, _normal(Path(unquote(parts.path))))
    if scheme == SERVED_SCHEME:
        relative = unquote(parts.path).lstrip("/")
        return Place(value, _normal(served_root / relative) if relative else _normal(served_root))
    return Place(value, None)


def _windows_file_uri(text: str) -> bool:
    if not text.lower().startswith("file:"):
        return False
    return bool(_WINDOWS_DRIVE.match(unquote(urlsplit(text).path)))


def _normal(path: Path) -> Path:
    """Absolute and without `..`/`.` (symlinks are not resolved: the layout the database names is kept)."""
    return Path(posixpath.normpath(str(path.absolute())))


def served_uri(root: str, *parts: str) -> str:
    """`mlflow-artifacts:/1/<run>/artifacts` from root `mlflow-artifacts:` (or `mlflow-artifacts:/workspaces/x`)."""
    joined = posixpath.join(*[p.strip("/") for p in parts if p.strip("/")]) if parts else ""
    head = root.rstrip("/")
    if head.endswith(":"):
        return f"{head}/{joined}"
    return f"{head}/{joined}" if joined else head


def served_path(uri: str) -> str:
    """The path under the server's artifacts destination that a `mlflow-artifacts:/...` URI names."""
    return unquote(urlsplit(uri).path).lstrip("/")


def experiment_root(root: str, workspace: str | None, workspaces_enabled: bool) -> str:
    """The root an experiment's location starts with on the stack."""
    if workspaces_enabled:
        return served_uri(root, "workspaces", workspace or "default")
    return root


@dataclass(frozen=True)
class DirMove:
    """One directory of the laptop and the URI it becomes on the stack."""

    source: Path
    target: str  # mlflow-artifacts:/...

    def rewrite(self, path: Path) -> str:
        rest = PurePosixPath(path).relative_to(PurePosixPath(self.source)).as_posix()
        return self.target if rest == "." else served_uri(self.target, rest)


def rewrite_inside(place: Place, moves: list[DirMove]) -> str | None:
    """A location inside a moved directory (a model version's source, a dataset's uri) on the stack;
    `moves` longest source first. None when no moved directory holds it."""
    if place.path is None:
        return None
    for move in moves:
        if place.under(move.source):
            return move.rewrite(place.path)
    return None


def default_artifact_dir(locations: list[str], *, base: Path) -> Path:
    """What `--artifacts` defaults to: the directory the source's experiment locations lie in (MLflow's
    `<root>/<experiment id>`), or ./mlartifacts next to the database for `mlflow-artifacts:/` sources
    (`mlflow server`'s default destination), or ./mlruns next to it."""
    parents: dict[Path, int] = {}
    served = 0
    for value in locations:
        match = _URI.match(value.strip())
        if match and match.group("scheme").lower() == SERVED_SCHEME:
            served += 1
            continue
        try:
            place = local_place(value, base=base, served_root=base / "mlartifacts")
        except WindowsLocation:
            continue
        if place.path is not None:
            parents[place.path.parent] = parents.get(place.path.parent, 0) + 1
    if parents and max(parents.values()) >= served:
        return max(parents, key=lambda p: (parents[p], -len(str(p))))
    if served:
        return _normal(base / "mlartifacts")
    return _normal(base / "mlruns")
