"""The azure platform against Azure's own rules (issue 23, azure items): what a type schema cannot
show. Each rule cites its source."""

import base64
import http.server
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

import pytest

from components.platforms.azure.cli_login import FRESH_AZ_LOGIN
from components.platforms.azure.platform import ON_DEMAND_BACKUP_SCRIPT
from rehearsal.ports import free_port
from tests.harness.program import MOCK_CLOCK, REPO_ROOT, ProgramMocks, ProgramRun, run_program
from tests.harness.stacks import app, azure_config

NGINX = "/usr/sbin/nginx"
# nginx:alpine's workers run as `nginx` (its build's --user); Debian's nginx here, without a `user`
# directive, as `nobody`. The test runs the graph's wrapper with the one in place of the other.
IMAGE_WORKER_USER, HOST_WORKER_USER = "nginx", "nobody"


@pytest.fixture(scope="module")
def run() -> ProgramRun:
    return run_program(azure_config(), stack="azure")


class _Upstream(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"mlflow")

    def log_message(self, *args):
        pass


def _status(url: str, credentials: tuple[str, str]) -> int:
    token = base64.b64encode(":".join(credentials).encode()).decode()
    request = urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def _proxy_as_container_apps_runs_it(run: ProgramRun, base: str, upstream: int, listen: int, metrics: int):
    """The proxy app's container from the recorded graph, as Container Apps starts it: its command as
    root (no run-as-user), its env with the secret store's values; paths and ports moved aside."""
    definition = app(run, "mlflow-proxy")
    container = definition["template"]["containers"][0]
    secrets = {s["name"]: s["value"] for s in definition["configuration"]["secrets"]}
    env = {e["name"]: e["value"] if "value" in e else secrets[e["secretRef"]] for e in container["env"]}

    def moved(text: str) -> str:
        return (text.replace("/tmp/", f"{base}/")
                .replace("mlflow-server:5000", f"127.0.0.1:{upstream}")
                .replace("listen 8080;", f"listen 127.0.0.1:{listen};")
                .replace("listen 9180;", f"listen 127.0.0.1:{metrics};"))

    env = {name: moved(value) for name, value in env.items()}
    shell, flag, script, argv0, program, *args = container["command"]
    assert (shell, flag, program) == ("sh", "-c", "nginx")
    script = moved(script).replace(f"id -g {IMAGE_WORKER_USER}", f"id -g {HOST_WORKER_USER}")
    args = [moved(arg) for arg in args]
    return [shell, flag, script, argv0, NGINX, *args], {"PATH": os.environ["PATH"], **env}


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists(NGINX), reason="needs root and Debian's nginx")
def test_nginx_workers_can_read_htpasswd_when_container_apps_runs_the_proxy_as_root(run):
    """azure 1. Container Apps has no run-as-user
    (https://learn.microsoft.com/en-us/azure/templates/microsoft.app/containerapps: the container
    has no user/securityContext field): the wrapper runs as root, Nginx's master too, and its workers
    drop to the image's user, which must be able to read htpasswd at request time. Before the fix the
    file was root:0600 under a root:0700 directory and every request with credentials got 500."""
    base = tempfile.mkdtemp(prefix="azure-proxy-", dir="/tmp")
    os.chmod(base, 0o755)  # as /tmp in the image: the workers may traverse it
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    listen = free_port()
    command, env = _proxy_as_container_apps_runs_it(run, base, upstream.server_address[1], listen, free_port())
    nginx = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{listen}"
        for _ in range(50):
            try:
                urllib.request.urlopen(f"{url}/nginx-health", timeout=1)
                break
            except OSError:
                assert nginx.poll() is None, nginx.stdout.read().decode()
                time.sleep(0.1)
        username, password = run.output("username"), run.output("password")
        assert _status(f"{url}/api/2.0/mlflow/experiments/search", (username, password)) == 200
        assert _status(f"{url}/api/2.0/mlflow/experiments/search", (username, "wrong")) == 401
        htpasswd = os.stat(f"{base}/mlflow-platform/htpasswd")
        assert htpasswd.st_mode & 0o777 == 0o640 and htpasswd.st_uid == 0, "read-only to the workers, never world"
    finally:
        nginx.terminate()
        nginx.wait(10)
        upstream.shutdown()
        shutil.rmtree(base, ignore_errors=True)


# --- the flexible server: one operation at a time, a backup before a schema upgrade ---------------

SERVER_WRITES = ("azure-native:dbforpostgresql:Database", "azure-native:dbforpostgresql:Configuration")


def _backups(run: ProgramRun) -> list:
    """The on-demand backups the stack takes (Azure CLI commands: Azure deletes a backup after the retention
    window, so none is kept as a resource a refresh would find gone: review 25, azure 6 F2)."""
    return [c for c in run.of_type("command:local:Command") if c.inputs.get("create") == ON_DEMAND_BACKUP_SCRIPT]


def _waits_for(run: ProgramRun, later, earlier) -> bool:
    """`later` depends on `earlier`, directly or through other resources."""
    by_urn = {r.urn: r for r in run.resources}
    seen, todo = set(), list(later.dependencies)
    while todo:
        urn = todo.pop()
        if urn == earlier.urn:
            return True
        if urn not in seen and urn in by_urn:
            seen.add(urn)
            todo.extend(by_urn[urn].dependencies)
    return False


GENERAL_PURPOSE = {"dbSku": "Standard_D2ds_v5"}


@pytest.fixture(scope="module")
def general_purpose() -> ProgramRun:
    """A flexible server above the Burstable tier: on-demand backups exist there."""
    return run_program(azure_config(azure=GENERAL_PURPOSE), stack="azure")


def test_writes_to_the_flexible_server_are_one_at_a_time(general_purpose):
    """azure 3. The flexible server runs one operation at a time and answers any other with
    ServerBusy ("Server ... is busy with another operation",
    https://github.com/Azure/bicep-registry-modules/issues/4451): every database, configuration and
    backup of the server waits for the others. require_secure_transport is not written: it is "on" by
    default (https://learn.microsoft.com/en-us/azure/postgresql/flexible-server/how-to-connect-tls-ssl)."""
    run = general_purpose
    writes = [r for r in run.resources if r.type in SERVER_WRITES] + _backups(run)
    assert len(writes) >= 3 and _backups(run)
    for index, first in enumerate(writes):
        for second in writes[index + 1:]:
            assert _waits_for(run, second, first) or _waits_for(run, first, second), (first.name, second.name)
    assert "require_secure_transport" not in {c.inputs["configurationName"] for c in
                                              run.of_type("azure-native:dbforpostgresql:Configuration")}


class _DeployedBefore(ProgramMocks):
    """An account whose server app carries the tags of an earlier rollout (None: no app yet, a first
    deploy, where Azure's look-up answers "not found")."""

    def __init__(self, version=None, started: str = "2026-01-02T03:04:05Z") -> None:
        super().__init__()
        self.version, self.started = version, started

    def call(self, args):
        if args.token == "azure-native:app:getContainerApp" and args.args["containerAppName"] == "mlflow-server":
            if self.version is None:
                return {}, [("", "ResourceNotFound: The Resource 'Microsoft.App/containerApps/mlflow-server' "
                                 "under resource group 'mlflow-azure' was not found.")]
            return {"name": "mlflow-server", "tags": {"mlflow-deployed-version": self.version,
                                                      "mlflow-rollout-started": self.started}}
        return super().call(args)


NOW = MOCK_CLOCK  # what the rollout clock command prints under the mocks


def _server_tags(graph: ProgramRun) -> dict:
    return graph.one("azure-native:app:ContainerApp", "mlflow-server").inputs["tags"]


def test_a_new_mlflow_version_waits_for_an_on_demand_backup_named_after_the_change(monkeypatch):
    """azure 6. Above the Burstable tier the server's init container upgrades the schema only after an
    on-demand backup
    (https://learn.microsoft.com/en-us/azure/postgresql/flexible-server/concepts-backup-restore#on-demand-backups),
    named after the version, taken once per version by the Azure CLI and never deleted by the stack. The
    version before is read from the server app's own tags (a first deploy: the app does not exist, and the
    look-up's "not found" does not fail it)."""
    run = run_program(azure_config(azure=GENERAL_PURPOSE), stack="azure", mocks=_DeployedBefore(None))
    server = run.one("azure-native:dbforpostgresql:Server")
    [backup] = _backups(run)
    assert backup.inputs["environment"]["SERVER"] == server.state["name"]
    assert re.fullmatch(r"mlflow-before-3-17-2-[a-z0-9]{6}", backup.inputs["environment"]["BACKUP_NAME"])
    assert backup.inputs["triggers"] == ["3.17.2"] and not backup.inputs.get("delete"), "once per version, kept"
    # Its script changed (the fresh CLI login put in front): an update runs `:`, not the backup again.
    assert backup.inputs["update"] == ":" and backup.inputs["create"].startswith(FRESH_AZ_LOGIN)
    assert not run.of_type("azure-native:dbforpostgresql:BackupsAutomaticAndOnDemand"), "Azure expires backups"
    server_app = run.one("azure-native:app:ContainerApp", "mlflow-server")
    assert _waits_for(run, server_app, backup)
    assert _server_tags(run) == {"mlflow-deployed-version": "3.17.2", "mlflow-rollout-started": NOW}
    assert not run.of_type("azure-native:resources:TagAtScope"), "a tag on the server: its next update drops it"

    upgrade = run_program(azure_config(azure=GENERAL_PURPOSE), stack="azure", mocks=_DeployedBefore("3.16.0"))
    [taken] = _backups(upgrade)
    assert len(taken.inputs["environment"]["BACKUP_NAME"]) <= 63


def test_burstable_takes_no_on_demand_backup_and_records_when_the_rollout_started(monkeypatch):
    """Review 2 (1). "On-demand backup feature is currently not supported with the Burstable server compute
    tier" (https://learn.microsoft.com/en-us/azure/postgresql/flexible-server/concepts-backup-restore#on-demand-backups),
    and the default azure.dbSku is Burstable: no backup there. Going back is a point-in-time restore to
    just before the rollout (same page, "Point-in-time recovery"): the server app records the version and
    the UTC time its rollout started; an `up` of the same version keeps that time."""
    first = run_program(azure_config(), stack="azure", mocks=_DeployedBefore(None))
    assert not _backups(first)
    assert _server_tags(first) == {"mlflow-deployed-version": "3.17.2", "mlflow-rollout-started": NOW}
    same = run_program(azure_config(), stack="azure", mocks=_DeployedBefore("3.17.2"))
    assert _server_tags(same)["mlflow-rollout-started"] == "2026-01-02T03:04:05Z", "no change: the time stays"
    bump = run_program(azure_config(), stack="azure", mocks=_DeployedBefore("3.16.0"))
    assert not _backups(bump)
    assert _server_tags(bump) == {"mlflow-deployed-version": "3.17.2", "mlflow-rollout-started": NOW}
    assert "tags" not in app(bump, "mlflow-proxy") or not app(bump, "mlflow-proxy")["tags"]


# --- names ---------------------------------------------------------------------------------------

RULES = "https://learn.microsoft.com/en-us/azure/azure-resource-manager/management/resource-name-rules"
LOWER_HYPHENS = r"[a-z][a-z0-9-]*[a-z0-9]"
# (type, input holding the name): (pattern, shortest, longest), as RULES gives them.
NAME_RULES = {
    ("azure-native:resources:ResourceGroup", "resourceGroupName"): (r"[-\w.()]*[-\w()]", 1, 90),
    ("azure-native:network:VirtualNetwork", "virtualNetworkName"): (r"[A-Za-z0-9][\w.-]*\w", 2, 64),
    ("azure-native:managedidentity:UserAssignedIdentity", "resourceName"): (r"[A-Za-z0-9][\w-]*", 3, 128),
    ("azure-native:operationalinsights:Workspace", "workspaceName"): (r"[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9]", 4, 63),
    ("azure-native:app:ManagedEnvironment", "environmentName"): (LOWER_HYPHENS, 2, 60),
    ("azure-native:app:ContainerApp", "containerAppName"): (LOWER_HYPHENS, 2, 32),
    ("azure-native:app:Job", "jobName"): (LOWER_HYPHENS, 2, 32),
    ("azure-native:dbforpostgresql:Server", "serverName"): (r"[a-z0-9][a-z0-9-]*[a-z0-9]", 3, 63),
    ("azure-native:containerregistry:Registry", "registryName"): (r"[A-Za-z0-9]+", 5, 50),
    ("azure-native:storage:StorageAccount", "accountName"): (r"[a-z0-9]+", 3, 24),
}


@pytest.mark.parametrize("stack", ["Prod", "eu_prod", "Team.ML_eu-West_production_environment_2026"])
def test_every_azure_name_follows_azures_rules_whatever_the_stack_is_called(stack):
    """azure 10. Names start from `<instance>-<stack>`; Pulumi stack names may hold upper case, '_' and '.',
    which several Azure names refuse (rules and lengths: RULES; Container Apps: no '--' either; the private
    DNS zone's labels: letters, digits and '-', at most 63 characters, RFC 1035)."""
    config = azure_config(maintenance={"gcSchedule": "0 3 * * *"})
    variant = run_program(config, stack=stack)
    checked = set()
    for (type_token, key), (pattern, shortest, longest) in NAME_RULES.items():
        for resource in variant.of_type(type_token):
            name = resource.inputs[key]
            assert re.fullmatch(pattern, name) and shortest <= len(name) <= longest, (type_token, name)
            assert "--" not in name or not type_token.startswith("azure-native:app:"), name
            checked.add(type_token)
    assert len(checked) == len(NAME_RULES), set(t for t, _ in NAME_RULES) - checked
    zone = variant.one("azure-native:privatedns:PrivateZone").inputs["privateZoneName"]
    assert all(re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", label) for label in zone.split(".")), zone


# --- what Azure changes by itself, and what it takes only at creation ----------------------------

def test_the_flexible_servers_grown_disk_is_never_written_back(run):
    """Review 2. Auto-grow enlarges the disk by itself
    (https://learn.microsoft.com/en-us/azure/postgresql/flexible-server/how-to-auto-grow-storage-portal) and
    storage never shrinks ("You can't scale down the storage":
    https://learn.microsoft.com/en-us/azure/postgresql/flexible-server/how-to-scale-compute-storage-portal):
    after a refresh records the grown size, an `up` that writes azure.dbStorageGb back asks for a shrink.
    The size is the initial one only."""
    server = run.one("azure-native:dbforpostgresql:Server")
    assert server.inputs["storage"] == {"storageSizeGB": 32, "autoGrow": "Enabled"}
    assert "storage.storageSizeGB" in server.ignore_changes


def test_zone_redundancy_applies_when_the_environment_is_created_only(run):
    """Review 3. Azure takes zoneRedundant only when it creates the environment
    (https://learn.microsoft.com/en-us/azure/reliability/reliability-azure-container-apps); a replacement
    cannot work either: the same environment name in the same subnet, which Container Apps releases only
    some time after the delete (https://github.com/microsoft/azure-container-apps/issues/974). A changed
    azure.zoneRedundant is ignored (README: it means a new stack)."""
    assert "zoneRedundant" in run.one("azure-native:app:ManagedEnvironment").ignore_changes


def test_geo_redundant_backup_applies_when_the_server_is_created_only(run):
    """Review 24 (azure F2): "Configuring geo-redundant storage for backup is only allowed during server
    create" (Azure/azure-policy, GeoRedundant_DBForPostgreSQL_Audit.json): a changed azure.dbGeoRedundantBackup
    made the next `up` fail on the protected server. It is ignored after creation (README)."""
    server = run.one("azure-native:dbforpostgresql:Server")
    assert server.inputs["backup"]["geoRedundantBackup"] == "Disabled"
    assert "backup.geoRedundantBackup" in server.ignore_changes


# --- alerts ----------------------------------------------------------------------------------------

SUPPORTED_METRICS = "https://learn.microsoft.com/en-us/azure/azure-monitor/reference/supported-metrics/"
# Namespace: {metric: (aggregations, dimensions)}, as Azure's supported-metrics pages list them:
# microsoft-app-containerapps-metrics, microsoft-app-jobs-metrics, microsoft-dbforpostgresql-flexibleservers-metrics.
METRICS = {
    "Microsoft.App/containerApps": {
        "Requests": ({"Average", "Total", "Maximum", "Minimum"}, {"revisionName", "podName", "statusCodeCategory",
                                                                  "statusCode"}),
        "RestartCount": ({"Average", "Total", "Maximum", "Minimum"}, {"revisionName", "podName"})},
    "Microsoft.App/jobs": {
        "Executions": ({"Average", "Total", "Maximum", "Minimum"}, {"state", "jobName", "executionName"})},
    "Microsoft.DBforPostgreSQL/flexibleServers": {
        "cpu_percent": ({"Average", "Maximum", "Minimum"}, set()),
        "storage_percent": ({"Average", "Maximum", "Minimum"}, set()),
        "active_connections": ({"Average", "Maximum", "Minimum"}, set())},
}
# Metric alert windows and frequencies Azure accepts
# (https://learn.microsoft.com/en-us/azure/templates/microsoft.insights/metricalerts).
WINDOWS = {"PT1M", "PT5M", "PT15M", "PT30M", "PT1H", "PT6H", "PT12H", "P1D"}
FREQUENCIES = {"PT1M", "PT5M", "PT15M", "PT30M", "PT1H"}
ALERT = "azure-native:monitor:MetricAlert"


def _alerts(graph: ProgramRun) -> dict:
    """(scope, metric, dimension filters) -> the alert's inputs."""
    found = {}
    for alert in graph.of_type(ALERT):
        (criterion,) = alert.inputs["criteria"]["allOf"]
        filters = tuple((d["name"], tuple(d["values"])) for d in criterion.get("dimensions", []))
        found[(alert.inputs["scopes"][0], criterion["metricName"], filters)] = alert.inputs
    return found


@pytest.fixture(scope="module")
def alerted() -> ProgramRun:
    return run_program(azure_config(azure={"alarmEmail": "ops@example.com"}, maintenance={"gcSchedule": "0 3 * * *"}),
                       stack="azure")


def test_alerts_watch_the_proxys_5xx_restarts_the_database_and_the_gc_job(alerted):
    """Review 4. What the aws alarms watch, with Azure Monitor metric alerts: 5xx at the proxy's ingress,
    the flexible server's CPU, storage and connections (against the
    max_connections this stack writes), failed gc executions. Azure has no metric math in a metric
    alert, so 5xx is a count, not a share (components/platforms/azure/alerts.py)."""
    apps = {r.inputs["containerAppName"]: r.state["id"] for r in alerted.of_type("azure-native:app:ContainerApp")}
    server = alerted.one("azure-native:dbforpostgresql:Server").state["id"]
    job = alerted.one("azure-native:app:Job").state["id"]
    max_connections = int(next(c.inputs["value"] for c in alerted.of_type("azure-native:dbforpostgresql:Configuration")
                               if c.inputs["configurationName"] == "max_connections"))
    alerts = _alerts(alerted)
    assert set(alerts) == {
        (apps["mlflow-proxy"], "Requests", (("statusCodeCategory", ("5xx",)),)),
        (server, "cpu_percent", ()), (server, "storage_percent", ()), (server, "active_connections", ()),
        (job, "Executions", (("state", ("Failed",)),)),
    }
    connections = alerts[(server, "active_connections", ())]["criteria"]["allOf"][0]
    assert connections["operator"] == "GreaterThan" and connections["threshold"] == int(max_connections * 0.8)
    without_gc = _alerts(run_program(azure_config(), stack="azure"))
    assert len(without_gc) == 4 and "Executions" not in {metric for _, metric, _ in without_gc}
    # Review 2 (4): RestartCount is a replica's cumulative count (https://github.com/microsoft/azure-container-apps/
    # issues/467, /1384): an alert on it fires forever after one restart, so none is made.
    assert "RestartCount" not in {metric for _, metric, _ in alerts}


def test_every_alert_uses_a_documented_metric_and_notifies_the_action_group(alerted):
    """Review 4. Metric names, aggregations and dimensions as Azure documents them (SUPPORTED_METRICS);
    windows and frequencies Azure accepts; each alert names the stack's action group, which emails
    azure.alarmEmail; rule names are unique per resource group, so they carry the stack's prefix."""
    group = alerted.one("azure-native:monitor:ActionGroup")
    assert group.inputs["emailReceivers"] == [{"name": "alarm-email", "emailAddress": "ops@example.com",
                                               "useCommonAlertSchema": True}]
    assert len(group.inputs["groupShortName"]) <= 12
    names = [a.inputs["ruleName"] for a in alerted.of_type(ALERT)]
    assert len(set(names)) == len(names) and all(n.startswith("mlflow-azure-") for n in names)
    for alert in alerted.of_type(ALERT):
        inputs = alert.inputs
        (criterion,) = inputs["criteria"]["allOf"]
        aggregations, dimensions = METRICS[criterion["metricNamespace"]][criterion["metricName"]]
        assert criterion["timeAggregation"] in aggregations, alert.name
        assert {d["name"] for d in criterion.get("dimensions", [])} <= dimensions, alert.name
        assert f"/providers/{criterion['metricNamespace']}/" in inputs["scopes"][0] or \
            criterion["metricNamespace"] == "Microsoft.App/jobs", alert.name
        assert inputs["windowSize"] in WINDOWS and inputs["evaluationFrequency"] in FREQUENCIES, alert.name
        assert inputs["actions"] == [{"actionGroupId": group.state["id"]}] and inputs["autoMitigate"] is True
    assert not run_program(azure_config(), stack="azure").one("azure-native:monitor:ActionGroup").inputs.get(
        "emailReceivers")


# Where each azure-native module's resources live (https://learn.microsoft.com/en-us/azure/azure-resource-manager/
# management/azure-services-resource-providers); Microsoft.Authorization and Microsoft.Resources are registered in
# every subscription.
RESOURCE_PROVIDERS = {"app": "Microsoft.App", "containerregistry": "Microsoft.ContainerRegistry",
                      "dbforpostgresql": "Microsoft.DBforPostgreSQL", "managedidentity": "Microsoft.ManagedIdentity",
                      "monitor": "Microsoft.Insights", "network": "Microsoft.Network",
                      "operationalinsights": "Microsoft.OperationalInsights", "privatedns": "Microsoft.Network",
                      "storage": "Microsoft.Storage", "authorization": None, "resources": None}


@pytest.mark.parametrize("config", [{}, {"domain": "mlflow.example.com"}], ids=["default", "domain"])
def test_the_readme_registers_every_resource_provider_the_graph_uses(config):
    """Review 24 (azure 2, F1): azure-native does not register resource providers, and a fresh subscription
    refuses the first call to an unregistered one (MissingSubscriptionRegistration:
    pulumi/pulumi-azure-native#3479). The README's prerequisite registers every one the graph uses."""
    run = run_program(azure_config(azure=config), stack="azure")
    modules = {r.type.split(":")[1] for r in run.resources if r.type.startswith("azure-native:")}
    assert modules <= set(RESOURCE_PROVIDERS), f"which provider holds {modules - set(RESOURCE_PROVIDERS)}?"
    readme = (REPO_ROOT / "README.md").read_text()
    command = readme[readme.index("for namespace in Microsoft.App"):].split("; do", 1)[0]
    needed = {RESOURCE_PROVIDERS[module] for module in modules} - {None}
    assert needed <= set(command.split()), f"README's registration misses {needed - set(command.split())}"


def test_the_rollout_time_is_taken_last_before_the_server_app():
    """Review 25 (azure 7 F1): the clock ran at the start of `up`; a retry after a failed upgrade kept that time, and
    going back to it lost every run logged between it and the migration. It now waits for everything else the
    server app waits for."""
    run = run_program(azure_config(azure=GENERAL_PURPOSE), stack="azure", mocks=_DeployedBefore("3.16.0"))
    [clock] = [c for c in run.of_type("command:local:Command") if c.inputs["create"].startswith("date -u ")]
    server_app = run.one("azure-native:app:ContainerApp", "mlflow-server")
    pauses = [c for c in run.of_type("command:local:Command") if c.inputs["create"].startswith("sleep ")]
    images = [i for i in run.of_type("docker:index/image:Image") if _waits_for(run, server_app, i)]
    needed = [*_backups(run), *images, *pauses, *run.of_type("azure-native:dbforpostgresql:Configuration")]
    assert _backups(run) and images and len(pauses) >= 2
    for resource in needed:
        assert _waits_for(run, server_app, resource) and _waits_for(run, clock, resource), resource.name
    assert _waits_for(run, server_app, clock)
