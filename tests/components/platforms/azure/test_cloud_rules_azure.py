"""Azure's own rules, checked on every recorded `azure` graph: the stack file's defaults and variants.

Each rule is a function returning what breaks it (empty: the graph keeps the rule) and cites the
Azure documentation it comes from. The variants turn on what the rules depend on: auth modes, a
domain with a managed certificate or with a certificate of its own, an internal environment,
premium ingress, zone-redundant high availability, scheduled gc, Prometheus on and off, stacks
named `Prod` and `eu_prod`, a long MlflowTrackingServer name. The last tests mutate one resource of
the default graph, to show each rule that the current graph keeps can fail.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Callable
from unittest import mock

import pytest

from components.platforms.azure import platform as azure_platform
from components.platforms.azure.config import AZURE_ZONE_REGIONS

from tests.policy.graphs import replaced
from tests.harness.cloud_rules import (
    artifact_body_size,
    GIB,
    LONG_INSTANCE,
    OIDC_AUTH,
    Graph,
    NameRule,
    answered_by_nginx,
    build,
    name_problems,
    nginx_conf_in,
    nginx_size_bytes,
    total_order_problems,
    variant,
)
from tests.harness.program import ProgramRun, Recorded

APP = "azure-native:app:ContainerApp"
JOB = "azure-native:app:Job"
ENVIRONMENT = "azure-native:app:ManagedEnvironment"
CERTIFICATE_ID = ("/subscriptions/00000000-1111-2222-3333-444444444444/resourceGroups/mlflow-certs/providers/"
                  "Microsoft.App/managedEnvironments/shared/certificates/mlflow-example-com")

VARIANTS = [
    variant("default", "azure"),
    variant("Prod-oidc-managed-certificate-premium-ha-gc", "azure", stack="Prod", auth=OIDC_AUTH,
            azure={"domain": "mlflow.example.com", "premiumIngress": True, "dbHighAvailability": "zone-redundant",
                   "dbSku": "Standard_D2ds_v5"},
            proxy={"timeoutSeconds": 900}, maintenance={"gcSchedule": "15 3 * * *"}),
    variant("westus-no-zones", "azure", azure={"location": "westus"}),
    variant("japanwest-zones-without-zrs", "azure", azure={"location": "japanwest"}),
    variant("eu_prod-long-mlflow-auth-certificate-internal-no-prometheus", "azure", stack="eu_prod",
            instance=LONG_INSTANCE, auth={"mode": "mlflow"},
            azure={"domain": "mlflow.example.com", "certificateId": CERTIFICATE_ID, "internal": True},
            observability={"prometheus": False}, server={"cpu": 2, "memoryMib": 4096},
            proxy={"clientMaxBodySize": "3g"}),
    variant("direct-transfers-to-client-networks", "azure", artifacts={"transfer": "direct"},
            azure={"storageClientCidrs": ["203.0.113.0/24", "198.51.100.7"]}, maintenance={"gcSchedule": "15 3 * * *"}),
]
DIRECT = VARIANTS[-1]


def build_bound(chosen) -> Graph:
    """The graph once azure.domain's DNS records exist (a later `up`): the domain is bound, its
    certificate made (the platform binds it only then: README)."""
    with mock.patch.object(azure_platform, "missing_domain_records", lambda *args: []):
        return build(chosen)


@pytest.fixture(scope="module", params=VARIANTS, ids=lambda v: v.name)
def graph(request) -> Graph:
    return build_bound(request.param)


def report(problems: list[str]) -> None:
    assert not problems, "\n".join(problems)


# --- reading the graph ---------------------------------------------------------------------------

def ingress(app: Recorded) -> dict:
    return (app.inputs.get("configuration") or {}).get("ingress") or {}


def proxy_apps(graph: Graph) -> list[Recorded]:
    """Apps the environment's ingress exposes over HTTP."""
    return [a for a in graph.of_type(APP) if ingress(a).get("external") and ingress(a).get("transport") != "tcp"]


def server_apps(graph: Graph) -> list[Recorded]:
    """Apps reached only inside the environment."""
    return [a for a in graph.of_type(APP) if not ingress(a).get("external")]


def main_container(app: Recorded) -> dict:
    [container] = app.inputs["template"]["containers"]
    return container


def nginx_conf(app: Recorded) -> str:
    return nginx_conf_in(e.get("value") for e in main_container(app).get("env", []))


def workloads(graph: Graph) -> list[Recorded]:
    return graph.of_type(APP) + graph.of_type(JOB)


# --- host names -----------------------------------------------------------------------------------

def reachable_hosts_rule(graph: Graph) -> list[str]:
    """Every name the public app answers at (its name in the environment's default domain, and each custom
    domain bound to it) is one MLflow accepts: its host check answers 403 to any Host not in --allowed-hosts
    but /health and /version (mlflow/server/security_utils.py, MLflow 3.17.2), so probes pass while every
    request fails."""
    [environment] = graph.of_type(ENVIRONMENT)
    problems = []
    for server in server_apps(graph):
        command = main_container(server).get("command", []) + main_container(server).get("args", [])
        allowed = (set(command[command.index("--allowed-hosts") + 1].split(","))
                   if "--allowed-hosts" in command else set())
        for app in proxy_apps(graph):
            names = [f"{app.inputs['containerAppName']}.{environment.state['defaultDomain']}"]
            names += [domain["name"] for domain in ingress(app).get("customDomains") or []]
            problems += [f"[{graph.variant.name}] {app.name} answers at {name}, which {server.name} refuses (403)"
                         for name in names if name not in allowed]
    return problems


def test_every_name_the_proxy_answers_at_is_one_mlflow_accepts(graph):
    report(reachable_hosts_rule(graph))


@pytest.mark.parametrize("chosen", [v for v in VARIANTS if "domain" in dict(dict(v.sections).get("azure", ()))],
                         ids=lambda v: v.name)
def test_a_domain_not_bound_yet_leaves_the_apps_own_name_working(chosen):
    """Review 24 (azure F3): azure.domain is bound only once its DNS records exist (README); until then the
    app answers at its own name only, which --allowed-hosts did not list: every request got 403 from the first
    `up` until DNS was done and `up` ran again."""
    graph = build(chosen)
    assert not any(ingress(app).get("customDomains") for app in proxy_apps(graph)), "the records are missing"
    report(reachable_hosts_rule(graph))


# --- identities ------------------------------------------------------------------------------------

ACR_PULL = "7f951dda-4ed3-4680-a7ca-43fe172d538d"
ROLE_PROPAGATION_SECONDS = 300
"""Azure honours a new role assignment only after a while ("it can take up to 10 minutes for changes to
take effect": https://learn.microsoft.com/en-us/azure/role-based-access-control/troubleshooting); Container
Apps' first pull with a grant minutes old fails ("unable to pull image using Managed identity ... for
registry": https://github.com/microsoft/azure-container-apps/issues/1061, 1-5 minutes seen)."""


def grant_propagation_rule(graph: Graph) -> list[str]:
    """Each app and job waits, for every role its identity is granted (AcrPull to pull, Storage Blob Data
    Contributor for the artifacts, ...), for a pause of at least ROLE_PROPAGATION_SECONDS that itself waits for
    that grant and runs again when the grant is made anew (its trigger)."""
    identities = {i.state["id"]: i for i in graph.of_type("azure-native:managedidentity:UserAssignedIdentity")}
    grants = graph.of_type("azure-native:authorization:RoleAssignment")
    pauses = [c for c in graph.of_type("command:local:Command")
              if re.fullmatch(r"sleep (\d+)", c.inputs.get("create", ""))
              and int(c.inputs["create"].split()[1]) >= ROLE_PROPAGATION_SECONDS]
    problems = []
    for workload in workloads(graph):
        for identity_id in ((workload.inputs.get("identity") or {}).get("userAssignedIdentities") or []):
            principal = identities[identity_id].state["principalId"]
            for grant in [g for g in grants if g.inputs["principalId"] == principal]:
                if not any(graph.waits_for(workload, pause) and graph.waits_for(pause, grant)
                           and grant.state["id"] in (pause.inputs.get("triggers") or []) for pause in pauses):
                    role = grant.inputs["roleDefinitionId"].rsplit("/", 1)[-1]
                    problems.append(f"[{graph.variant.name}] {workload.name} may use {identity_id.rsplit('/', 1)[-1]}"
                                    f" less than {ROLE_PROPAGATION_SECONDS}s after its grant {grant.name} ({role}) "
                                    "is made (anew)")
    return problems


def test_apps_use_a_grant_only_once_azure_honours_it(graph):
    """Review 24 (azure F1): apps and jobs waited for their AcrPull assignment, which orders the calls but
    not Azure's propagation: the first revision's pull could fail, and the first `up` with it. Azure 3 F2:
    the server's storage grant had no pause, so a later `up` that made it anew left every artifact call 403
    for minutes while the deploy succeeded."""
    report(grant_propagation_rule(graph))


# --- names ----------------------------------------------------------------------------------------

NAMING = "https://learn.microsoft.com/en-us/azure/azure-resource-manager/management/resource-name-rules"
CONTAINER_APP_NAME = r"[a-z](?:[a-z0-9]|-(?!-))*[a-z0-9]"
DNS_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
NAME_CHECKS = [
    ("azure-native:resources:ResourceGroup", "resourceGroupName", NameRule(
        "resource group name", r"[-\w.()]*[-\w()]", 1, 90, f"{NAMING}#microsoftresources")),
    ("azure-native:network:VirtualNetwork", "virtualNetworkName", NameRule(
        "virtual network name", r"[a-zA-Z0-9](?:[a-zA-Z0-9_.-]*[a-zA-Z0-9_])?", 2, 64, f"{NAMING}#microsoftnetwork")),
    ("azure-native:network:Subnet", "subnetName", NameRule(
        "subnet name", r"[a-zA-Z0-9](?:[a-zA-Z0-9_.-]*[a-zA-Z0-9_])?", 1, 80, f"{NAMING}#microsoftnetwork")),
    ("azure-native:privatedns:PrivateZone", "privateZoneName", NameRule(
        "flexible server private DNS zone", rf"(?:{DNS_LABEL}\.)+postgres\.database\.azure\.com", 1, 253,
        "https://learn.microsoft.com/en-us/azure/postgresql/flexible-server/concepts-networking-private#private-dns-zone-and-virtual-network-link")),
    ("azure-native:dbforpostgresql:Server", "serverName", NameRule(
        "flexible server name", r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?", 3, 63, f"{NAMING}#microsoftdbforpostgresql")),
    ("azure-native:dbforpostgresql:Database", "databaseName", NameRule(
        "flexible server database name", r"[a-zA-Z_][a-zA-Z0-9_$-]*", 1, 63,
        "https://www.postgresql.org/docs/16/sql-syntax-lexical.html#SQL-SYNTAX-IDENTIFIERS")),
    ("azure-native:app:ManagedEnvironment", "environmentName", NameRule(
        "Container Apps environment name", CONTAINER_APP_NAME, 2, 60, f"{NAMING}#microsoftapp")),
    (APP, "containerAppName", NameRule("container app name", CONTAINER_APP_NAME, 2, 32, f"{NAMING}#microsoftapp")),
    (JOB, "jobName", NameRule("Container Apps job name", CONTAINER_APP_NAME, 2, 32, f"{NAMING}#microsoftapp")),
    # Containers are Kubernetes containers: RFC 1123 labels.
    *[(kind, path, NameRule(
        "container name", r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?", 1, 63,
        "https://learn.microsoft.com/en-us/azure/container-apps/containers#configuration"))
      for kind in (APP, JOB) for path in ("template.containers[].name", "template.initContainers[].name")],
    *[(kind, "configuration.secrets[].name", NameRule(
        "Container Apps secret name", r"[a-z0-9](?:[-a-z0-9.]*[a-z0-9])?", 1, 253,
        "https://learn.microsoft.com/en-us/azure/container-apps/manage-secrets#defining-secrets"))
      for kind in (APP, JOB)],
    ("azure-native:operationalinsights:Workspace", "workspaceName", NameRule(
        "Log Analytics workspace name", r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?", 4, 63,
        f"{NAMING}#microsoftoperationalinsights")),
    ("azure-native:managedidentity:UserAssignedIdentity", "resourceName", NameRule(
        "user-assigned identity name", r"[a-zA-Z0-9][a-zA-Z0-9_-]*", 3, 128, f"{NAMING}#microsoftmanagedidentity")),
    ("azure-native:storage:StorageAccount", "accountName", NameRule(
        "storage account name", r"[a-z0-9]+", 3, 24, f"{NAMING}#microsoftstorage")),
    ("azure-native:storage:BlobContainer", "containerName", NameRule(
        "blob container name", r"[a-z0-9](?:[a-z0-9]|-(?!-))*[a-z0-9]", 3, 63, f"{NAMING}#microsoftstorage")),
    ("azure-native:containerregistry:Registry", "registryName", NameRule(
        "container registry name", r"[a-zA-Z0-9]+", 5, 50, f"{NAMING}#microsoftcontainerregistry")),
    ("azure-native:authorization:RoleAssignment", "roleAssignmentName", NameRule(
        "role assignment name", r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}", 36, 36,
        f"{NAMING}#microsoftauthorization")),
]


def names_rule(graph: Graph) -> list[str]:
    return name_problems(graph, NAME_CHECKS)


def test_every_name_the_graph_sets_is_one_azure_accepts(graph):
    """Character sets and lengths of every physical name the graph sets (each NAME_CHECKS entry
    cites its source). Stacks called `Prod` or `eu_prod` and a long instance name reach the
    lower-case-only names (server, environment, apps, DNS labels) through `<instance>-<stack>`."""
    report(names_rule(graph))


def secret_reference_rule(graph: Graph) -> list[str]:
    problems = []
    for workload in workloads(graph):
        defined = {s["name"] for s in (workload.inputs.get("configuration") or {}).get("secrets") or []}
        template = workload.inputs.get("template") or {}
        for container in (template.get("containers") or []) + (template.get("initContainers") or []):
            for item in container.get("env") or []:
                if "secretRef" in item and item["secretRef"] not in defined:
                    problems.append(f"[{graph.variant.name}] {workload.name}/{container['name']}: {item['name']} "
                                    f"refers to secret {item['secretRef']!r}, which the workload does not define")
    return problems


def test_every_secret_reference_names_a_secret_of_its_workload(graph):
    """An env var's secretRef must name a secret in the same app's (or job's) configuration;
    Container Apps refuses the revision otherwise.
    https://learn.microsoft.com/en-us/azure/container-apps/manage-secrets#reference-secret-in-environment-variables"""
    report(secret_reference_rule(graph))


# --- one operation at a time, and order -----------------------------------------------------------

def one_at_a_time_rule(graph: Graph) -> list[str]:
    problems = []
    for server in graph.of_type("azure-native:dbforpostgresql:Server"):
        name = server.inputs["serverName"]
        children = [r for r in graph.resources if r.type.startswith("azure-native:dbforpostgresql:")
                    and r.type != server.type and r.inputs.get("serverName") == name]
        problems += total_order_problems(graph, children, f"flexible server {name}")
    for network in graph.of_type("azure-native:network:VirtualNetwork"):
        name = network.inputs["virtualNetworkName"]
        subnets = [s for s in graph.of_type("azure-native:network:Subnet")
                   if s.inputs.get("virtualNetworkName") == name]
        problems += total_order_problems(graph, subnets, f"virtual network {name}")
    return problems


def test_what_azure_changes_one_at_a_time_is_chained(graph):
    """A flexible server runs one management operation at a time (a second one fails with
    ServerIsBusy): its databases, configurations and backups must be chained. Subnets of one
    virtual network are written through the network (AnotherOperationInProgress) and are chained too.
    https://learn.microsoft.com/en-us/azure/postgresql/flexible-server/how-to-troubleshoot-common-connection-issues,
    https://github.com/hashicorp/terraform-provider-azurerm/issues/22691,
    https://learn.microsoft.com/en-us/azure/virtual-network/virtual-network-manage-subnet"""
    report(one_at_a_time_rule(graph))


def certificate_rule(graph: Graph) -> list[str]:
    problems = []
    environments = graph.of_type(ENVIRONMENT)
    for certificate in graph.of_type("azure-native:app:ManagedCertificate"):
        host = (certificate.inputs.get("properties") or {}).get("subjectName")
        binding = [a for a in graph.of_type(APP)
                   if host in [d.get("name") for d in ingress(a).get("customDomains") or []]]
        where = f"[{graph.variant.name}] managed certificate for {host}"
        if not binding:
            problems.append(f"{where}: no app binds the host name")
        for app in binding:
            if not graph.waits_for(certificate, app):
                problems.append(f"{where}: created before {app.name} binds the host name "
                                "(RequireCustomHostnameInEnvironment)")
            open_to = [r.get("ipAddressRange") for r in ingress(app).get("ipSecurityRestrictions") or []]
            if open_to and "0.0.0.0/0" not in open_to:
                problems.append(f"{where}: {app.name} accepts only {open_to}; issuance and renewal need it public")
        if any((e.inputs.get("vnetConfiguration") or {}).get("internal") for e in environments):
            problems.append(f"{where}: the environment is internal; a managed certificate needs a public app")
    return problems


def test_managed_certificates_come_after_the_binding_on_a_public_app(graph):
    """A managed certificate is issued for a host name already added to a container app (bound
    without a certificate first), and only for an app reachable from the internet without IP
    restrictions (for issuance and every renewal).
    https://learn.microsoft.com/en-us/azure/container-apps/custom-domains-managed-certificates"""
    report(certificate_rule(graph))


# --- timeouts, health, capacity -----------------------------------------------------------------

MAX_TERMINATION_GRACE_SECONDS = 600
INGRESS_GRACE_RANGE = range(0, 3601)


def grace_rule(graph: Graph) -> list[str]:
    problems = []
    for app in graph.of_type(APP):
        grace = app.inputs["template"].get("terminationGracePeriodSeconds", 30)
        if not 0 <= grace <= MAX_TERMINATION_GRACE_SECONDS:
            problems.append(f"[{graph.variant.name}] {app.name}: termination grace {grace}s above "
                            f"{MAX_TERMINATION_GRACE_SECONDS}s")
    for environment in graph.of_type(ENVIRONMENT):
        grace = (environment.inputs.get("ingressConfiguration") or {}).get("terminationGracePeriodSeconds", 480)
        if grace not in INGRESS_GRACE_RANGE:
            problems.append(f"[{graph.variant.name}] {environment.name}: premium ingress grace {grace}s outside 0-3600")
        idle = (environment.inputs.get("ingressConfiguration") or {}).get("requestIdleTimeout", 4)
        if not 4 <= idle <= 30:
            problems.append(f"[{graph.variant.name}] {environment.name}: premium ingress idle timeout {idle} min "
                            "outside 4-30")
    return problems


def test_termination_grace_periods_are_within_what_container_apps_allows(graph):
    """A replica's termination grace period is at most 600 s (10 minutes); the premium ingress's
    own grace for open connections is 0-3600 s, its request idle timeout 4-30 minutes
    (https://learn.microsoft.com/en-us/azure/container-apps/premium-ingress).
    https://learn.microsoft.com/en-us/azure/container-apps/application-lifecycle-management#shutdown,
    https://learn.microsoft.com/en-us/azure/templates/microsoft.app/managedenvironments#ingressconfiguration"""
    report(grace_rule(graph))


def proxy_probe_rule(graph: Graph) -> list[str]:
    problems = []
    for app in proxy_apps(graph):
        conf = nginx_conf(app)
        probes = {p.get("type"): p for p in main_container(app).get("probes") or []}
        for kind in ("Liveness", "Startup"):
            if kind not in probes:
                problems.append(f"[{graph.variant.name}] {app.name}: no {kind} probe (the default one is a TCP check)")
                continue
            path = (probes[kind].get("httpGet") or {}).get("path")
            why = answered_by_nginx(conf, path) if path else "not an HTTP probe"
            if why:
                problems.append(f"[{graph.variant.name}] {app.name}: {kind} probe ({path}): {why}")
    return problems


def test_proxy_liveness_and_startup_probes_are_answered_by_nginx_itself(graph):
    """Container Apps restarts a container whose liveness or startup probe fails. A probe the proxy
    passes on to MLflow turns a server blip into a restart of every proxy (and cuts every
    transfer): both must hit a location Nginx answers itself, with 200, without credentials;
    readiness may go through. https://learn.microsoft.com/en-us/azure/container-apps/health-probes"""
    report(proxy_probe_rule(graph))


def ephemeral_gib(cpu: float) -> int:
    """A replica's ephemeral storage on the Consumption profile, by its vCPUs.
    https://learn.microsoft.com/en-us/azure/container-apps/storage-mounts#ephemeral-storage"""
    return 1 if cpu <= 0.25 else 2 if cpu <= 0.5 else 4 if cpu <= 1 else 8


def replica_cpu(workload: Recorded) -> float:
    return sum(float(c["resources"]["cpu"]) for c in workload.inputs["template"]["containers"])


SPOOLED_SHARE = 0.75
"""What artifacts may take of a replica's ephemeral storage: the container's writable layer and its log files
count against the same limit, and a replica above it is evicted (exit 137, "Pod ephemeral local storage usage
exceeds the total limit of containers": https://github.com/microsoft/azure-container-apps/issues/896,
https://kubernetes.io/docs/concepts/configuration/manage-resources-containers/#local-ephemeral-storage)."""


def spool_rule(graph: Graph) -> list[str]:
    problems = []
    bodies = [artifact_body_size(nginx_conf(a)) for a in proxy_apps(graph)]
    for app in server_apps(graph):
        disk = ephemeral_gib(replica_cpu(app))
        for body in bodies:
            size = nginx_size_bytes(body)
            if 2 * size > disk * GIB * SPOOLED_SHARE:
                problems.append(f"[{graph.variant.name}] the proxy accepts bodies of {body} (0: any size): an upload "
                                f"and a download of that size at once leave {app.name}'s replicas less than a "
                                f"quarter of their {disk} GiB of temporary disk for the rest")
    return problems


def test_largest_accepted_upload_fits_the_server_replicas_disk(graph):
    """MLflow 3.17.2 spools a proxied upload to a temporary file (and fetches a download whole)
    before it reaches Blob Storage: an upload and a download of the largest body Nginx accepts must fit the
    server replica's ephemeral storage (1 GiB at 0.25 vCPU ... 4 GiB at 1 vCPU, 8 GiB above) with room for the
    container's own files and logs (review 24, azure 2 F3: 2g at 1 vCPU left none).
    https://learn.microsoft.com/en-us/azure/container-apps/storage-mounts#ephemeral-storage,
    http://nginx.org/en/docs/http/ngx_http_core_module.html#client_max_body_size"""
    report(spool_rule(graph))


def gib(memory: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)Gi", str(memory))
    assert match, f"memory {memory!r} is not in Gi"
    return float(match.group(1))


def size_rule(graph: Graph) -> list[str]:
    problems = []
    for workload in workloads(graph):
        containers = workload.inputs["template"]["containers"]
        cpu = sum(float(c["resources"]["cpu"]) for c in containers)
        memory = sum(gib(c["resources"]["memory"]) for c in containers)
        steps = cpu / 0.25
        if not (0.25 <= cpu <= 4 and abs(steps - round(steps)) < 1e-9 and abs(memory - 2 * cpu) < 1e-9):
            problems.append(f"[{graph.variant.name}] {workload.name}: {cpu:g} vCPU with {memory:g} GiB is no "
                            "Consumption size (0.25-4 vCPU in 0.25 steps, 2 GiB per vCPU)")
    return problems


# --- direct artifact transfers (issue 26) ---------------------------------------------------------

STORAGE_FIREWALL = "https://learn.microsoft.com/en-us/azure/storage/common/storage-network-security-limitations"
RFC_1918 = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
STORAGE_IP_RULES = 400
STORAGE_BLOB_DELEGATOR = "db58b8e5-c6ad-4a2a-8342-4190687cbf4a"
"""https://learn.microsoft.com/en-us/azure/role-based-access-control/built-in-roles/storage#storage-blob-delegator"""


def storage_firewall_rule(graph: Graph) -> list[str]:
    """Each IP rule of a storage account is one Azure takes: under the API's own key (iPAddressOrRange), a
    public IPv4 address or range, no RFC 1918 range, no /31 or /32 prefix (single addresses go without one), at
    most 400 per account (STORAGE_FIREWALL, "IP network rules"; the property:
    https://learn.microsoft.com/en-us/rest/api/storagerp/storage-accounts/create#iprule)."""
    import ipaddress

    problems = []
    for account in graph.of_type("azure-native:storage:StorageAccount"):
        rules = (account.inputs.get("networkRuleSet") or {}).get("ipRules") or []
        if len(rules) > STORAGE_IP_RULES:
            problems.append(f"[{graph.variant.name}] {account.name} has {len(rules)} IP rules (at most 400)")
        for rule in rules:
            value = rule.get("iPAddressOrRange")
            if value is None:
                problems.append(f"[{graph.variant.name}] {account.name}: IP rule {rule} has no iPAddressOrRange")
                continue
            try:
                network = ipaddress.IPv4Network(value)
            except ValueError:
                problems.append(f"[{graph.variant.name}] {account.name}: {value!r} is no IPv4 address or range")
                continue
            if "/" in value and network.prefixlen > 30:
                problems.append(f"[{graph.variant.name}] {account.name}: {value} has a /31 or /32 prefix")
            if any(network.overlaps(ipaddress.IPv4Network(private)) for private in RFC_1918):
                problems.append(f"[{graph.variant.name}] {account.name}: {value} is an RFC 1918 range")
    return problems


def test_storage_firewall_rules_are_ones_azure_takes(graph):
    """Issue 26: direct transfers open the artifact account's firewall to the clients' networks."""
    report(storage_firewall_rule(graph))


def multipart_advertised(graph: Graph) -> bool:
    """Clients are told to upload through presigned URLs: Nginx passes MLflow's server-info unchanged (MLflow
    3.17.2 advertises multipart uploads for a Blob store, mlflow/server/handlers.py _get_server_info)."""
    return any("multipart_uploads_enabled\":false" not in nginx_conf(a) for a in proxy_apps(graph))


def signed_upload_rule(graph: Graph) -> list[str]:
    """Where clients upload with the server's SAS: MLflow signs a user-delegation SAS with the server's token
    credential (azure_blob_artifact_repo.py, create_multipart_upload), which needs Get User Delegation Key, an
    operation on the account's blob service, granted by Storage Blob Delegator at the account or above
    (https://learn.microsoft.com/en-us/rest/api/storageservices/get-user-delegation-key, "Authorization"); and the
    account must take the clients' requests: its firewall's default action Allow or IP rules for them
    (https://learn.microsoft.com/en-us/azure/storage/common/storage-network-security)."""
    if not multipart_advertised(graph):
        return []
    problems = []
    identities = {i.state["id"]: i.state["principalId"]
                  for i in graph.of_type("azure-native:managedidentity:UserAssignedIdentity")}
    for account in graph.of_type("azure-native:storage:StorageAccount"):
        account_id = account.state["id"]
        rules = account.inputs.get("networkRuleSet") or {}
        if rules.get("defaultAction") != "Allow" and not rules.get("ipRules"):
            problems.append(f"[{graph.variant.name}] {account.name} denies every client network: presigned "
                            "uploads fail at its firewall")
        for server in server_apps(graph):
            for identity_id in (server.inputs.get("identity") or {}).get("userAssignedIdentities") or []:
                if not any(grant.inputs["principalId"] == identities[identity_id]
                           and grant.inputs["roleDefinitionId"].endswith(STORAGE_BLOB_DELEGATOR)
                           and account_id.startswith(grant.inputs["scope"].rstrip("/"))
                           for grant in graph.of_type("azure-native:authorization:RoleAssignment")):
                    problems.append(f"[{graph.variant.name}] {server.name}'s identity may not get a user-delegation "
                                    f"key of {account.name} (Storage Blob Delegator at the account or above)")
    return problems


def test_the_server_can_sign_what_clients_upload_where_they_are_told_to(graph):
    """Issue 26: without the role MLflow answers "unsupported" and every client falls back to proxied uploads;
    without a client network the URLs it signs are refused at the account's firewall."""
    report(signed_upload_rule(graph))


def test_direct_is_among_the_variants_and_advertises_multipart():
    assert multipart_advertised(build(DIRECT)) and not multipart_advertised(build(VARIANTS[0]))


def test_cpu_and_memory_are_consumption_sizes(graph):
    """On the Consumption profile a replica's containers together take one of the fixed pairs:
    0.25 to 4 vCPU in steps of 0.25, with twice as many GiB of memory.
    https://learn.microsoft.com/en-us/azure/container-apps/containers#allocations"""
    report(size_rule(graph))


# Regions where Azure offers zone-redundant storage to a standard general-purpose v2 account, and geo-zone-
# redundant storage (the storage docs' lists, not the regions with zones: japanwest has zones, not ZRS).
ZRS_REGIONS = {
    "southafricanorth", "australiaeast", "centralindia", "eastasia", "japaneast", "koreacentral", "southeastasia",
    "francecentral", "germanywestcentral", "italynorth", "northeurope", "norwayeast", "polandcentral",
    "spaincentral", "swedencentral", "switzerlandnorth", "uksouth", "westeurope", "israelcentral", "qatarcentral",
    "uaenorth", "canadacentral", "centralus", "eastus", "eastus2", "mexicocentral", "southcentralus", "westus2",
    "westus3", "brazilsouth"}
GZRS_REGIONS = {
    "southafricanorth", "australiaeast", "eastasia", "japaneast", "koreacentral", "southeastasia", "centralindia",
    "francecentral", "germanywestcentral", "northeurope", "norwayeast", "swedencentral", "switzerlandnorth",
    "uksouth", "westeurope", "uaenorth", "canadacentral", "centralus", "eastus", "eastus2", "southcentralus",
    "westus2", "westus3", "brazilsouth"}
ZONE_REDUNDANT_SKUS = {"Standard_ZRS": ZRS_REGIONS, "Standard_GZRS": GZRS_REGIONS, "Standard_RAGZRS": GZRS_REGIONS,
                       "Premium_ZRS": ZRS_REGIONS}


def location_of(graph: Graph, resource: Recorded) -> str:
    """The resource's region: its own `location`, else its provider's."""
    if resource.inputs.get("location"):
        return resource.inputs["location"]
    [provider] = [r for r in graph.resources if r.urn == resource.provider.rsplit("::", 1)[0]]  # "<urn>::<id>"
    return provider.inputs["location"]


def zone_rule(graph: Graph) -> list[str]:
    problems = []
    for environment in graph.of_type(ENVIRONMENT):
        has_zones = location_of(graph, environment) in AZURE_ZONE_REGIONS
        if bool(environment.inputs.get("zoneRedundant")) != has_zones:
            problems.append(f"[{graph.variant.name}] {environment.name}: zoneRedundant "
                            f"{environment.inputs.get('zoneRedundant')} in {location_of(graph, environment)}, which "
                            f"{'has' if has_zones else 'has no'} availability zones (settable only when it is created)")
    return problems


def test_environment_is_zone_redundant_where_the_region_has_zones(graph):
    """Replicas spread over availability zones only in a zone-redundant environment, which is
    chosen when the environment is created (with a virtual network) and cannot be changed after; a region
    without zones refuses it.
    https://learn.microsoft.com/en-us/azure/reliability/reliability-azure-container-apps#availability-zone-support"""
    report(zone_rule(graph))


def redundancy_rule(graph: Graph) -> list[str]:
    problems = []
    for account in graph.of_type("azure-native:storage:StorageAccount"):
        sku, where = account.inputs["sku"]["name"], location_of(graph, account)
        if sku in ZONE_REDUNDANT_SKUS and where not in ZONE_REDUNDANT_SKUS[sku]:
            problems.append(f"[{graph.variant.name}] {account.name}: {sku} is not offered in {where}")
        if sku not in ZONE_REDUNDANT_SKUS and where in ZRS_REGIONS:
            problems.append(f"[{graph.variant.name}] {account.name}: {sku} in {where}, which offers Standard_ZRS "
                            "(the stack's default there)")
    for server in graph.of_type("azure-native:dbforpostgresql:Server"):
        mode = (server.inputs.get("highAvailability") or {}).get("mode")
        if mode == "ZoneRedundant" and location_of(graph, server) not in AZURE_ZONE_REGIONS:
            problems.append(f"[{graph.variant.name}] {server.name}: zone-redundant high availability in "
                            f"{location_of(graph, server)}, which has no availability zones")
    return problems


def test_redundancy_is_what_the_region_offers(graph):
    """Review 24 (azure 2 F2): the default Standard_ZRS was sent to regions without ZRS (westus,
    northcentralus, japanwest, ...), where Azure refuses the storage account at the first `up`; a
    zone-redundant standby needs a region with zones. ZRS is the default where the region offers it.
    https://learn.microsoft.com/en-us/azure/storage/common/redundancy-regions-zrs,
    https://learn.microsoft.com/en-us/azure/storage/common/redundancy-regions-gzrs,
    https://learn.microsoft.com/en-us/azure/reliability/reliability-postgresql-flexible-server"""
    report(redundancy_rule(graph))


# --- each rule can fail ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def default_graph() -> Graph:
    return build(VARIANTS[0])


@pytest.fixture(scope="module")
def certificate_graph() -> Graph:
    return build_bound(VARIANTS[1])


@pytest.fixture(scope="module")
def direct_graph() -> Graph:
    return build(DIRECT)


def _ip_rules(change: Callable[[list], object]) -> Callable[[dict], None]:
    def edit(inputs: dict) -> None:
        rules = inputs["networkRuleSet"]
        rules["ipRules"] = change(rules["ipRules"])
    return edit


def _without_delegator(graph: Graph) -> Graph:
    return dataclasses.replace(graph, run=ProgramRun(
        [r for r in graph.resources if not (r.type == "azure-native:authorization:RoleAssignment"
                                            and r.inputs["roleDefinitionId"].endswith(STORAGE_BLOB_DELEGATOR))],
        graph.run.stack_outputs, graph.run.generated_secrets))


DIRECT_MUTATIONS = {
    "client networks gone": (signed_upload_rule, lambda g: mutated(
        g, "azure-native:storage:StorageAccount", "mlflow-artifacts", _ip_rules(lambda rules: []))),
    "no delegation": (signed_upload_rule, _without_delegator),
    "delegation on the container only": (signed_upload_rule, lambda g: mutated(
        g, "azure-native:authorization:RoleAssignment", "mlflow-artifacts-server-delegator",
        lambda i: i.update(scope=i["scope"] + "/blobServices/default/containers/mlflow-artifacts"))),
    "a private range": (storage_firewall_rule, lambda g: mutated(
        g, "azure-native:storage:StorageAccount", "mlflow-artifacts",
        _ip_rules(lambda rules: [*rules, {"iPAddressOrRange": "10.1.0.0/16", "action": "Allow"}]))),
    "a /32": (storage_firewall_rule, lambda g: mutated(
        g, "azure-native:storage:StorageAccount", "mlflow-artifacts",
        _ip_rules(lambda rules: [{"iPAddressOrRange": "198.51.100.7/32", "action": "Allow"}]))),
    "the SDK's key under the API's name": (storage_firewall_rule, lambda g: mutated(
        g, "azure-native:storage:StorageAccount", "mlflow-artifacts",
        _ip_rules(lambda rules: [{"ip_address_or_range": "203.0.113.0/24", "action": "Allow"}]))),
    "delegation propagation": (grant_propagation_rule, lambda g: mutated(
        g, "command:local:Command", "mlflow-artifacts-server-delegator-propagation",
        lambda i: i.update(triggers=[]))),
}


@pytest.mark.parametrize("rule", sorted(DIRECT_MUTATIONS))
def test_each_direct_transfer_rule_reports_a_broken_resource(direct_graph, rule):
    check, breaking = DIRECT_MUTATIONS[rule]
    assert not check(direct_graph)
    assert check(breaking(direct_graph)), f"the {rule} rule did not notice"


def replaced_command(app: Recorded) -> Recorded:
    """The server app with --allowed-hosts naming only a domain."""
    inputs = json.loads(json.dumps(app.raw_inputs))
    for container in inputs["template"]["containers"]:
        command = container.get("command") or []
        if "--allowed-hosts" in command:
            command[command.index("--allowed-hosts") + 1] = "mlflow.example.com"
    return dataclasses.replace(app, raw_inputs=inputs)


def mutated(graph: Graph, type_: str, name: str, change: Callable[[dict], None]) -> Graph:
    """The graph with one resource's inputs changed (state kept)."""
    resources = replaced(graph.resources, type_, name, change)
    return dataclasses.replace(graph, run=ProgramRun(resources, graph.run.stack_outputs, graph.run.generated_secrets))


def unchained(graph: Graph, type_: str) -> Graph:
    """The graph with the resources of one type waiting for nothing of their own type."""
    urns = {r.urn for r in graph.of_type(type_)}
    resources = [dataclasses.replace(r, dependencies=[d for d in r.dependencies if d not in urns])
                 if r.urn in urns else r for r in graph.resources]
    return dataclasses.replace(graph, run=ProgramRun(resources, graph.run.stack_outputs, graph.run.generated_secrets))


def set_nginx(app_inputs: dict, old: str, new: str) -> None:
    for item in main_container_inputs(app_inputs).get("env", []):
        if "http {" in str(item.get("value", "")):
            item["value"] = item["value"].replace(old, new)


def main_container_inputs(inputs: dict) -> dict:
    return inputs["template"]["containers"][0]


def probe_to(path: str) -> Callable[[dict], None]:
    def change(inputs: dict) -> None:
        for probe in main_container_inputs(inputs).get("probes", []):
            if probe.get("type") == "Liveness":
                probe["httpGet"]["path"] = path
    return change


MUTATIONS = {
    "pull propagation": (grant_propagation_rule, lambda g: mutated(
        g, "command:local:Command", "mlflow-platform-acr-pull-propagation", lambda i: i.update(create="sleep 10"))),
    "storage grant propagation": (grant_propagation_rule, lambda g: mutated(
        g, "command:local:Command", "mlflow-artifacts-server-access-propagation", lambda i: i.update(triggers=[]))),
    "reachable hosts": (reachable_hosts_rule, lambda g: dataclasses.replace(g, run=ProgramRun(
        [replaced_command(r) if r in server_apps(g) else r for r in g.resources],
        g.run.stack_outputs, g.run.generated_secrets))),
    "names": (names_rule, lambda g: mutated(g, ENVIRONMENT, "mlflow-platform-environment",
                                            lambda i: i.update(environmentName="mlflow-Prod"))),
    "secret references": (secret_reference_rule, lambda g: mutated(g, APP, "mlflow-proxy", lambda i: i[
        "configuration"].update(secrets=[]))),
    "one at a time": (one_at_a_time_rule, lambda g: unchained(g, "azure-native:network:Subnet")),
    "grace": (grace_rule, lambda g: mutated(g, APP, "mlflow-proxy",
                                            lambda i: i["template"].update(terminationGracePeriodSeconds=900))),
    "proxy probes": (proxy_probe_rule, lambda g: mutated(g, APP, "mlflow-proxy", probe_to("/health"))),
    "spool": (spool_rule, lambda g: mutated(g, APP, "mlflow-proxy", lambda i: set_nginx(
        i, "client_max_body_size ", "client_max_body_size 0; #"))),
    "sizes": (size_rule, lambda g: mutated(g, APP, "mlflow-server", lambda i: main_container_inputs(i)[
        "resources"].update(memory="3Gi"))),
    "zones": (zone_rule, lambda g: mutated(g, ENVIRONMENT, "mlflow-platform-environment",
                                           lambda i: i.update(zoneRedundant=False))),
    "redundancy": (redundancy_rule, lambda g: mutated(g, "azure-native:storage:StorageAccount", "mlflow-artifacts",
                                                      lambda i: i.update(location="westus"))),
}


@pytest.mark.parametrize("rule", sorted(MUTATIONS))
def test_each_rule_reports_a_broken_resource(default_graph, rule):
    """Each rule finds a resource broken the way Azure refuses (so no rule passes vacuously)."""
    check, breaking = MUTATIONS[rule]
    assert check(breaking(default_graph)), f"the {rule} rule did not notice"


def test_certificate_rule_reports_a_certificate_made_before_its_binding(certificate_graph):
    """The managed certificate rule on the variant that has one: with the app waiting for the
    certificate (its binding names it), the certificate cannot come after the app."""
    apps = [a for a in certificate_graph.of_type(APP) if ingress(a).get("customDomains")]
    certificate = certificate_graph.of_type("azure-native:app:ManagedCertificate")
    assert apps and certificate, "the variant has a managed certificate and the app binding its host"
    stripped = [dataclasses.replace(r, dependencies=[]) if r.urn == certificate[0].urn else r
                for r in certificate_graph.resources]
    broken = dataclasses.replace(certificate_graph, run=ProgramRun(
        stripped, certificate_graph.run.stack_outputs, certificate_graph.run.generated_secrets))
    assert certificate_rule(broken)
