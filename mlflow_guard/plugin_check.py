"""Fails (exit 1) unless MLflow resolves the artifact stores to mlflow_guard's repositories: run at image build
(docker/mlflow/Dockerfile, `python -m mlflow_guard.plugin_check`) and by the tests against the venv.

mlflow_guard.artifacts subclasses MLflow 3.17.2's S3 and Blob repositories and imports private names of it
(`_UnsupportedMultipartUploadException`, `encode_base64`). MLflow registers plugins with
`register_entrypoints` (mlflow/store/artifact/artifact_repository_registry.py), which turns an ImportError or
AttributeError into a warning and keeps its own repository for the scheme: an image whose MLflow moved those names,
or whose layout lost the entry points, would run MLflow's repositories again without a word (its ten-block Blob
failures, no part limits, read+write part URLs). So the check asks what the server itself would get:

- `s3` and `wasbs` resolve to mlflow_guard.artifacts.S3Repository and AzureBlobRepository, and no plugin failed
  to register;
- `mlflow-artifacts` (the scheme clients use: the server answers it from --artifacts-destination) stays MLflow's
  MlflowArtifactsRepository, and so does every other built-in scheme mlflow_guard does not name;
- the server's own path to its store (mlflow/server/handlers.py, _get_artifact_repo_mlflow_artifacts, from
  --artifacts-destination) builds the guard's classes for an s3:// and a wasbs:// destination.
"""

from __future__ import annotations

import os
import sys
import warnings

EXPECTED = {"s3": "mlflow_guard.artifacts.S3Repository", "wasbs": "mlflow_guard.artifacts.AzureBlobRepository"}
MLFLOWS_OWN = {"mlflow-artifacts": "mlflow.store.artifact.mlflow_artifacts_repo.MlflowArtifactsRepository"}
DESTINATIONS = {"s3": "s3://plugin-check/artifacts",
                "wasbs": "wasbs://artifacts@plugincheck.blob.core.windows.net/artifacts"}


def _name(value: object) -> str:
    return f"{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', repr(value))}"


def problems() -> list[str]:
    """What is wrong (empty: the server would use mlflow_guard's repositories)."""
    found: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from mlflow.store.artifact import artifact_repository_registry as registry
    for warning in caught:
        if "artifact repository" in str(warning.message):
            found.append(f"MLflow skipped a plugin: {warning.message}")
    resolved = registry.get_registered_artifact_repositories()
    for scheme, expected in {**EXPECTED, **MLFLOWS_OWN}.items():
        if _name(resolved.get(scheme)) != expected:
            found.append(f"{scheme}:// resolves to {_name(resolved.get(scheme))}, not {expected}")

    from mlflow.server import ARTIFACTS_DESTINATION_ENV_VAR
    from mlflow.server import handlers

    for scheme, destination in DESTINATIONS.items():
        # Built as `mlflow server --artifacts-destination` builds it; no request leaves (the Blob client connects
        # lazily; an account key keeps azure-identity out of it).
        saved = dict(os.environ)
        os.environ[ARTIFACTS_DESTINATION_ENV_VAR] = destination
        os.environ["AZURE_STORAGE_ACCESS_KEY"] = "cGx1Z2luLWNoZWNr"
        handlers._artifact_repo = None
        try:
            built = _name(type(handlers._get_artifact_repo_mlflow_artifacts()))
        except Exception as error:  # noqa: BLE001 - reported: the build fails on it
            built = f"an error ({type(error).__name__}: {error})"
        finally:
            handlers._artifact_repo = None
            os.environ.clear()
            os.environ.update(saved)
        if built != EXPECTED[scheme]:
            found.append(f"the server builds {built} for --artifacts-destination {destination}, not {EXPECTED[scheme]}")
    return found


WRITTEN_FOR = "3.17.2"
"""The MLflow mlflow_guard.artifacts copies code of; `artifacts.transfer: direct` needs exactly it
(components/config.py, DIRECT_TRANSFERS_MLFLOW_VERSION). Another version serves proxied stacks only, whose Nginx
answers the routes that reach the plugin's one method (create_multipart_upload) with 501: there the plugin is not
needed, and refusing the image would refuse an upgrade, or going back, to another 3.17+ MLflow."""


def main() -> int:
    found = problems()  # first: MLflow's registry warns once, when it is first imported
    import mlflow

    if mlflow.__version__ != WRITTEN_FOR:
        for problem in found:
            print(f"mlflow_guard.plugin_check: {problem} (not required: MLflow {mlflow.__version__} serves "
                  f"artifacts.transfer proxied only)", file=sys.stderr)
        found = [problem for problem in found if problem.startswith(tuple(f"{s}://" for s in MLFLOWS_OWN))]
    for problem in found:
        print(f"mlflow_guard.plugin_check: {problem}", file=sys.stderr)
    if found:
        print("mlflow_guard.plugin_check: MLflow would run its own artifact repositories: the image is refused "
              "(mlflow_guard/artifacts.py is written against MLflow 3.17.2)", file=sys.stderr)
        return 1
    if mlflow.__version__ != WRITTEN_FOR:
        print(f"mlflow_guard.plugin_check: MLflow {mlflow.__version__}: the image serves artifacts.transfer "
              f"proxied only (direct needs {WRITTEN_FOR})")
        return 0
    print(f"mlflow_guard.plugin_check: MLflow {mlflow.__version__} resolves s3:// and wasbs:// to mlflow_guard's "
          "repositories")
    return 0


if __name__ == "__main__":
    sys.exit(main())
