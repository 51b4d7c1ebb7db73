"""MetadataStore: the PostgreSQL database that holds MLflow's experiments, runs and registry."""

from typing import NotRequired, Optional, TypedDict

import pulumi
import pulumi_random as random

from components import render
from components.config import DatabaseConfig
from components.platforms.base import DatabaseRequest, Platform


class MetadataStoreArgs(TypedDict):
    platform: Platform
    """Where the database runs (local Docker, AWS RDS, Azure flexible server)."""
    database: DatabaseConfig
    """Database name, owner role, max_connections, PostgreSQL version."""
    auth_database: NotRequired[Optional[str]]
    """A second database on the same server, owned by the same role, for the auth app's users and
    permissions (auth.mode mlflow, oidc); None for none."""


class MetadataStore(pulumi.ComponentResource):
    """A PostgreSQL database and a non-superuser role for MLflow, with a generated password.

    `connection_uri` is what the server needs: driver named, password URL-encoded, secret. Whatever
    connects to it depends on this component, which covers the role's provisioning.
    """

    host: pulumi.Output[str]
    port: pulumi.Output[int]
    database: pulumi.Output[str]
    username: pulumi.Output[str]
    password: pulumi.Output[str]
    connection_uri: pulumi.Output[str]
    auth_database: Optional[pulumi.Output[str]]
    auth_connection_uri: Optional[pulumi.Output[str]]
    """The auth database's name and URI (secret), where one was asked for."""
    endpoint: Optional[pulumi.Output[str]]
    """`host:port` as operators look it up (an RDS endpoint); None where the database is private to
    the platform's containers."""
    admin_credentials: Optional[pulumi.Output[str]]
    """The id of the platform's secret with the database admin's credentials, where MLflow's role is
    set up by the server's tasks and the platform keeps them (RDS): they never pass through Pulumi."""
    admin_username: Optional[pulumi.Output[str]]
    admin_password: Optional[pulumi.Output[str]]
    """The database admin and its generated password (secret), where MLflow's role is set up by the
    server's tasks and Pulumi holds the admin password (Azure)."""
    instance_id: Optional[pulumi.Output[str]]
    """The platform's id of the database instance, for snapshots (RDS)."""

    def __init__(self, name: str, args: MetadataStoreArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("mlflow:index:MetadataStore", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        config = args["database"]
        auth_database = args.get("auth_database")

        platform = args["platform"]
        generated = random.RandomPassword(
            f"{name}-password", length=32, special=True, override_special=platform.database_password_specials,
            min_special=4, min_numeric=2, min_upper=2, min_lower=2, opts=child,
        )
        self.password = pulumi.Output.secret(generated.result)
        endpoint = platform.postgres_database(
            name,
            DatabaseRequest(database=config.name, username=config.username,
                            max_connections=config.max_connections, postgres_version=config.postgres_version,
                            extra_databases=(auth_database,) if auth_database else ()),
            self.password,
            child,
        )
        self.host = endpoint.host
        self.port = endpoint.port
        self.endpoint = endpoint.published_endpoint
        self.admin_credentials = endpoint.admin_credentials
        self.admin_username = endpoint.admin_username
        self.admin_password = (pulumi.Output.secret(endpoint.admin_password)
                               if endpoint.admin_password is not None else None)
        self.instance_id = endpoint.instance_id
        self.database = pulumi.Output.from_input(config.name)
        self.username = pulumi.Output.from_input(config.username)
        self.connection_uri = self._uri(config.username, config.name)
        self.auth_database = pulumi.Output.from_input(auth_database) if auth_database else None
        self.auth_connection_uri = self._uri(config.username, auth_database) if auth_database else None
        outputs = {
            "host": self.host, "port": self.port, "database": self.database, "username": self.username,
            "password": self.password, "connection_uri": self.connection_uri,
        }
        for key in ("auth_database", "auth_connection_uri", "endpoint", "admin_credentials", "admin_username",
                    "admin_password", "instance_id"):
            if getattr(self, key) is not None:
                outputs[key] = getattr(self, key)
        self.register_outputs(outputs)

    def _uri(self, username: str, database: str) -> pulumi.Output[str]:
        return pulumi.Output.secret(pulumi.Output.all(self.host, self.port, self.password).apply(
            lambda parts: render.backend_store_uri(username, parts[2], parts[0], int(parts[1]), database)))
