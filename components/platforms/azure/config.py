"""The `azure` platform's section of the stack configuration (`mlflow:azure`), its Azure limits, and
what it needs of the other sections (`consistent`)."""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING, Any, Literal, Optional

from pydantic import Field, field_validator, model_validator

from components.config_base import cidr_list, dns_name, _CIDR, _IDENTIFIER, _Section

if TYPE_CHECKING:
    from components.config import StackConfig


# Azure Database for PostgreSQL flexible server: the default max_connections of each compute size
# (Microsoft's "Limits" page); the server keeps 15 of them for itself.
AZURE_DB_CONNECTIONS = {
    "Standard_B1ms": 50, "Standard_B2s": 429, "Standard_B2ms": 859, "Standard_B4ms": 1718, "Standard_B8ms": 3437,
    "Standard_B12ms": 5000, "Standard_B16ms": 5000, "Standard_B20ms": 5000,
    **{f"Standard_D{size}{suffix}": limit for size, limit in ((2, 859), (4, 1718), (8, 3437), (16, 5000), (32, 5000),
                                                                (48, 5000), (64, 5000))
       for suffix in ("s_v3", "ds_v4", "ds_v5", "ads_v5")},
    **{f"Standard_E{size}{suffix}": limit for size, limit in ((2, 1718), (4, 3437), (8, 5000), (16, 5000), (32, 5000),
                                                                (48, 5000), (64, 5000))
       for suffix in ("s_v3", "ds_v4", "ds_v5", "ads_v5")},
}
AZURE_DB_RESERVED_CONNECTIONS = 15
AZURE_DB_STORAGE_GB = (32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32767)
# Container Apps ends a request at 240 s at its ingress; premium ingress raises the idle limit to 30 min.
AZURE_INGRESS_TIMEOUT_SECONDS = 240
AZURE_PREMIUM_INGRESS_TIMEOUT_SECONDS = 1800
# allowedCidrs that let every client in.
ANYWHERE = ("0.0.0.0/0",)
# Azure's public-cloud regions by programmatic name, and whether each has availability zones
# (https://learn.microsoft.com/en-us/azure/reliability/regions-list). `az account list-locations
# --query "[].name"` lists what a subscription may use.
AZURE_ZONE_REGIONS = frozenset({
    "australiaeast", "austriaeast", "belgiumcentral", "brazilsouth", "canadacentral", "centralindia", "centralus",
    "chilecentral", "eastasia", "eastus", "eastus2", "francecentral", "germanywestcentral", "indonesiacentral",
    "israelcentral", "italynorth", "japaneast", "japanwest", "koreacentral", "malaysiawest", "mexicocentral",
    "newzealandnorth", "northeurope", "norwayeast", "polandcentral", "qatarcentral", "southafricanorth",
    "southcentralus", "southeastasia", "spaincentral", "swedencentral", "switzerlandnorth", "uaenorth", "uksouth",
    "westeurope", "westus2", "westus3",
})
AZURE_LOCATIONS = AZURE_ZONE_REGIONS | frozenset({
    "australiacentral", "australiacentral2", "australiasoutheast", "brazilsoutheast", "canadaeast", "francesouth",
    "germanynorth", "jioindiacentral", "jioindiawest", "koreasouth", "northcentralus", "norwaywest",
    "southafricawest", "southindia", "swedensouth", "switzerlandwest", "uaecentral", "ukwest", "westcentralus",
    "westindia", "westus",
})
# Regions where a standard general-purpose v2 account may be zone-redundant (ZRS), and geo-zone-redundant
# (GZRS, RA-GZRS): https://learn.microsoft.com/en-us/azure/storage/common/redundancy-regions-zrs and
# .../redundancy-regions-gzrs. Elsewhere Azure refuses the account at its creation (review 24, azure 2 F2).
AZURE_ZRS_REGIONS = frozenset({
    "southafricanorth", "australiaeast", "centralindia", "eastasia", "japaneast", "koreacentral", "southeastasia",
    "francecentral", "germanywestcentral", "italynorth", "northeurope", "norwayeast", "polandcentral",
    "spaincentral", "swedencentral", "switzerlandnorth", "uksouth", "westeurope", "israelcentral", "qatarcentral",
    "uaenorth", "canadacentral", "centralus", "eastus", "eastus2", "mexicocentral", "southcentralus", "westus2",
    "westus3", "brazilsouth",
})
AZURE_GZRS_REGIONS = AZURE_ZRS_REGIONS - frozenset({
    "italynorth", "polandcentral", "spaincentral", "israelcentral", "qatarcentral", "mexicocentral",
})
ZONE_REDUNDANT_STORAGE = {"Standard_ZRS": AZURE_ZRS_REGIONS, "Standard_GZRS": AZURE_GZRS_REGIONS,
                          "Standard_RAGZRS": AZURE_GZRS_REGIONS}
StorageSku = Literal["Standard_LRS", "Standard_ZRS", "Standard_GRS", "Standard_GZRS", "Standard_RAGRS",
                     "Standard_RAGZRS"]
# Regions without a region pair (the "Paired region" column reads N/A:
# https://learn.microsoft.com/en-us/azure/reliability/regions-list): a flexible server's geo-redundant backup
# goes to the pair, so Azure offers it only elsewhere (azure-databases-docs concepts-backup-restore, "Backup
# redundancy options"; review 25, azure 5 F2).
AZURE_UNPAIRED_REGIONS = frozenset({
    "austriaeast", "belgiumcentral", "chilecentral", "indonesiacentral", "israelcentral", "italynorth",
    "malaysiawest", "mexicocentral", "newzealandnorth", "polandcentral", "qatarcentral", "spaincentral",
})
# Address ranges a Container Apps environment's subnet may not overlap: AKS's, and in a workload profiles
# environment (this stack's) the platform's own (review 25, azure 6 F1).
CONTAINER_APPS_RESERVED_RANGES = ("169.254.0.0/16", "172.30.0.0/16", "172.31.0.0/16", "192.0.2.0/24",
                                  "100.100.0.0/17", "100.100.128.0/19", "100.100.160.0/19", "100.100.192.0/19",
                                  # and what a virtual network may not hold at all (loopback, multicast,
                                  # broadcast, Azure's own DNS/health address): https://learn.microsoft.com/en-us/
                                  # azure/virtual-network/virtual-networks-faq#what-address-ranges-can-i-use-in-my-vnets
                                  "127.0.0.0/8", "224.0.0.0/4", "255.255.255.255/32", "168.63.129.16/32")
# IP network rules of a storage account ("Guidelines and limitations for the Azure Storage firewall",
# https://learn.microsoft.com/en-us/azure/storage/common/storage-network-security-limitations): public IPv4
# addresses or ranges only, no private range (RFC 1918); "/31" and "/32" ranges are not supported (give the
# addresses one by one, without a prefix); at most 400 per account; and they never match requests from the
# account's own Azure region, which use private addresses. Besides RFC 1918, the ranges no client's public
# address is in (RFC 6890: this network, shared CGNAT space, loopback, link-local, multicast and reserved).
STORAGE_IP_RULES_MAX = 400
NOT_PUBLIC_RANGES = tuple(ipaddress.ip_network(network) for network in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",  # RFC 1918
    "0.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/3"))
_RESOURCE_GROUP = re.compile(r"^[-\w._()]{0,89}[-\w_()]$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class AzureConfig(_Section):
    """The `azure` stack: PostgreSQL flexible server, Blob Storage, Container Apps."""

    location: str = Field("westeurope", description="Azure region name, e.g. westeurope or eastus2")
    resource_group_name: Optional[str] = Field(None, description="use this existing resource group instead of creating "
                                               "one; it must hold no other MLflow stack (the apps are named "
                                               "mlflow-server and mlflow-proxy in every stack, and Container Apps "
                                               "names are unique per group)")
    vnet_cidr: str = Field("10.50.0.0/16", description="address space of the virtual network this stack creates "
                           "(/22 or larger, outside the ranges Container Apps reserves; fixed once deployed)")
    allowed_cidrs: tuple[str, ...] = Field(("0.0.0.0/0",), description="client networks allowed through the ingress")
    internal: bool = Field(False, description="ingress inside the virtual network only (reached over VPN or peering)")
    domain: Optional[str] = Field(None, description="DNS name users reach MLflow at (a managed certificate is "
                                  "made for it unless certificateId is set)")
    certificate_id: Optional[str] = Field(None, description="existing certificate of the Container Apps environment "
                                          "for `domain`")
    premium_ingress: bool = Field(False, description="premium ingress (a dedicated workload profile): idle requests "
                                  "last up to 30 minutes instead of 240 s, for slow large artifacts")
    proxy_replicas: int = Field(2, ge=1, le=30, description="Nginx replicas")
    proxy_cpu: float = Field(0.25, description="vCPUs of an Nginx replica (memory: twice as many GiB)")
    registry_sku: Literal["Basic", "Standard", "Premium"] = Field("Basic", description="Azure Container Registry tier")
    db_sku: str = Field("Standard_B2s", description="flexible server compute size; its connection limit bounds "
                        "database.maxConnections")
    db_storage_gb: int = Field(32, description="initial flexible server storage in GiB (32, 64, ... 32767): "
                               "auto-grow enlarges it and later changes are ignored; grow it by hand with "
                               "`az postgres flexible-server update --storage-size`")
    db_admin_username: str = Field("mlflow_admin", description="flexible server administrator (MLflow logs in as "
                                   "database.username, not a superuser); set when the server is created, Azure "
                                   "refuses a change")
    db_backup_retention_days: int = Field(7, ge=7, le=35,
                                          description="automated backup retention (point-in-time restore)")
    db_geo_redundant_backup: bool = Field(False, description="keep backups in the paired region too; taken when "
                                          "the server is created only (a later change is ignored)")
    db_high_availability: Literal["disabled", "same-zone", "zone-redundant"] = Field(
        "disabled", description="standby server (not on burstable sizes)")
    storage_sku: Optional[StorageSku] = Field(None, description="storage account redundancy (default: Standard_ZRS "
                                              "where the region offers it, else Standard_LRS); the zone-redundant "
                                              "ones only where Azure offers them")
    blob_soft_delete_days: int = Field(7, ge=1, le=365,
                                       description="deleted blobs and containers stay recoverable this long")
    noncurrent_version_expiration_days: Optional[int] = Field(90, ge=0, le=3650, description="delete old artifact "
                                                              "versions after N days (0 or null: keep)")
    storage_client_cidrs: tuple[str, ...] = Field(
        (), description="artifacts.transfer direct: the clients' public IPv4 addresses or ranges the storage account "
        "admits (it refuses every other network but the apps' subnet); at most 400, no private ranges, ranges "
        "/30 or wider, single addresses without a prefix")
    log_retention_days: int = Field(30, ge=30, le=730, description="Log Analytics retention")
    zone_redundant: Optional[bool] = Field(None, description="Container Apps environment spread over the region's "
                                           "availability zones (default: where the region has them); applies only "
                                           "when the environment is created, later changes are ignored: changing "
                                           "it means a new stack")
    alarm_email: Optional[str] = Field(None, description="address the stack's Azure Monitor alerts email (through "
                                       "its action group)")
    protect_resources: bool = Field(True, description="Pulumi `protect` on the database, storage account and registry")

    @field_validator("location")
    @classmethod
    def _location(cls, value: str) -> str:
        if value not in AZURE_LOCATIONS:
            raise ValueError("must be the programmatic region name of an Azure public-cloud region, like westeurope or "
                             "eastus2 (lower case, no spaces); `az account list-locations --query "
                             "\"[].name\" -o tsv` lists those your subscription may use")
        return value

    @field_validator("alarm_email")
    @classmethod
    def _email(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not _EMAIL.match(value):
            raise ValueError("must be an email address")
        return value

    @field_validator("resource_group_name")
    @classmethod
    def _group(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not _RESOURCE_GROUP.match(value):
            raise ValueError("must be a resource group name: 1-90 letters, digits, '-', '_', '.', '(', ')', "
                             "not ending in '.'")
        return value

    @field_validator("vnet_cidr")
    @classmethod
    def _vnet(cls, value: str) -> str:
        if not _CIDR.match(value) or int(value.split("/")[1]) > 22:
            raise ValueError("must be an IPv4 CIDR of /22 or larger, e.g. 10.50.0.0/16 (Container Apps needs a /23)")
        try:
            network = ipaddress.ip_network(value)  # strict: no host bits (the subnets are cut from it)
        except ValueError:
            raise ValueError(f"must be a network address without host bits, e.g. "
                             f"{ipaddress.ip_network(value, strict=False)}") from None
        reserved = [r for r in CONTAINER_APPS_RESERVED_RANGES if network.overlaps(ipaddress.ip_network(r))]
        if reserved:
            raise ValueError(f"overlaps {', '.join(reserved)}, which Container Apps reserves "
                             "(https://learn.microsoft.com/en-us/azure/container-apps/networking#subnet-address-range-"
                             "restrictions); choose another range, e.g. 10.50.0.0/16. It is fixed once deployed")
        return value

    @field_validator("allowed_cidrs")
    @classmethod
    def _cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return cidr_list(value)

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: Optional[str]) -> Optional[str]:
        return value if value is None else dns_name(value)

    @field_validator("storage_client_cidrs")
    @classmethod
    def _storage_clients(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(value) > STORAGE_IP_RULES_MAX:
            raise ValueError(f"at most {STORAGE_IP_RULES_MAX} entries (a storage account's IP rules), {len(value)} "
                             "given: join them into larger ranges")
        if len(set(value)) != len(value):
            raise ValueError("lists an entry twice")
        return tuple(storage_ip_rule(entry) for entry in value)

    @field_validator("certificate_id")
    @classmethod
    def _certificate(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not re.match(r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/"
                                              r"Microsoft\.App/managedEnvironments/[^/]+/(managedC|c)ertificates/[^/]+$",
                                              value, re.IGNORECASE):
            raise ValueError("must be the resource id of a Container Apps environment certificate: "
                             "/subscriptions/.../managedEnvironments/<env>/certificates/<name>")
        return value

    @field_validator("proxy_cpu")
    @classmethod
    def _proxy_cpu(cls, value: float) -> float:
        return _container_apps_cpu(value)

    @field_validator("db_sku")
    @classmethod
    def _sku(cls, value: str) -> str:
        if value not in AZURE_DB_CONNECTIONS:
            raise ValueError("must be a flexible server compute size such as Standard_B2s, Standard_D2ds_v5 or "
                             "Standard_E2ds_v5 (Burstable B*, General Purpose D*, Memory Optimized E*)")
        return value

    @field_validator("db_storage_gb")
    @classmethod
    def _storage(cls, value: int) -> int:
        if value not in AZURE_DB_STORAGE_GB:
            raise ValueError(f"must be one of {', '.join(map(str, AZURE_DB_STORAGE_GB))}")
        return value

    @field_validator("db_admin_username")
    @classmethod
    def _admin(cls, value: str) -> str:
        reserved = {"azure_superuser", "azure_pg_admin", "admin", "administrator", "root", "guest", "public"}
        if not _IDENTIFIER.match(value) or value in reserved or value.startswith("pg_"):
            raise ValueError("must be a lower-case SQL identifier, not admin, administrator, root, guest, public, "
                             "azure_superuser or pg_*")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "AzureConfig":
        if self.certificate_id and not self.domain:
            raise ValueError("azure.certificateId needs azure.domain (the name the certificate is for)")
        if self.db_high_availability != "disabled" and self.db_sku.startswith("Standard_B"):
            raise ValueError("azure.dbHighAvailability needs a General Purpose or Memory Optimized azure.dbSku "
                             "(burstable sizes have no standby)")
        if self.zone_redundant and self.location not in AZURE_ZONE_REGIONS:
            raise ValueError(f"azure.zoneRedundant: azure.location {self.location} has no availability zones; set "
                             "it false or choose a region with zones")
        if self.db_geo_redundant_backup and self.location in AZURE_UNPAIRED_REGIONS:
            raise ValueError(f"azure.dbGeoRedundantBackup: azure.location {self.location} has no paired region to "
                             "keep the backups in; set it false or choose a paired region")
        if self.db_high_availability == "zone-redundant" and self.location not in AZURE_ZONE_REGIONS:
            # The standby goes to another availability zone of the region
            # (https://learn.microsoft.com/en-us/azure/reliability/reliability-postgresql-flexible-server).
            raise ValueError(f"azure.dbHighAvailability zone-redundant: azure.location {self.location} has no "
                             "availability zones; choose same-zone or a region with zones")
        regions = ZONE_REDUNDANT_STORAGE.get(self.storage_sku or "")
        if regions is not None and self.location not in regions:
            offered = ", ".join(sku for sku, where in ZONE_REDUNDANT_STORAGE.items() if self.location in where)
            raise ValueError(f"azure.storageSku {self.storage_sku} is not offered in azure.location {self.location} "
                             "(https://learn.microsoft.com/en-us/azure/storage/common/redundancy-regions-zrs); "
                             f"choose {offered + ', ' if offered else ''}Standard_LRS, Standard_GRS or "
                             "Standard_RAGRS")
        if self.managed_certificate and (self.internal or tuple(self.allowed_cidrs) != ANYWHERE):
            # DigiCert validates, and renews, over the public internet
            # (https://learn.microsoft.com/en-us/azure/container-apps/custom-domains-managed-certificates).
            raise ValueError("azure.domain without azure.certificateId asks for a managed certificate, which Azure "
                             "issues and renews only for a publicly reachable app: not with azure.internal true or "
                             "azure.allowedCidrs narrower than [\"0.0.0.0/0\"]; bring your own certificate "
                             "(azure.certificateId) instead")
        return self

    @property
    def managed_certificate(self) -> bool:
        """A certificate Azure issues for `domain` (none given)."""
        return self.domain is not None and self.certificate_id is None

    @property
    def zone_redundancy(self) -> bool:
        return self.location in AZURE_ZONE_REGIONS if self.zone_redundant is None else self.zone_redundant

    @property
    def storage_redundancy(self) -> str:
        """The storage account's SKU: zone-redundant by default where the region offers it."""
        if self.storage_sku is not None:
            return self.storage_sku
        return "Standard_ZRS" if self.location in AZURE_ZRS_REGIONS else "Standard_LRS"

    @property
    def db_tier(self) -> str:
        return {"B": "Burstable", "D": "GeneralPurpose", "E": "MemoryOptimized"}[self.db_sku.split("_")[1][0]]

    @property
    def ingress_timeout_seconds(self) -> int:
        return AZURE_PREMIUM_INGRESS_TIMEOUT_SECONDS if self.premium_ingress else AZURE_INGRESS_TIMEOUT_SECONDS


def storage_ip_rule(entry: str) -> str:
    """One IP rule of the storage account's firewall (NOT_PUBLIC_RANGES, STORAGE_IP_RULES_MAX: Azure's rules)."""
    address, _, prefix = entry.partition("/")
    if not _CIDR.match(f"{address}/{prefix or 32}"):
        raise ValueError(f"{entry!r} is not an IPv4 address or range like 203.0.113.0/24")
    network = ipaddress.ip_network(f"{address}/{prefix or 32}", strict=False)
    if str(network.network_address) != address:
        raise ValueError(f"{entry!r} has host bits set: write the range as {network}")
    if prefix in ("31", "32"):
        raise ValueError(f"{entry!r}: Azure storage IP rules take no /31 or /32 range; list the addresses one by one "
                         f"without a prefix ({', '.join(str(host) for host in network)})")
    private = [str(r) for r in NOT_PUBLIC_RANGES if network.overlaps(r)]
    if private:
        raise ValueError(f"{entry!r} is not a public range (it overlaps {', '.join(private)}): Azure storage IP rules "
                         "take public addresses only; clients on a private network reach the account through its "
                         "public address (their NAT's), which is the one to list")
    return entry


def _container_apps_cpu(value: float) -> float:
    if value * 4 != int(value * 4) or not 0.25 <= value <= 4:
        raise ValueError("must be a Container Apps CPU size: 0.25 to 4 in steps of 0.25")
    return value


def consistent(self: StackConfig) -> None:
    """What the azure stack needs of the other sections."""
    azure = self.azure
    if self.proxy.tls != "off":
        raise ValueError("proxy.tls must be off on azure: the Container Apps ingress terminates TLS (set "
                         "azure.domain for your own name; the default name is HTTPS already)")
    if self.proxy.timeout_seconds > azure.ingress_timeout_seconds:
        raise ValueError(f"proxy.timeoutSeconds {self.proxy.timeout_seconds} exceeds what the Container Apps "
                         f"ingress allows ({azure.ingress_timeout_seconds} s"
                         f"{'' if azure.premium_ingress else '; azure.premiumIngress raises it to 1800'})")
    if azure.db_admin_username == self.database.username:
        # The server's init container would ALTER the administrator into MLflow's role: it loses CREATEROLE and its
        # password, and every replica's setup fails after (review 25, azure 4 F1); aws refuses the same.
        raise ValueError("azure.dbAdminUsername must differ from database.username (MLflow logs in as a role of its "
                         "own, which the administrator creates)")
    from components.config import auth_database_name  # (components.config imports this module)

    taken = {"postgres", "azure_maintenance", "azure_sys", "template0", "template1"}
    names = {self.database.name, *([auth_database_name(self.database.name)] if self.auth.mode != "proxy" else [])}
    if names & taken:
        # Every flexible server has these; azure-native refuses to create a resource that exists already
        # (pulumi/pulumi-azure-native#303): the first up failed at the database, after the server (azure 4 F2).
        raise ValueError(f"database.name {self.database.name!r} names a database every flexible server already has "
                         f"({', '.join(sorted(names & taken))}); choose another, e.g. mlflow")
    limit = AZURE_DB_CONNECTIONS[azure.db_sku]
    if self.database.max_connections > limit:
        raise ValueError(f"database.maxConnections {self.database.max_connections} exceeds what azure.dbSku "
                         f"{azure.db_sku} allows ({limit}); choose a larger size")
    direct = self.artifacts.transfer == "direct"
    if direct and not azure.storage_client_cidrs:
        # The account's network rules deny by default and admit the apps' subnet (object_store); presigned
        # URLs are used from the clients' own addresses, which the stack cannot know.
        raise ValueError("artifacts.transfer direct needs azure.storageClientCidrs: clients upload to the storage "
                         "account itself with URLs the server signs, and its firewall admits only the apps' subnet "
                         "(default action Deny). List the clients' public IPv4 addresses or ranges; the account "
                         "stays closed to every other network, however valid a URL (clients in the account's own "
                         "region are not matched by IP rules at all). Or keep artifacts.transfer proxied, which "
                         "needs no client to reach the account")
    if not direct and azure.storage_client_cidrs:
        raise ValueError("azure.storageClientCidrs opens the storage account's firewall for artifacts.transfer direct "
                         "only: set that too, or remove it")
    if "." in self.artifacts.bucket or "--" in self.artifacts.bucket:
        # https://learn.microsoft.com/en-us/rest/api/storageservices/naming-and-referencing-containers--blobs--and-metadata#container-names
        raise ValueError("artifacts.bucket names a Blob container on azure: letters, digits and single '-' only "
                         "(no '.', no '--')")
    _container_apps_cpu(self.server.cpu)
    if self.server.memory_mib != int(self.server.cpu * 2048):
        raise ValueError(f"server.memoryMib must be {int(self.server.cpu * 2048)} for server.cpu {self.server.cpu} "
                         "on azure (Container Apps gives 2 GiB per vCPU)")


# --- what the rest of the configuration asks of the platform (components.platforms.PLATFORMS) ---------

SECTION = AzureConfig
KNOWN_LATER_KEYS: tuple[str, ...] = ()
ARGS_ENUM_TYPES = {"azure.registrySku": "RegistrySku", "azure.dbHighAvailability": "DatabaseHighAvailability",
                   "azure.storageSku": "StorageRedundancy"}
"""The generated args' enum type of each choice in the section (components.args_source)."""
RESERVED_DB_CONNECTIONS = AZURE_DB_RESERVED_CONNECTIONS
# Container Apps: a replica's ephemeral storage by its vCPUs (consumption profile)
# (https://learn.microsoft.com/en-us/azure/container-apps/storage-mounts#ephemeral-storage).
CONTAINER_APPS_EPHEMERAL_GIB = ((0.25, 1), (0.5, 2), (1.0, 4), (float("inf"), 8))
CONTAINER_APPS_SPOOL_SHARE = 0.75
"""What spooled artifacts may take of it. The container's writable layer and its log files count against
the same limit, and a replica over it is evicted with every request it serves (exit 137: "Pod ephemeral local
storage usage exceeds the total limit of containers", microsoft/azure-container-apps#896; Kubernetes' local
ephemeral storage: https://kubernetes.io/docs/concepts/configuration/manage-resources-containers/). Review 24,
azure 2 F3: the whole disk given to two transfers left nothing for the rest."""


def raw_defaults(values: dict[str, Any]) -> dict[str, Any]:
    """The database allows by default what its size allows (Azure sets it by size; a size the model
    refuses says so later); transfers last as long as the Container Apps ingress lets a request last."""
    database = values.get("database")
    if database is None or (isinstance(database, dict) and not {"maxConnections", "max_connections"} & set(database)):
        azure = values.get("azure") or {}
        sku = azure.get("dbSku", azure.get("db_sku", "Standard_B2s")) if isinstance(azure, dict) else None
        values = {**values, "database": {**(database or {}), "max_connections": AZURE_DB_CONNECTIONS.get(sku, 100)}}
    proxy = values.get("proxy")
    if proxy is None or (isinstance(proxy, dict) and not {"timeoutSeconds", "timeout_seconds"} & set(proxy)):
        azure = values.get("azure") or {}
        premium = isinstance(azure, dict) and azure.get("premiumIngress", azure.get("premium_ingress")) is True
        timeout = AZURE_PREMIUM_INGRESS_TIMEOUT_SECONDS if premium else AZURE_INGRESS_TIMEOUT_SECONDS
        values = {**values, "proxy": {**(proxy or {}), "timeout_seconds": timeout}}
    return values


def server_replicas(config: StackConfig) -> tuple[int, str]:
    """Replicas the database must serve at most: a rollout in single-revision mode keeps the old
    revision (up to server.maxReplicas) serving until the new one (server.replicas at first) is ready
    (https://learn.microsoft.com/en-us/azure/container-apps/revisions#revision-modes)."""
    return (config.server.max_replicas + config.server.replicas,
            "(server.maxReplicas + server.replicas during a rollout)")


def ephemeral_gib(server_cpu: float) -> int:
    """A replica's ephemeral storage, by its vCPUs."""
    return next(gib for cpus, gib in CONTAINER_APPS_EPHEMERAL_GIB if server_cpu <= cpus)


def temporary_disk_gib(server_cpu: float, section: AzureConfig) -> Optional[float]:
    """What a replica can spool artifacts to: its ephemeral storage but the share kept for the rest."""
    return ephemeral_gib(server_cpu) * CONTAINER_APPS_SPOOL_SHARE


def temporary_disk_said(config: StackConfig, disk: float) -> str:
    return (f"{disk:g} GiB of a Container Apps replica's {ephemeral_gib(config.server.cpu)} GiB of ephemeral storage "
            f"at server.cpu {config.server.cpu:g}, the rest kept for its own files and logs; 8 GiB above 1 vCPU")


def gc_schedule(expression: str) -> None:
    """A Container Apps job runs gc on a standard cron expression (the model checked its fields)."""
