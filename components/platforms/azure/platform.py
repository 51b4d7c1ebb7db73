"""AzurePlatform: PostgreSQL flexible server, Blob Storage and Azure Container Apps.

Shape: a resource group (or an existing one) holding a virtual network with a subnet delegated to
Container Apps and one delegated to the flexible server, a private DNS zone for the server, a
Container Apps environment in the first subnet, and a private registry. Two container apps:
`mlflow-proxy` (the rendered Nginx, the environment's ingress in front of it: HTTPS, IP
restrictions) and `mlflow-server` (MLflow, reachable only inside the environment, over TCP on
`mlflow-server:5000`, exactly as on `local`, so that Nginx's Host header reaches MLflow unchanged).
The server's replicas first set MLflow's role up with the flexible server's administrator (Pulumi
generates that password; MLflow's container never gets it), then upgrade the schema, then serve.

No storage key anywhere: the storage account refuses shared keys, and the server reads and writes
its container as a user-assigned managed identity holding "Storage Blob Data Contributor" on that
container only (MLflow's Blob repository takes it from AZURE_CLIENT_ID through
DefaultAzureCredential); with artifacts.transfer direct also "Storage Blob Delegator" on the account, to
sign the clients' upload URLs, whose networks the account's firewall then admits. Secrets live in each
app's secret store, referenced by the env vars.
"""

import hashlib
import ipaddress
import json
import re
from typing import Mapping, Optional, Sequence

import dns.exception
import dns.resolver

import pulumi
import pulumi_azure_native as azure
import pulumi_command as command
import pulumi_docker as docker
import pulumi_random as random

from components import render
from components.config import StackConfig
from components.names import PROXY_SERVICE, SERVER_IMAGE, SERVER_SERVICE, URI_PASSWORD_SPECIALS
from components.platforms.base import (
    DatabaseEndpoint,
    DatabaseRequest,
    Image,
    ObjectStoreEndpoint,
    ObjectStoreRequest,
    PlatformOutputs,
    PublicEntry,
    ScheduledJob,
    SchemaGuard,
    ServiceEndpoint,
    ServiceRequest,
    images_fingerprint,
    mirror_image_build,
    server_image_build,
)
from components.platforms.azure import alerts
from components.platforms.containers import file_env_name, output_dict, registry_token, secret_digest, with_files
from components.platforms.azure.cli_login import with_fresh_az_login

# The user name docker logs in to a registry with when the password is an ACR token.
ACR_TOKEN_USERNAME = "00000000-0000-0000-0000-000000000000"
# Built-in role definitions (the same ids in every tenant).
ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"
ROLE_PROPAGATION_SECONDS = 300
"""How long apps and jobs wait after their pull grants were made (see _registry)."""
STORAGE_BLOB_DATA_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
# "Storage Blob Delegator": only Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey/action
# (https://learn.microsoft.com/en-us/azure/role-based-access-control/built-in-roles/storage#storage-blob-delegator).
# Get User Delegation Key is an operation on the account's blob service, so the role is assigned at the account
# or above (https://learn.microsoft.com/en-us/rest/api/storageservices/get-user-delegation-key, "Authorization").
# A user-delegation SAS grants no more than its signer may do itself: the intersection with the identity's data
# roles, here the container's Storage Blob Data Contributor
# (https://learn.microsoft.com/en-us/rest/api/storageservices/create-user-delegation-sas).
STORAGE_BLOB_DELEGATOR = "db58b8e5-c6ad-4a2a-8342-4190687cbf4a"
# Container Apps lets a replica finish its requests for at most this long after it is told to stop.
MAX_TERMINATION_GRACE_SECONDS = 600
DIGEST_ENV = "MLFLOW_PLATFORM_SECRETS_SHA256"
# Container Apps' standard ingress ends a request (and drops an idle connection) after 240 s.
STANDARD_INGRESS_TIMEOUT_SECONDS = 240
# Longest names Azure takes (https://learn.microsoft.com/en-us/azure/azure-resource-manager/management/resource-name-rules):
# resource groups 1-90; virtual networks 2-64; user-assigned identities 3-128; Log Analytics workspaces 4-63;
# Container Apps environments 2-60 and jobs 2-32; flexible servers 3-63; a DNS label 63 (RFC 1035).
NAME_LENGTHS = {"resource_group": 90, "vnet": 64, "identity": 128, "workspace": 63, "environment": 60, "job": 32,
                "server": 63, "dns_label": 63}
# The flexible server's disk grows by itself (auto-grow); its configured size is then only the initial one.
STORAGE_AUTO_GROW = "Enabled"
STORAGE_SIZE_PROPERTY = "storage.storageSizeGB"
# The environment's zone redundancy is set when it is created, never after.
ZONE_REDUNDANT_PROPERTY = "zoneRedundant"
# So is the flexible server's geo-redundant backup: "Configuring geo-redundant storage for backup is only
# allowed during server create" (Azure/azure-policy, built-in-policies/policyDefinitions/SQL/
# GeoRedundant_DBForPostgreSQL_Audit.json); a changed azure.dbGeoRedundantBackup is ignored (README).
GEO_REDUNDANT_BACKUP_PROPERTY = "backup.geoRedundantBackup"
# The server app's tags: the MLflow version it runs, and the UTC time that version's rollout started
# (the moment a point-in-time restore goes back to). Written by this stack with the app itself, read back
# before the next change (guard_schema_upgrade).
DEPLOYED_VERSION_TAG = "mlflow-deployed-version"
ROLLOUT_STARTED_TAG = "mlflow-rollout-started"
# On-demand backups of the flexible server: not on the Burstable tier, at most 7 per server, each kept for
# the server's backup retention ("On-demand backup feature is currently not supported with the Burstable
# server compute tier"; "You can take up to 7 on-demand backups":
# https://learn.microsoft.com/en-us/azure/postgresql/flexible-server/concepts-backup-restore#on-demand-backups).
BURSTABLE_TIER = "Burstable"
MAX_ON_DEMAND_BACKUPS = 7
# The Azure error a look-up of a container app that does not exist (yet) answers.
NOT_FOUND = ("ResourceNotFound", "NotFound", "was not found")
# How long the domain's DNS check waits for an answer.
DNS_LIFETIME_SECONDS = 5


def resolve(name: str, record_type: str) -> list[str]:
    """The answers of public DNS for `name` (CNAME targets and A addresses without the trailing dot,
    TXT strings joined); [] when DNS says there is none. A DNS that cannot be asked (a timeout, no
    server answering) stops the run instead of counting as "no record": the answer decides whether the
    domain is bound, and a plan made with one answer fails its `up --plan` with the other (review 25,
    azure 4 F4). Module-level so that tests replace it."""
    resolver = dns.resolver.Resolver()
    resolver.lifetime = DNS_LIFETIME_SECONDS
    try:
        answer = resolver.resolve(name, record_type)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except dns.exception.DNSException as error:
        raise pulumi.RunError(f"azure.domain: could not ask DNS for the {record_type} record of {name} "
                              f"({type(error).__name__}: {error}); run again once DNS answers") from None
    if record_type == "TXT":
        return [b"".join(record.strings).decode() for record in answer]
    return [record.to_text().rstrip(".").lower() for record in answer]


def missing_domain_records(domain: str, app_host: str, static_ip: str, verification_id: Optional[str]) -> list[str]:
    """The DNS records Azure checks when a host name is added to a container app that `domain` does not
    have yet: CNAME `domain` -> the app's default host name (an apex domain: A -> the environment's static
    IP), and TXT `asuid.<domain>` = the subscription's verification id
    (https://learn.microsoft.com/en-us/azure/container-apps/custom-domains-managed-certificates). On a
    fresh stack the CNAME cannot exist yet: the app's host name is known only once the environment is
    (https://github.com/microsoft/azure-container-apps/issues/525)."""
    missing = []
    if app_host.lower() not in resolve(domain, "CNAME") and static_ip not in resolve(domain, "A"):
        missing.append(f"CNAME {domain} -> {app_host} (for an apex domain: A {domain} -> {static_ip})")
    if not verification_id or verification_id not in resolve(f"asuid.{domain}", "TXT"):
        missing.append(f"TXT asuid.{domain} = {verification_id}")
    return missing


SERVER_PROPERTIES_AZURE_MOVES = ("availabilityZone", "highAvailability.standbyAvailabilityZone", "storage.iops",
                                 "storage.tier")
"""What Azure changes on the flexible server by itself: a high-availability failover swaps the zones (Terraform's
azurerm docs for postgresql_flexible_server: "the zone will be updated"), auto-grow raises the disk's performance tier
and IOPS with its size. A refresh copies them into the inputs; not ignored, the nightly drift check failed after
either and an `up` would move them back (review 25, azure 7 F3)."""
MANAGED_CERTIFICATE_ID_PROPERTY = "configuration.ingress.customDomains[*].certificateId"
ROLLOUT_CLOCK = "date -u +%Y-%m-%dT%H:%M:%SZ"
"""The UTC time, in the form Azure's point-in-time restore takes, on the machine running `pulumi up`."""


PREMIUM_IDLE_MINUTES = (4, 30)
"""Premium ingress's request idle timeout in whole minutes: "Default 4, Minimum 4, Maximum 30"
(https://learn.microsoft.com/en-us/azure/container-apps/premium-ingress); Azure refuses less (review 25, azure 5 F1)."""


def premium_idle_minutes(timeout_seconds: int) -> int:
    """The whole minutes that outlast proxy.timeoutSeconds, at least premium ingress's minimum."""
    return max(PREMIUM_IDLE_MINUTES[0], -(-timeout_seconds // 60))


def _bound_domains(app: Optional[dict]) -> list[str]:
    """The host names a container app (as the look-up answers it) holds now."""
    ingress = ((app or {}).get("configuration") or {}).get("ingress") or {}
    return [domain.get("name") for domain in ingress.get("customDomains") or []]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")


def _backup_name(version: str, unique: str) -> str:
    """`mlflow-before-<version>-<unique>`: lower-case letters, digits and '-' (as Azure's own examples, e.g.
    `ondemandbackup-20250101T183022`: https://learn.microsoft.com/en-us/cli/azure/postgres/flexible-server/backup).
    The random part is drawn anew whenever the version changes, so the go-back path taken twice names a new one."""
    return f"mlflow-before-{_slug(version)}"[:56] + f"-{unique}"


ON_DEMAND_BACKUP_SCRIPT = with_fresh_az_login(
    'az postgres flexible-server backup create --subscription "$SUBSCRIPTION" --resource-group "$RESOURCE_GROUP" '
    '--name "$SERVER" --backup-name "$BACKUP_NAME" --output none')
"""An on-demand backup of the flexible server (https://learn.microsoft.com/en-us/cli/azure/postgres/flexible-server/
backup#az-postgres-flexible-server-backup-create); the values come through the environment, never the shell. After
the fresh CLI login deploy.yml's apply asks for (cli_login.py): it runs late in a long `up`."""
NO_SECOND_BACKUP = ":"
"""The backup's `update`: a change of its script or environment (not of the version, its trigger, which replaces it)
runs this, not a second backup under the same name (pulumi-command runs `create` again on an update without one)."""


def _azure_name(text: str, kind: str, suffix: str = "") -> str:
    """`text` + `suffix` under the strictest of Azure's rules for the names this platform gives: lower-case
    letters, digits and single hyphens, a letter first, a letter or digit last (Container Apps environments
    and jobs, flexible servers, Log Analytics workspaces, DNS labels), cut to `kind`'s length so that
    `suffix` still fits. A stack called `Prod` or `eu_prod` gives valid names."""
    name = re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9]+", "-", text.lower())).strip("-")
    if not name[:1].isalpha():
        name = f"m-{name}".rstrip("-")
    return name[:NAME_LENGTHS[kind] - len(suffix)].rstrip("-") + suffix


def _alphanumeric(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


class AzurePlatform(pulumi.ComponentResource):
    """Realizes the components' needs on Azure. The resource group, network, private DNS zone,
    identities, registry and Container Apps environment are platform-wide: children of this
    component. The database, the storage account and the apps are created under the component that
    asks for them. Azure names start with `<instance>-<stack>` (storage account and registry names,
    which allow letters and digits only and are global, add a random suffix)."""

    resource_group: pulumi.Output[str]
    environment: pulumi.Output[str]
    registry: pulumi.Output[str]
    domain_verification_id: pulumi.Output[Optional[str]]
    """The environment's custom domain verification id: TXT `asuid.<domain>` holds it."""
    warning: Optional[pulumi.Output[str]]

    runtime_file_dir = "/tmp/mlflow-platform"
    # The flexible server takes any printable character; the URI encodes them (render.backend_store_uri).
    database_password_specials = URI_PASSWORD_SPECIALS

    def __init__(self, name: str, config: StackConfig, instance: str,
                 opts: Optional[pulumi.ResourceOptions] = None, *, moved_from_top_level: bool = False):
        # moved_from_top_level: the azure stack never had a layout before the component.
        super().__init__("mlflow:index:AzurePlatform", name, None, opts)
        self.settings = config.azure
        self.server = config.server
        self.proxy = config.proxy
        self.images = images_fingerprint(config.mlflow_version, [config.proxy.image])
        self.prefix = _azure_name(f"{instance}-{pulumi.get_stack()}", "resource_group")
        self._child_prefix = name
        self.provider = azure.Provider(f"{name}-azure", location=self.settings.location,
                                       opts=pulumi.ResourceOptions(parent=self))
        self.opts = pulumi.ResourceOptions(provider=self.provider)
        self.protect = self.settings.protect_resources
        self.client = azure.authorization.get_client_config_output(
            opts=pulumi.InvokeOutputOptions(provider=self.provider))
        self.suffix = random.RandomString(f"{name}-suffix", length=6, special=False, upper=False,
                                          opts=pulumi.ResourceOptions(parent=self))
        if self.settings.resource_group_name:
            self.resource_group = pulumi.Output.from_input(self.settings.resource_group_name)
        else:
            group = azure.resources.ResourceGroup(**self._shared("resource-group"), resource_group_name=self.prefix)
            self.resource_group = group.name
        self._network()
        self._identities()
        self._registry()
        self._environment()
        self.alerts = alerts.AlertTarget(
            resource_group=self.resource_group, prefix=self.prefix,
            action_group_id=alerts.action_group(f"{name}-alerts", self.resource_group, self.prefix,
                                                self.settings.alarm_email, pulumi.ResourceOptions(parent=self,
                                                provider=self.provider)).id)

        self.environment = self.managed_environment.name
        self.registry = self.container_registry.login_server
        self.database_server: Optional[azure.dbforpostgresql.Server] = None
        self.last_server_write: Optional[pulumi.Resource] = None
        self.server_tags: Optional[dict] = None
        self.domain_missing = self._domain_gate()
        self.warning = self._warning()
        self.user_outputs = PlatformOutputs(resource_group=self.resource_group, warning=self.warning,
                                            domain_verification_id=self.domain_verification_id if self.settings.domain
                                            else None)
        outputs = {"resource_group": self.resource_group, "environment": self.environment, "registry": self.registry,
                   "domain_verification_id": self.domain_verification_id}
        if self.warning is not None:
            outputs["warning"] = self.warning
        self.register_outputs(outputs)

    def _warning(self) -> Optional[pulumi.Output[str]]:
        """What the stack output `warning` says: an internal ingress, a domain not bound yet."""
        notes = []
        if self.settings.internal:
            notes.append(pulumi.Output.from_input(
                "The ingress is inside the virtual network only (azure.internal): reach it over VPN or peering, "
                "and resolve its name with a private DNS zone for the environment's default domain."))
        if self.domain_missing is not None:
            domain = self.settings.domain
            notes.append(self.domain_missing.apply(lambda missing: (
                f"azure.domain {domain} is not bound yet (Azure checks its DNS records when the name is added): "
                f"create {' and '.join(missing)}, then run `pulumi up` again to bind it"
                + (" and have Azure issue its certificate." if self.settings.managed_certificate else ".")
                if missing else "")))
        if not notes:
            return None
        return pulumi.Output.all(*notes).apply(lambda texts: " ".join(t for t in texts if t) or None)

    def _existing_app(self, container_app_name: str) -> pulumi.Output[Optional[dict]]:
        """The container app as Azure holds it before this run changes it; None when it does not exist
        (a first deploy): the look-up then answers "not found", which must not fail the deploy, so it is
        made here rather than through get_container_app_output, whose failure would fail the program."""
        async def read(resource_group: str) -> Optional[dict]:
            try:
                return await pulumi.runtime.invoke_async(
                    "azure-native:app:getContainerApp",
                    {"resourceGroupName": resource_group, "containerAppName": container_app_name},
                    pulumi.InvokeOptions(provider=self.provider))
            except Exception as error:  # the invoke raises a plain Exception with Azure's error in its text
                if any(marker in str(error) for marker in NOT_FOUND):
                    return None
                raise

        return self.resource_group.apply(read)

    def _domain_gate(self) -> Optional[pulumi.Output[list[str]]]:
        """The DNS records azure.domain still lacks ([] once it may be bound), checked when this run
        knows the environment's default domain and static IP. A name the proxy app already holds stays
        bound whatever DNS answers now (a DNS hiccup during a deploy must not unbind it)."""
        s = self.settings
        if not s.domain:
            return None
        environment = self.managed_environment
        bound = self._existing_app(PROXY_SERVICE).apply(lambda app: s.domain in _bound_domains(app))
        return pulumi.Output.all(bound, environment.default_domain, environment.static_ip,
                                 self.domain_verification_id).apply(
            lambda parts: [] if parts[0] else missing_domain_records(s.domain, f"{PROXY_SERVICE}.{parts[1]}",
                                                                     parts[2], parts[3]))

    def _shared(self, short_name: str, **options) -> dict:
        """Name and options of a platform-wide resource: named after this component, its child, on
        the stack's Azure provider."""
        return {"resource_name": f"{self._child_prefix}-{short_name}",
                "opts": pulumi.ResourceOptions(parent=self, provider=self.provider, **options)}

    def _merge(self, opts: pulumi.ResourceOptions, **extra) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions.merge(pulumi.ResourceOptions.merge(opts, self.opts),
                                            pulumi.ResourceOptions(**extra))

    def _role(self, definition: str) -> pulumi.Output[str]:
        return self.client.subscription_id.apply(
            lambda subscription: f"/subscriptions/{subscription}/providers/Microsoft.Authorization/"
                                 f"roleDefinitions/{definition}")

    # --- platform-wide resources ------------------------------------------------------------------

    def _network(self) -> None:
        """Container Apps (workload profiles) in a /23, the flexible server in a /24 of its own;
        both delegated. The apps' subnet reaches Blob Storage through a service endpoint."""
        network = ipaddress.ip_network(self.settings.vnet_cidr)
        apps_block = next(network.subnets(new_prefix=23))
        database_block = list(network.subnets(new_prefix=24))[2]
        vnet = azure.network.VirtualNetwork(
            **self._shared("vnet", ignore_changes=["subnets"]), resource_group_name=self.resource_group,
            virtual_network_name=_azure_name(self.prefix, "vnet"), address_space={"address_prefixes": [str(network)]})
        self.apps_subnet = azure.network.Subnet(
            **self._shared("apps-subnet"), resource_group_name=self.resource_group, virtual_network_name=vnet.name,
            subnet_name="container-apps", address_prefix=str(apps_block),
            delegations=[{"name": "container-apps", "service_name": "Microsoft.App/environments"}],
            service_endpoints=[{"service": "Microsoft.Storage"}])
        self.database_subnet = azure.network.Subnet(
            **self._shared("database-subnet", depends_on=[self.apps_subnet]),  # one subnet change at a time
            resource_group_name=self.resource_group, virtual_network_name=vnet.name, subnet_name="database",
            address_prefix=str(database_block),
            delegations=[{"name": "flexible-server", "service_name": "Microsoft.DBforPostgreSQL/flexibleServers"}])
        self.dns_zone = azure.privatedns.PrivateZone(
            **self._shared("database-dns"), resource_group_name=self.resource_group, location="global",
            private_zone_name=f"{_azure_name(self.prefix, 'dns_label')}.private.postgres.database.azure.com")
        self.dns_link = azure.privatedns.VirtualNetworkLink(
            **self._shared("database-dns-link"), resource_group_name=self.resource_group, location="global",
            private_zone_name=self.dns_zone.name, virtual_network={"id": vnet.id}, registration_enabled=False)

    def _identities(self) -> None:
        """One identity per app: the server's may use the artifact container, the proxy's only pull."""
        self.server_identity = azure.managedidentity.UserAssignedIdentity(
            **self._shared("server-identity"), resource_group_name=self.resource_group,
            resource_name_=_azure_name(self.prefix, "identity", "-server"))
        self.proxy_identity = azure.managedidentity.UserAssignedIdentity(
            **self._shared("proxy-identity"), resource_group_name=self.resource_group,
            resource_name_=_azure_name(self.prefix, "identity", "-proxy"))

    def _registry(self) -> None:
        self.container_registry = azure.containerregistry.Registry(
            **self._shared("registry", protect=self.protect), resource_group_name=self.resource_group,
            registry_name=self.suffix.result.apply(lambda suffix: f"{_alphanumeric(self.prefix)[:40]}{suffix}"),
            sku={"name": self.settings.registry_sku}, admin_user_enabled=False, anonymous_pull_enabled=False)
        self.pull_grants = {
            who: azure.authorization.RoleAssignment(
                **self._shared(f"{who}-acr-pull"), scope=self.container_registry.id,
                role_definition_id=self._role(ACR_PULL), principal_id=identity.principal_id,
                principal_type="ServicePrincipal")
            for who, identity in (("server", self.server_identity), ("proxy", self.proxy_identity))}
        # Azure honours a new role assignment only after a while ("it can take up to 10 minutes for changes to
        # take effect": https://learn.microsoft.com/en-us/azure/role-based-access-control/troubleshooting); a
        # first revision that pulls before that fails ("unable to pull image using Managed identity ... for
        # registry": https://github.com/microsoft/azure-container-apps/issues/1061), and with it the first `up`.
        # Apps and jobs wait for this pause after the grants (on a first deploy it runs beside the database's
        # creation, which takes longer; later, only when a grant is made again).
        grants = list(self.pull_grants.values())
        self.pull_grants_honoured = command.local.Command(
            **self._shared("acr-pull-propagation", depends_on=grants),
            create=f"sleep {ROLE_PROPAGATION_SECONDS}", triggers=[grant.id for grant in grants])
        # The images are pushed from the machine running `pulumi up`, as the deployer: the registry's
        # admin user stays off. `az acr login --expose-token` trades the deployer's Azure CLI login for
        # a registry token (about three hours): asked for again whenever an image is to be pushed
        # again (its sources changed), never shown in Pulumi's output, kept secret in the state. In
        # deploy.yml's apply the CLI signs in afresh first (cli_login.py): its first login may have lapsed.
        self.push_password = registry_token(
            self._shared("registry-token", additional_secret_outputs=["stdout"]),
            self.container_registry.name.apply(
                lambda registry: with_fresh_az_login(
                    f"az acr login --name {registry} --expose-token --output tsv --query accessToken")),
            self.images)
        self.storage_grants_honoured: list[command.local.Command] = []
        self.pushed_images: list[docker.Image] = []

    def _environment(self) -> None:
        s = self.settings
        profiles = [{"name": "Consumption", "workload_profile_type": "Consumption"}]
        ingress = None
        if s.premium_ingress:
            # Premium ingress runs on a dedicated profile of its own; idle requests then last up to 30 min.
            profiles.append({"name": "ingress", "workload_profile_type": "D4", "minimum_count": 2, "maximum_count": 4})
            ingress = {"workload_profile_name": "ingress", "scale": {"min_replicas": 2, "max_replicas": 4},
                       "request_idle_timeout": premium_idle_minutes(self.proxy.timeout_seconds),
                       "termination_grace_period_seconds": min(self.proxy.timeout_seconds, 3600)}
        workspace = azure.operationalinsights.Workspace(
            **self._shared("logs"), resource_group_name=self.resource_group,
            workspace_name=_azure_name(self.prefix, "workspace", "-logs"),
            sku={"name": "PerGB2018"}, retention_in_days=s.log_retention_days)
        self.managed_environment = azure.app.ManagedEnvironment(
            **self._shared("environment", ignore_changes=[ZONE_REDUNDANT_PROPERTY]),
            resource_group_name=self.resource_group,
            environment_name=_azure_name(self.prefix, "environment"),
            vnet_configuration={"infrastructure_subnet_id": self.apps_subnet.id, "internal": s.internal},
            workload_profiles=profiles, ingress_configuration=ingress,
            # Replicas over the region's zones; Azure takes this only when it creates the environment
            # (https://learn.microsoft.com/en-us/azure/reliability/reliability-azure-container-apps), and a
            # replacement cannot work here (the same environment name and subnet, which Container Apps releases
            # only some time after a delete: https://github.com/microsoft/azure-container-apps/issues/974):
            # a changed azure.zoneRedundant is ignored; it needs a new stack (README).
            zone_redundant=s.zone_redundancy,
            # Logs reach the workspace through a diagnostic setting: no workspace key in Pulumi's hands.
            app_logs_configuration={"destination": "azure-monitor"})
        azure.monitor.DiagnosticSetting(
            **self._shared("environment-logs"), resource_uri=self.managed_environment.id, name="to-log-analytics",
            workspace_id=workspace.id, logs=[{"category_group": "allLogs", "enabled": True}],
            metrics=[{"category": "AllMetrics", "enabled": True}])
        # The TXT record `asuid.<azure.domain>` proves the domain is the subscription's (README): the id is the
        # subscription's, known before anything is deployed
        # (https://learn.microsoft.com/en-us/rest/api/resource-manager/containerapps/get-custom-domain-verification-id).
        self.domain_verification_id = azure.app.get_custom_domain_verification_id_output(
            opts=pulumi.InvokeOutputOptions(provider=self.provider)).value

    # --- Platform interface ---------------------------------------------------------------------

    def postgres_database(self, name: str, request: DatabaseRequest, owner_password: pulumi.Output[str],
                          opts: pulumi.ResourceOptions) -> DatabaseEndpoint:
        """A flexible server reachable only from the virtual network. Its administrator's password
        is generated here; MLflow's own role gets `owner_password` from the server's role-setup step."""
        s = self.settings
        admin_password = random.RandomPassword(f"{name}-admin-password", length=32, special=True,
                                               override_special="!#%*-_+?:", min_special=2, min_numeric=2,
                                               min_upper=2, min_lower=2, opts=opts)
        server = azure.dbforpostgresql.Server(
            name,
            resource_group_name=self.resource_group,
            server_name=self.suffix.result.apply(lambda suffix: _azure_name(self.prefix, "server", f"-{suffix}")),
            version=request.postgres_version,
            sku={"name": s.db_sku, "tier": s.db_tier},
            storage={"storage_size_gb": s.db_storage_gb, "auto_grow": STORAGE_AUTO_GROW},
            administrator_login=s.db_admin_username,
            administrator_login_password=pulumi.Output.secret(admin_password.result),
            auth_config={"password_auth": "Enabled", "active_directory_auth": "Disabled"},
            network={"delegated_subnet_resource_id": self.database_subnet.id,
                     "private_dns_zone_arm_resource_id": self.dns_zone.id, "public_network_access": "Disabled"},
            backup={"backup_retention_days": s.db_backup_retention_days,
                    "geo_redundant_backup": "Enabled" if s.db_geo_redundant_backup else "Disabled"},
            high_availability={"mode": {"disabled": "Disabled", "same-zone": "SameZone",
                                        "zone-redundant": "ZoneRedundant"}[s.db_high_availability]},
            # Auto-grow enlarges the disk by itself (at 80% used below 1 TiB:
            # https://learn.microsoft.com/en-us/azure/postgresql/flexible-server/how-to-auto-grow-storage-portal),
            # and storage never shrinks ("You can't scale down the storage":
            # https://learn.microsoft.com/en-us/azure/postgresql/flexible-server/how-to-scale-compute-storage-portal).
            # So db_storage_gb is the initial size only: after a refresh records a grown disk, writing the
            # configured size back would ask for a shrink. Growing it by hand: `az postgres flexible-server
            # update --storage-size` (README).
            opts=self._merge(opts, protect=self.protect, depends_on=[self.dns_link],
                             ignore_changes=[STORAGE_SIZE_PROPERTY, GEO_REDUNDANT_BACKUP_PROPERTY,
                                             *SERVER_PROPERTIES_AZURE_MOVES]))
        # The flexible server takes one operation at a time ("Server ... is busy with another operation",
        # ServerBusy: https://github.com/Azure/bicep-registry-modules/issues/4451): every write to it waits
        # for the one before (self.last_server_write). require_secure_transport is left alone: "on" is the
        # server's default (https://learn.microsoft.com/en-us/azure/postgresql/flexible-server/how-to-connect-tls-ssl).
        database = azure.dbforpostgresql.Database(
            f"{name}-database", resource_group_name=self.resource_group, server_name=server.name,
            database_name=request.database, charset="UTF8", collation="en_US.utf8",
            opts=self._merge(opts, protect=self.protect))
        self.last_server_write = database
        for parameter, value in {"max_connections": str(request.max_connections)}.items():  # static: next restart
            self.last_server_write = azure.dbforpostgresql.Configuration(
                f"{name}-{parameter.replace('_', '-')}", resource_group_name=self.resource_group,
                server_name=server.name, configuration_name=parameter, value=value, source="user-override",
                opts=self._merge(opts, depends_on=[self.last_server_write]))
        self.database_server = server
        alerts.database_alerts(name, self.alerts, server.id, request.max_connections, self._merge(opts))
        host = server.fully_qualified_domain_name
        return DatabaseEndpoint(host=host, port=pulumi.Output.from_input(5432), instance_id=server.name,
                                published_endpoint=host.apply(lambda h: f"{h}:5432"),
                                admin_username=pulumi.Output.from_input(s.db_admin_username),
                                admin_password=pulumi.Output.secret(admin_password.result))

    def object_store(self, name: str, request: ObjectStoreRequest,
                     opts: pulumi.ResourceOptions) -> ObjectStoreEndpoint:
        """A StorageV2 account that refuses shared keys and public access, and lets only the apps'
        subnet in; a private container; the server's identity may use that container, nothing else."""
        s = self.settings
        child = self._merge(opts)
        account = azure.storage.StorageAccount(
            name, resource_group_name=self.resource_group,
            account_name=self.suffix.result.apply(lambda suffix: f"{_alphanumeric(self.prefix)[:18]}{suffix}"),
            kind="StorageV2", sku={"name": s.storage_redundancy}, access_tier="Hot",
            minimum_tls_version="TLS1_2", enable_https_traffic_only=True, allow_blob_public_access=False,
            allow_shared_key_access=False, default_to_o_auth_authentication=True, allow_cross_tenant_replication=False,
            network_rule_set={"default_action": "Deny", "bypass": "AzureServices",
                              "virtual_network_rules": [{"virtual_network_resource_id": self.apps_subnet.id,
                                                         "action": "Allow"}],
                              # artifacts.transfer direct: the clients, who use the server's signed URLs. (The
                              # SDK's key is i_p_address_or_range, the API's iPAddressOrRange: another spelling
                              # reaches the provider as an unknown property, and the rule has no address.)
                              **({"ip_rules": [{"i_p_address_or_range": entry, "action": "Allow"}
                                               for entry in s.storage_client_cidrs]} if request.direct else {})},
            opts=self._merge(opts, protect=self.protect))
        azure.storage.BlobServiceProperties(
            f"{name}-blob-service", resource_group_name=self.resource_group, account_name=account.name,
            blob_services_name="default", is_versioning_enabled=True,
            delete_retention_policy={"enabled": True, "days": s.blob_soft_delete_days},
            container_delete_retention_policy={"enabled": True, "days": s.blob_soft_delete_days}, opts=child)
        if s.noncurrent_version_expiration_days:  # 0 or None: keep
            azure.storage.ManagementPolicy(
                f"{name}-lifecycle", resource_group_name=self.resource_group, account_name=account.name,
                management_policy_name="default", policy={"rules": [{
                    "name": "expire-old-versions", "enabled": True, "type": "Lifecycle",
                    "definition": {"filters": {"blob_types": ["blockBlob"]}, "actions": {"version": {"delete": {
                        "days_after_creation_greater_than": s.noncurrent_version_expiration_days}}}},
                }]}, opts=child)
        container = azure.storage.BlobContainer(
            f"{name}-container", resource_group_name=self.resource_group, account_name=account.name,
            container_name=request.bucket, public_access="None", opts=self._merge(opts, protect=self.protect))
        access = azure.authorization.RoleAssignment(
            f"{name}-server-access", scope=container.id, role_definition_id=self._role(STORAGE_BLOB_DATA_CONTRIBUTOR),
            principal_id=self.server_identity.principal_id, principal_type="ServicePrincipal",
            description="The MLflow server: its artifact container only", opts=child)
        # As for the pulls (pull_grants_honoured): the server and its jobs wait until Azure honours a grant made
        # anew (an identity or container replaced); MLflow touches storage only when a user does, so without it
        # the `up` succeeded and every artifact call got 403 for minutes (review 24, azure 3 F2).
        self.storage_grants_honoured.append(command.local.Command(
            f"{name}-server-access-propagation", create=f"sleep {ROLE_PROPAGATION_SECONDS}",
            triggers=[access.id], opts=self._merge(opts, depends_on=[access])))
        if request.direct:
            # MLflow's Blob repository signs each multipart upload with a user-delegation SAS when its credential
            # is a token (azure_blob_artifact_repo.py, create_multipart_upload; without the role it answers
            # "unsupported" and the client falls back to a proxied upload).
            delegator = azure.authorization.RoleAssignment(
                f"{name}-server-delegator", scope=account.id, role_definition_id=self._role(STORAGE_BLOB_DELEGATOR),
                principal_id=self.server_identity.principal_id, principal_type="ServicePrincipal",
                description="The MLflow server: user-delegation keys to sign upload URLs (artifacts.transfer direct)",
                opts=child)
            self.storage_grants_honoured.append(command.local.Command(
                f"{name}-server-delegator-propagation", create=f"sleep {ROLE_PROPAGATION_SECONDS}",
                triggers=[delegator.id], opts=self._merge(opts, depends_on=[delegator])))
        return ObjectStoreEndpoint(
            bucket=container.name,
            artifact_root=pulumi.Output.all(container.name, account.name).apply(
                lambda parts: render.blob_artifacts_destination(parts[0], parts[1], request.prefix)),
            env={render.AZURE_CLIENT_ID_ENV: self.server_identity.client_id},
            account_name=account.name,
        )

    def _pushed(self, name: str, repository: str, tag: str, build_args: dict, source,
                opts: pulumi.ResourceOptions) -> Image:
        """An image built (or copied) and pushed to the stack's registry; apps run it by digest."""
        image = docker.Image(
            name,
            image_name=self.container_registry.login_server.apply(lambda server: f"{server}/{repository}:{tag}"),
            build=docker.DockerBuildArgs(context=source.context, dockerfile=source.dockerfile, args=build_args,
                                         platform="linux/amd64"),
            registry=docker.RegistryArgs(server=self.container_registry.login_server,
                                         username=ACR_TOKEN_USERNAME, password=self.push_password),
            opts=self._merge(opts))
        self.pushed_images.append(image)
        return Image(reference=image.repo_digest, repository=self.container_registry.id)

    def server_image(self, name: str, mlflow_version: str, opts: pulumi.ResourceOptions) -> Image:
        return self._pushed(name, SERVER_IMAGE, mlflow_version, {"MLFLOW_VERSION": mlflow_version},
                            server_image_build(), opts)

    def public_image(self, name: str, reference: str, opts: pulumi.ResourceOptions) -> Image:
        """A copy in the stack's registry: the apps never pull from Docker Hub."""
        repository, tag = reference.rsplit("/", 1)[-1].split(":", 1)
        return self._pushed(name, _slug(repository), tag, {"IMAGE": reference}, mirror_image_build(), opts)

    def public_entry(self) -> PublicEntry:
        """The proxy app's names: azure.domain first (the tracking URI), and always the app's own name in
        the environment, which it answers at from the first `up` (a custom domain is bound only once its
        DNS records exist, README): MLflow refuses a Host it does not list with 403, so without it every
        request failed until DNS was done and `up` ran again (review 24, azure F3)."""
        s = self.settings
        default = self.managed_environment.default_domain.apply(lambda domain: f"{PROXY_SERVICE}.{domain}")
        hostnames = default.apply(lambda name: [s.domain, name] if s.domain else [name])
        return PublicEntry(hostnames=hostnames, scheme="https", port=443,
                           idle_timeout_seconds=self._ingress_idle_seconds())

    def _ingress_idle_seconds(self) -> int:
        """How long the ingress in front of Nginx keeps a request or an idle connection: 240 s, or
        premium ingress's request idle timeout (whole minutes, set from proxy.timeoutSeconds)
        (https://learn.microsoft.com/en-us/azure/container-apps/ingress-overview)."""
        if self.settings.premium_ingress:
            return premium_idle_minutes(self.proxy.timeout_seconds) * 60
        return STANDARD_INGRESS_TIMEOUT_SECONDS

    def guard_schema_upgrade(self, name: str, database_instance: Optional[pulumi.Output[str]],
                             mlflow_version: str, opts: pulumi.ResourceOptions) -> SchemaGuard:
        """What stands before the rollout of `mlflow_version` (its init container upgrades the schema).
        The version running before and the time its rollout started are read back from the server app's
        own tags, which this stack writes with the app and nothing else rewrites (a tag on the flexible
        server would be dropped by the server's next update, which writes the server's tags as declared).
        The app gets the new version and, when the version changes, the time this run started: going back
        is a point-in-time restore to just before it (README).
        Above the Burstable tier, an on-demand backup of the flexible server first (BURSTABLE_TIER: Azure
        takes none there), named after the change; backups live under their server (a re-created stack has
        a new server) and each name ends in a random part made anew whenever the version changes (the
        go-back path taken twice names a new backup). Kept when the next version replaces it (Pulumi never
        deletes one); Azure keeps at most MAX_ON_DEMAND_BACKUPS per server, each for the retention
        window: the README's go-back steps delete those no longer needed."""
        if database_instance is None:
            return SchemaGuard()
        tags = self._existing_app(SERVER_SERVICE).apply(lambda app: (app or {}).get("tags") or {})
        deployed = tags.apply(lambda current: current.get(DEPLOYED_VERSION_TAG))
        # Container Apps has no automatic rollback: rollback_safe only says whether the old version may
        # still serve the schema (the old revision serves until the new one is ready).
        rollback_safe = deployed.apply(lambda before: before is None or before == mlflow_version)
        before: list[pulumi.Resource] = []
        if self.settings.db_tier != BURSTABLE_TIER:
            version = _slug(mlflow_version)
            unique = random.RandomString(f"{name}-before-{version}-id", length=6, special=False, upper=False,
                                         opts=opts)
            # Taken by the Azure CLI (the deployer's login), not kept as a resource: Azure deletes an on-demand
            # backup by itself after the retention window, and a refresh then found the resource gone and planned
            # to take it again: the nightly drift check failed for good, and the next `up` took one more backup
            # toward Azure's limit of 7 (review 25, azure 6 F2). Run once per version (its trigger).
            before.append(command.local.Command(
                f"{name}-before-{version}", create=ON_DEMAND_BACKUP_SCRIPT, update=NO_SECOND_BACKUP,
                environment={"SUBSCRIPTION": self.client.subscription_id, "RESOURCE_GROUP": self.resource_group,
                             "SERVER": database_instance,
                             "BACKUP_NAME": unique.result.apply(lambda suffix: _backup_name(mlflow_version, suffix))},
                triggers=[mlflow_version],
                opts=self._merge(opts, depends_on=[self.last_server_write])))  # one operation at a time
        # The time is taken by a command run once per version, during the `up` (a preview leaves it unknown): the
        # program's own clock differed between a reviewed plan and its `up --plan`, which refused it (review 25).
        # It runs last before the server app (after the backup, the images, the grants' pauses): taken at the start
        # of the `up`, a retry after a failed upgrade kept a time hours or days before the migration, and going
        # back to it lost every run logged in between (review 25, azure 7 F1).
        started = command.local.Command(
            f"{name}-rollout-started", create=ROLLOUT_CLOCK, triggers=[mlflow_version],
            opts=self._merge(opts, depends_on=[*before, self.last_server_write, self.pull_grants_honoured,
                                               *self.storage_grants_honoured, *self.pushed_images])
        ).stdout.apply(lambda out: (out or "").strip())
        self.server_tags = {DEPLOYED_VERSION_TAG: mlflow_version, ROLLOUT_STARTED_TAG: pulumi.Output.all(
            tags, started).apply(lambda parts: parts[0].get(ROLLOUT_STARTED_TAG)
                                 if parts[0].get(DEPLOYED_VERSION_TAG) == mlflow_version
                                 and parts[0].get(ROLLOUT_STARTED_TAG) else parts[1])}
        return SchemaGuard(before=before, rollback_safe=rollback_safe)

    def record_deployed_version(self, name: str, mlflow_version: str, rollout: ServiceEndpoint,
                                opts: pulumi.ResourceOptions) -> None:
        """Nothing to write: the server app carries its version in its own tags (guard_schema_upgrade)."""

    def run_service(self, name: str, request: ServiceRequest, opts: pulumi.ResourceOptions) -> ServiceEndpoint:
        s = self.settings
        service_name, spec = request.service_name, request.spec
        proxy = request.role == "proxy"
        identity = self.proxy_identity if proxy else self.server_identity
        pull_grant = self.pull_grants[request.role]
        # Every secret value (env and runtime files) goes into the app's secret store.
        secret_values: dict[str, pulumi.Output[str]] = dict(request.secret_env)
        for step in request.init:
            if step.secret_refs:
                raise ValueError(f"{step.service_name}: the azure platform holds no secrets of its own to refer to")
            secret_values.update(step.secret_env)
        for path, content in request.runtime_files.items():
            secret_values[file_env_name(path)] = pulumi.Output.secret(content)
        secret_names = {variable: _slug(variable) for variable in secret_values}
        secrets = [{"name": secret_names[variable], "value": pulumi.Output.secret(value)}
                   for variable, value in secret_values.items()]
        # A digest of the secrets' values in the template: a changed secret makes a new revision
        # (a secret store change alone does not restart anything).
        digest = pulumi.Output.unsecret(output_dict(secret_values).apply(
            lambda values: hashlib.sha256(json.dumps({k: secret_digest(v) for k, v in sorted(values.items())})
                                          .encode()).hexdigest()))
        cpu = s.proxy_cpu if proxy else self.server.cpu
        steps = [pulumi.Output.all(step.spec, list(step.secret_env)) for step in request.init]
        runtime_paths = list(request.runtime_files)
        template = pulumi.Output.all(spec, pulumi.Output.all(*steps), digest,
                                     self.container_registry.login_server).apply(
            lambda parts: _template(service_name, parts[0], parts[1], runtime_paths, secret_names, parts[2], cpu,
                                    self._scale(request), self._grace_seconds()))
        app = azure.app.ContainerApp(
            name, resource_group_name=self.resource_group, container_app_name=service_name,
            managed_environment_id=self.managed_environment.id, workload_profile_name="Consumption",
            identity={"type": "UserAssigned", "user_assigned_identities": [identity.id]},
            configuration={
                "active_revisions_mode": "Single",
                "secrets": secrets,
                "registries": [{"server": self.container_registry.login_server, "identity": identity.id}],
                "ingress": self._ingress(request, spec),
            },
            template=template,
            tags=None if proxy else self.server_tags,
            # the identity may pull and use storage (and Azure honours it) before the first revision
            # With a managed certificate Azure writes its id into the binding once issued (bindingType Auto,
            # microsoft/azure-container-apps#796); a refresh copies it into the inputs, and without the ignore the
            # nightly drift check failed for good (review 25, azure 7 F2).
            opts=self._merge(opts, depends_on=[pull_grant, self.pull_grants_honoured, *self._grants_of(proxy)],
                             ignore_changes=([MANAGED_CERTIFICATE_ID_PROPERTY]
                                             if proxy and self.settings.managed_certificate else [])))
        alerts.app_alerts(name, self.alerts, service_name, app.id, request.public, self._merge(opts))
        if request.public and self.settings.managed_certificate:
            self._managed_certificate(app)
        for job in request.jobs:
            self._scheduled_job(f"{name}-{_slug(job.job_name.removeprefix('mlflow-'))}", job, identity,
                                secret_values, secret_names, cpu,
                                self._merge(opts, depends_on=[pull_grant, self.pull_grants_honoured,
                                                              *self._grants_of(proxy)]))
        port = spec.apply(lambda c: c.ports[0])
        return ServiceEndpoint(internal_url=port.apply(lambda p: f"http://{service_name}:{p}"), rollout=app)

    def _grants_of(self, proxy: bool) -> list[command.local.Command]:
        """The pauses after the server identity's storage grants (the proxy's identity has none)."""
        return [] if proxy else list(self.storage_grants_honoured)

    def _scheduled_job(self, name: str, job: ScheduledJob, identity, secret_values: dict,
                       secret_names: dict, cpu: float, opts: pulumi.ResourceOptions) -> None:
        """A Container Apps job on a schedule trigger: the service's image, identity and the secrets
        the job names, in the same environment (so it reaches the database and the storage account)."""
        def template(spec) -> dict:
            return {"containers": [{
                "name": spec.name, "image": spec.image, "command": list(spec.command),
                "env": _container_env(dict(spec.env), spec.secret_env_names, secret_names),
                "resources": _resources(cpu)}]}

        names = job.spec.apply(lambda spec: list(spec.secret_env_names))
        job_name = _azure_name(job.job_name, "job")
        scheduled = azure.app.Job(
            name, resource_group_name=self.resource_group, job_name=job_name,
            environment_id=self.managed_environment.id, workload_profile_name="Consumption",
            identity={"type": "UserAssigned", "user_assigned_identities": [identity.id]},
            configuration={
                "trigger_type": "Schedule", "replica_timeout": job.timeout_seconds, "replica_retry_limit": 0,
                "schedule_trigger_config": {"cron_expression": job.schedule, "parallelism": 1,
                                            "replica_completion_count": 1},
                "secrets": names.apply(lambda keys: [{"name": secret_names[key],
                                                      "value": pulumi.Output.secret(secret_values[key])}
                                                     for key in keys]),
                "registries": [{"server": self.container_registry.login_server, "identity": identity.id}],
            },
            template=job.spec.apply(template),
            opts=opts)
        alerts.job_alerts(name, self.alerts, job_name, scheduled.id, opts)

    def _managed_certificate(self, proxy_app: azure.app.ContainerApp) -> None:
        """The certificate Azure issues for azure.domain, after the proxy app holds the name: Azure refuses
        one for a name no app in the environment has (RequireCustomHostnameInEnvironment,
        https://github.com/pulumi/pulumi-azure-native/issues/2614). The app names the domain with
        bindingType Auto, so Azure binds the certificate once issued, and the app's own definition never
        has to change for it (https://github.com/microsoft/azure-container-apps/issues/796). Only once the
        domain's DNS records let the app hold the name (_domain_gate): registered when the check is known."""
        self.domain_missing.apply(lambda missing: None if missing else self._certificate(proxy_app))

    def _certificate(self, proxy_app: azure.app.ContainerApp) -> azure.app.ManagedCertificate:
        """Validated as the name is held: CNAME for a subdomain pointing at the app, HTTP for an apex
        domain held by an A record (https://learn.microsoft.com/en-us/azure/container-apps/custom-domains-managed-certificates);
        the first method stays (a DNS answer during a later deploy must not re-issue it). Deleted with
        the environment: the app binds it (bindingType Auto), and Azure refuses to delete a certificate a
        custom domain uses (CertificateInUse), so `pulumi destroy` leaves it to the environment's deletion."""
        domain = self.settings.domain
        validation = self.managed_environment.default_domain.apply(
            lambda default: "CNAME" if f"{PROXY_SERVICE}.{default}".lower() in resolve(domain, "CNAME") else "HTTP")
        return azure.app.ManagedCertificate(
            **self._shared("certificate", depends_on=[proxy_app], deleted_with=self.managed_environment,
                           ignore_changes=["properties.domainControlValidation"]),
            resource_group_name=self.resource_group, environment_name=self.managed_environment.name,
            properties={"subject_name": domain, "domain_control_validation": validation})

    def _ingress(self, request: ServiceRequest, spec: pulumi.Output) -> dict:
        port = spec.apply(lambda c: c.ports[0])
        if not request.public:
            # TCP inside the environment only: Nginx reaches mlflow-server:5000 with its own Host
            # header, and no HTTP timeout sits between them.
            return {"external": False, "transport": "tcp", "target_port": port, "exposed_port": port}
        s = self.settings
        ingress: dict = {
            "external": True,  # outside the apps, to the environment's network edge (internal: the VNet only)
            "transport": "http", "target_port": port, "allow_insecure": False,
            "ip_security_restrictions": [{"name": f"allowed-{index}", "ip_address_range": cidr, "action": "Allow"}
                                         for index, cidr in enumerate(s.allowed_cidrs)],
        }
        if request.metrics_port is not None:
            # Scrapers in the environment (or the VNet with azure.internal) only: never external.
            ingress["additional_port_mappings"] = [{"external": False, "target_port": request.metrics_port,
                                                    "exposed_port": request.metrics_port}]
        if s.domain:
            # Bound only once its DNS records exist (_domain_gate): Azure checks them whichever certificate.
            binding = ({"name": s.domain, "binding_type": "Auto"} if s.managed_certificate
                       else {"name": s.domain, "certificate_id": s.certificate_id, "binding_type": "SniEnabled"})
            ingress["custom_domains"] = self.domain_missing.apply(lambda missing: [] if missing else [binding])
        return ingress

    def _scale(self, request: ServiceRequest) -> dict:
        if request.role == "proxy":
            return {"min_replicas": self.settings.proxy_replicas, "max_replicas": max(self.settings.proxy_replicas, 10),
                    "rules": [{"name": "http", "http": {"metadata": {"concurrentRequests": "100"}}}]}
        return {"min_replicas": self.server.replicas, "max_replicas": self.server.max_replicas,
                "rules": [{"name": "cpu", "custom": {"type": "cpu", "metadata": {
                    "type": "Utilization", "value": str(self.server.cpu_target_percent)}}}]}

    def _grace_seconds(self) -> int:
        """A replica told to stop keeps its transfers this long (Container Apps allows 600 s)."""
        return min(self.proxy.timeout_seconds, MAX_TERMINATION_GRACE_SECONDS)


def _template(service_name: str, spec, steps, runtime_paths: list, secret_names: dict, digest: str, cpu: float,
              scale: dict, grace_seconds: int) -> dict:
    """The app's template as plain data: init containers in order, then the main container."""
    resources = _resources(cpu)
    init_containers = [{"name": step_spec.name, "image": step_spec.image, "command": list(step_spec.command),
                        "env": _container_env(dict(step_spec.env), env_names, secret_names),
                        "resources": resources}
                       for step_spec, env_names in steps]
    files = [*spec.files, *runtime_paths]
    plain = {**spec.env, **{file_env_name(path): content for path, content in spec.files.items()}, DIGEST_ENV: digest}
    secret = [*spec.secret_env_names, *[file_env_name(path) for path in runtime_paths]]
    main: dict = {"name": service_name, "image": spec.image, "command": with_files(spec.command, files, spec.user),
                  "env": _container_env(plain, secret, secret_names), "resources": resources}
    if spec.health_check is not None:
        main["probes"] = _probes(spec.health_check)
    return {"init_containers": init_containers, "containers": [main], "scale": scale,
            "termination_grace_period_seconds": grace_seconds}


def _probes(check) -> list[dict]:
    """Liveness and startup on the check's own path (for the proxy, Nginx's local location: a server
    outage must not restart every proxy and cut every transfer); readiness on `ready_path`, which may
    go through to what the container fronts (a failure only takes the replica out of the ingress)."""
    def probe(path: str) -> dict:
        return {"http_get": {"path": path, "port": check.port}, "period_seconds": check.interval_seconds,
                "timeout_seconds": check.timeout_seconds}

    return [{**probe(check.http_path), "type": "Liveness", "failure_threshold": check.retries},
            {**probe(check.ready_path), "type": "Readiness", "failure_threshold": 3},
            {**probe(check.http_path), "type": "Startup",
             "failure_threshold": max(check.start_period_seconds // check.interval_seconds, 3)}]


def _container_env(plain: Mapping[str, str], secret: Sequence[str], secret_names: Mapping[str, str]) -> list[dict]:
    """A container's env: plain values, then secrets by reference to the app's (or job's) secret store."""
    return ([{"name": k, "value": v} for k, v in plain.items()]
            + [{"name": k, "secret_ref": secret_names[k]} for k in secret])


def _resources(cpu: float) -> dict:
    """CPU and memory of a container: Container Apps' consumption sizes pair each vCPU with 2 GiB."""
    return {"cpu": cpu, "memory": f"{cpu * 2:g}Gi"}
