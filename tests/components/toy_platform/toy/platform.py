"""The toy platform's component: one resource of its own per thing the components ask for. Its
services are a simple container runtime's (toy/runtime.py reads them back for the platform-faithful
rehearsal): each container's command, env, secret env values, user and health check, init containers
first; files written from env vars by the wrapper both clouds use (containers.with_files)."""

from typing import Any, Optional

import pulumi

from components.config import StackConfig
from components.names import SERVER_IMAGE
from components.platforms.containers import file_env_name, output_dict, with_files
from components.spec import ContainerSpec
from components.platforms.base import (DatabaseEndpoint, DatabaseRequest, Image, ObjectStoreEndpoint,
                                       ObjectStoreRequest, PlatformOutputs, PublicEntry, SchemaGuard, ServiceEndpoint,
                                       ServiceRequest)


class ToyThing(pulumi.CustomResource):
    """Whatever the toy cloud makes; its type says which."""

    def __init__(self, kind: str, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions):
        super().__init__(f"toy:index:{kind}", name, props, opts)


class ToyPlatform(pulumi.ComponentResource):
    runtime_file_dir = "/tmp/toy-files"
    database_password_specials = "-_"

    def __init__(self, name: str, config: StackConfig, instance: str, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("toy:index:Platform", name, None, opts)
        self.config = config
        self.user_outputs = PlatformOutputs(cluster=pulumi.Output.from_input(f"{instance}-{config.toy.region}"))
        self.register_outputs({})

    def postgres_database(self, name: str, request: DatabaseRequest, owner_password: pulumi.Output[str],
                          opts: pulumi.ResourceOptions) -> DatabaseEndpoint:
        database = ToyThing("Database", name, {"name": request.database, "owner": request.username,
                                               "ownerPassword": owner_password, "host": "db.toy", "port": 5432,
                                               "extraDatabases": list(request.extra_databases)}, opts)
        return DatabaseEndpoint(host=database.urn.apply(lambda _: "db.toy"), port=pulumi.Output.from_input(5432))

    def object_store(self, name: str, request: ObjectStoreRequest, opts: pulumi.ResourceOptions) -> ObjectStoreEndpoint:
        bucket = ToyThing("Bucket", name, {"bucket": request.bucket}, opts)
        return ObjectStoreEndpoint(bucket=bucket.urn.apply(lambda _: request.bucket),
                                   artifact_root=pulumi.Output.from_input(f"s3://{request.bucket}/{request.prefix}"))

    def server_image(self, name: str, mlflow_version: str, opts: pulumi.ResourceOptions) -> Image:
        image = ToyThing("Image", name, {"mlflowVersion": mlflow_version}, opts)
        return Image(reference=image.urn.apply(lambda _: f"toy/{SERVER_IMAGE}:{mlflow_version}"))

    def public_image(self, name: str, reference: str, opts: pulumi.ResourceOptions) -> Image:
        return Image(reference=pulumi.Output.from_input(reference))

    def public_entry(self) -> PublicEntry:
        return PublicEntry(hostnames=pulumi.Output.from_input(list(self.config.hostnames)), scheme="https", port=443)

    def run_service(self, name: str, request: ServiceRequest, opts: pulumi.ResourceOptions) -> ServiceEndpoint:
        secrets: dict[str, pulumi.Output[str]] = dict(request.secret_env)
        for step in request.init:
            secrets.update(step.secret_env)
        secrets.update({file_env_name(path): content for path, content in request.runtime_files.items()})
        runtime_paths = list(request.runtime_files)

        def containers(specs: list) -> list[dict]:
            *init, main = specs
            files = {file_env_name(path): content for path, content in main.files.items()}
            return [*(_container(spec, spec.command, dict(spec.env), list(step.secret_env))
                      for step, spec in zip(request.init, init)),
                    _container(main, with_files(main.command, [*main.files, *runtime_paths]), {**main.env, **files},
                               [*main.secret_env_names, *map(file_env_name, runtime_paths)])]

        service = ToyThing("Service", name, {
            "serviceName": request.service_name, "role": request.role, "public": request.public,
            "initSteps": [step.service_name for step in request.init],
            "containers": pulumi.Output.all(*(step.spec for step in request.init), request.spec).apply(containers),
            "secrets": pulumi.Output.secret(output_dict(secrets))}, opts)
        url = pulumi.Output.all(service.urn, request.spec).apply(
            lambda parts: f"http://{request.service_name}:{parts[1].ports[0]}")
        return ServiceEndpoint(internal_url=url)

    def guard_schema_upgrade(self, name: str, database_instance: Optional[pulumi.Output[str]], mlflow_version: str,
                             opts: pulumi.ResourceOptions) -> SchemaGuard:
        return SchemaGuard()

    def record_deployed_version(self, name: str, mlflow_version: str, rollout: ServiceEndpoint,
                                opts: pulumi.ResourceOptions) -> None:
        return None


def _container(spec: ContainerSpec, command, env: dict[str, str], secret_names: list[str]) -> dict:
    """One container as the toy runtime takes it: run as `user` (else the image's), its health check an HTTP GET."""
    check = spec.health_check
    return {"name": spec.name, "image": spec.image, "command": list(command), "env": env, "secretEnv": secret_names,
            "user": spec.user, "ports": list(spec.ports),
            "healthCheck": {"path": check.http_path, "port": check.port} if check and check.http_path else None}
