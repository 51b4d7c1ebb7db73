"""artifacts.transfer on the `azure` graph (issue 26): direct gives the server's identity Storage Blob Delegator
on the storage account (user-delegation keys to sign upload SAS), admits the configured client networks
through the account's firewall and nothing else; proxied has neither. The config refuses what could not work."""

from __future__ import annotations

import pytest

from components import render
from components.config import ConfigError, parse_stack_config
from components.platforms.azure.config import STORAGE_IP_RULES_MAX
from tests.harness.program import ProgramRun, run_program
from tests.harness.stacks import app, azure_config, identity

ASSIGNMENT = "azure-native:authorization:RoleAssignment"
ACCOUNT = "azure-native:storage:StorageAccount"
COMMAND = "command:local:Command"
STORAGE_BLOB_DELEGATOR = "db58b8e5-c6ad-4a2a-8342-4190687cbf4a"
"""https://learn.microsoft.com/en-us/azure/role-based-access-control/built-in-roles/storage#storage-blob-delegator"""
CLIENTS = ["203.0.113.0/24", "198.51.100.7"]


@pytest.fixture(scope="module")
def proxied() -> ProgramRun:
    return run_program(azure_config(), stack="azure")


@pytest.fixture(scope="module")
def direct() -> ProgramRun:
    return run_program(azure_config(artifacts={"transfer": "direct"}, azure={"storageClientCidrs": CLIENTS}),
                       stack="azure")


def role_of(assignment) -> str:
    return assignment.inputs["roleDefinitionId"].rsplit("/", 1)[-1]


def env_of(run: ProgramRun, name: str) -> dict:
    [container] = app(run, name)["template"]["containers"]
    return {e["name"]: e.get("value") for e in container["env"]}


def test_proxied_has_no_delegation_and_no_client_networks(proxied):
    assert STORAGE_BLOB_DELEGATOR not in {role_of(a) for a in proxied.of_type(ASSIGNMENT)}
    rules = proxied.one(ACCOUNT).inputs["networkRuleSet"]
    assert "ipRules" not in rules and rules["defaultAction"] == "Deny"


def test_the_server_identity_may_make_user_delegation_keys_on_the_account_only(direct):
    account = direct.one(ACCOUNT)
    [delegator] = [a for a in direct.of_type(ASSIGNMENT) if role_of(a) == STORAGE_BLOB_DELEGATOR]
    assert delegator.inputs["scope"] == account.state["id"], "Get User Delegation Key is an account operation"
    assert delegator.inputs["scope"].endswith(f"/storageAccounts/{account.inputs['accountName']}")
    assert delegator.inputs["principalId"] == identity(direct, "server").state["principalId"]
    assert delegator.inputs["principalType"] == "ServicePrincipal"
    # Its data access stays the container's: a user-delegation SAS grants at most what its signer may do.
    data_roles = {role_of(a): a.inputs["scope"] for a in direct.of_type(ASSIGNMENT)
                  if a.inputs["principalId"] == delegator.inputs["principalId"] and a is not delegator
                  and "storageAccounts" in a.inputs["scope"]}
    assert list(data_roles) == ["ba92f5b4-2d11-453d-a403-e96b0029c9fe"]
    assert data_roles["ba92f5b4-2d11-453d-a403-e96b0029c9fe"].endswith("/containers/mlflow-artifacts")


def test_the_server_starts_once_azure_honours_the_delegation(direct):
    [delegator] = [a for a in direct.of_type(ASSIGNMENT) if role_of(a) == STORAGE_BLOB_DELEGATOR]
    pause = direct.one(COMMAND, "mlflow-artifacts-server-delegator-propagation")
    assert pause.inputs["triggers"] == [delegator.state["id"]] and delegator.urn in pause.dependencies
    server = direct.one("azure-native:app:ContainerApp", "mlflow-server")
    assert pause.urn in server.dependencies


def test_the_account_admits_the_clients_and_still_denies_everyone_else(direct):
    rules = direct.one(ACCOUNT).inputs["networkRuleSet"]
    assert rules["defaultAction"] == "Deny" and rules["bypass"] == "AzureServices"
    assert [r["virtualNetworkResourceId"].rsplit("/", 1)[-1] for r in rules["virtualNetworkRules"]] == [
        "container-apps"]
    # iPAddressOrRange is the API's (and the SDK's camel-cased) name: any other key is no address at all.
    assert rules["ipRules"] == [{"iPAddressOrRange": cidr, "action": "Allow"} for cidr in CLIENTS]


def test_the_server_signs_with_its_identity_and_nginx_passes_server_info(direct):
    env = env_of(direct, "mlflow-server")
    assert env[render.AZURE_CLIENT_ID_ENV] and render.AZURE_CONNECTION_STRING_ENV not in env
    assert env[render.PRESIGNED_DOWNLOAD_TTL_ENV] == "300"
    assert "MLFLOW_S3_ENDPOINT_URL" not in env
    conf = next(v for v in env_of(direct, "mlflow-proxy").values() if v and "http {" in v)
    assert "server-info" not in conf


def test_direct_adds_the_delegation_and_changes_only_the_account_and_the_apps(proxied, direct):
    before = {r.urn: r for r in proxied.resources}
    after = {r.urn: r for r in direct.resources}
    assert {(after[urn].type, after[urn].name) for urn in set(after) - set(before)} == {
        (ASSIGNMENT, "mlflow-artifacts-server-delegator"), (COMMAND, "mlflow-artifacts-server-delegator-propagation")}
    assert set(before) <= set(after)
    changed = {(r.type, r.name) for urn, r in before.items() if r.raw_inputs != after[urn].raw_inputs}
    assert changed == {(ACCOUNT, "mlflow-artifacts"), ("azure-native:app:ContainerApp", "mlflow-server"),
                       ("azure-native:app:ContainerApp", "mlflow-proxy")}


# --- what the config refuses ----------------------------------------------------------------------

def refused(artifacts: dict, azure: dict) -> str:
    raw = {key.removeprefix("mlflow:"): value for key, value in azure_config(artifacts=artifacts, azure=azure).items()}
    with pytest.raises(ConfigError) as error:
        parse_stack_config(raw, "Pulumi.azure.yaml")
    return str(error.value)


def test_direct_against_the_default_deny_firewall_without_clients_is_refused():
    message = refused({"transfer": "direct"}, {})
    assert "artifacts.transfer direct needs azure.storageClientCidrs" in message
    assert "admits only the apps' subnet" in message and "keep artifacts.transfer proxied" in message


def test_client_networks_without_direct_are_refused():
    message = refused({"transfer": "proxied"}, {"storageClientCidrs": CLIENTS})
    assert "azure.storageClientCidrs" in message and "artifacts.transfer direct only" in message


@pytest.mark.parametrize("entry,fragment", [
    ("10.20.0.0/16", "not a public range"), ("192.168.1.0/24", "not a public range"),
    ("172.20.0.0/16", "not a public range"), ("0.0.0.0/0", "not a public range"),
    ("100.64.0.0/24", "not a public range"), ("203.0.113.8/31", "no /31 or /32"),
    ("203.0.113.9/32", "203.0.113.9"), ("203.0.113.5/24", "write the range as 203.0.113.0/24"),
    ("2001:db8::/32", "not an IPv4 address"), ("mlflow.example.com", "not an IPv4 address")])
def test_addresses_azure_storage_ip_rules_do_not_take_are_refused(entry, fragment):
    message = refused({"transfer": "direct"}, {"storageClientCidrs": [entry]})
    assert "mlflow:azure.storageClientCidrs" in message and fragment in message, message


def test_more_rules_than_an_account_holds_are_refused():
    many = [f"{20 + i // 250}.{i % 250}.0.0/16" for i in range(STORAGE_IP_RULES_MAX + 1)]
    assert "at most 400" in refused({"transfer": "direct"}, {"storageClientCidrs": many})
    assert "twice" in refused({"transfer": "direct"}, {"storageClientCidrs": CLIENTS + CLIENTS[:1]})
