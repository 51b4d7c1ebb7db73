"""The toy platform's component: one resource of its own per thing the components ask for."""

from typing import Any, Optional

import pulumi

from components.config import StackConfig
from components.platforms.base import (DatabaseEndpoint, DatabaseRequest, Image, ObjectStoreEndpoint,
                                       ObjectStoreRequest, PlatformOutputs, PublicEntry, SchemaGuard, ServiceEndpoint,
                                       ServiceRequest)


class ToyThing(pulumi.CustomResource):
    """Whatever the toy cloud makes; its type says which."""

    def __init__(self, kind: str, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions):
        super().__init__(f"toy:index:{kind}", name, props, opts)


class ToyPlatform(pulumi.ComponentResource):
    runtime_file_dir = "/toy/files"
    database_password_specials = "-_"

    def __init__(self, name: str, config: StackConfig, instance: str, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("toy:index:Platform", name, None, opts)
        self.config = config
        self.user_outputs = PlatformOutputs(cluster=pulumi.Output.from_input(f"{instance}-{config.toy.region}"))
        self.register_outputs({})

    def postgres_database(self, name: str, request: DatabaseRequest, owner_password: pulumi.Output[str],
                          opts: pulumi.ResourceOptions) -> DatabaseEndpoint:
        database = ToyThing("Database", name, {"name": request.database, "owner": request.username,
                                               "ownerPassword": owner_password,
                                               "extraDatabases": list(request.extra_databases)}, opts)
        return DatabaseEndpoint(host=database.urn.apply(lambda _: "db.toy"), port=pulumi.Output.from_input(5432))

    def object_store(self, name: str, request: ObjectStoreRequest, opts: pulumi.ResourceOptions) -> ObjectStoreEndpoint:
        bucket = ToyThing("Bucket", name, {"bucket": request.bucket}, opts)
        return ObjectStoreEndpoint(bucket=bucket.urn.apply(lambda _: request.bucket),
                                   artifact_root=pulumi.Output.from_input(f"s3://{request.bucket}/{request.prefix}"))

    def server_image(self, name: str, mlflow_version: str, opts: pulumi.ResourceOptions) -> Image:
        image = ToyThing("Image", name, {"mlflowVersion": mlflow_version}, opts)
        return Image(reference=image.urn.apply(lambda _: f"toy/mlflow:{mlflow_version}"))

    def public_image(self, name: str, reference: str, opts: pulumi.ResourceOptions) -> Image:
        return Image(reference=pulumi.Output.from_input(reference))

    def public_entry(self) -> PublicEntry:
        return PublicEntry(hostnames=pulumi.Output.from_input(list(self.config.hostnames)), scheme="https", port=443)

    def run_service(self, name: str, request: ServiceRequest, opts: pulumi.ResourceOptions) -> ServiceEndpoint:
        service = ToyThing("Service", name, {"serviceName": request.service_name, "role": request.role,
                                             "public": request.public, "spec": request.spec.apply(repr),
                                             "initSteps": [step.service_name for step in request.init]}, opts)
        return ServiceEndpoint(internal_url=service.urn.apply(lambda _: f"http://{request.service_name}:5000"))

    def guard_schema_upgrade(self, name: str, database_instance: Optional[pulumi.Output[str]], mlflow_version: str,
                             opts: pulumi.ResourceOptions) -> SchemaGuard:
        return SchemaGuard()

    def record_deployed_version(self, name: str, mlflow_version: str, rollout: ServiceEndpoint,
                                opts: pulumi.ResourceOptions) -> None:
        return None
