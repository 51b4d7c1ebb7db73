"""Each cloud stack through the life the README gives it, in one fake account that remembers every
name the cloud keeps (tests/harness/lifecycle.py): first deploy -> MLflow version bump -> back to the
database as it was before the bump -> bump again -> destroy and re-create the stack. Every step is
a whole program run; a step fails as `pulumi up` would when the cloud refuses a duplicate name or
the engine a protected deletion. The first tests check the simulator's own rules on small programs."""

import json
from typing import Callable

import pulumi
import pulumi_aws as aws
import pulumi_random as random
import pytest

from tests.harness.program import stack_file_config
from tests.harness.lifecycle import FLEXIBLE_SERVER, Account, CloudRefused, EngineRefused, Stack

BEFORE, AFTER = "3.17.2", "3.18.0"


# --- the simulator's rules, on small programs ------------------------------------------------------

def _database(keepers: dict, protect: bool = False, deletion_protection: bool = False,
              restore: str = "") -> Callable:
    """A program: an RDS instance whose final snapshot is named after a RandomId with `keepers`."""
    def program():
        suffix = random.RandomId("final", byte_length=4, keepers=keepers)
        aws.rds.Instance("db", identifier_prefix="db-", engine="postgres", instance_class="db.t4g.micro",
                         skip_final_snapshot=False, deletion_protection=deletion_protection,
                         snapshot_identifier=restore or None,
                         final_snapshot_identifier=suffix.hex.apply(lambda h: f"db-final-{h}"),
                         opts=pulumi.ResourceOptions(protect=protect))
    return program


def test_a_random_value_stays_until_its_keepers_change_and_is_new_when_re_created():
    account = Account()
    stack = Stack("lab", account)

    def suffix(run) -> str:
        return run.one("random:index/randomId:RandomId").state["hex"]

    first = suffix(stack.up({}, "one", _database({"a": "1"})))
    assert suffix(stack.up({}, "two", _database({"a": "1"}))) == first
    second = suffix(stack.up({}, "three", _database({"a": "2"})))
    assert second != first and not account.made_in("three", "rds-snapshot"), "new keepers: a new value, no replacement"
    stack.destroy("gone")
    assert account.made_in("gone", "rds-snapshot") == [f"db-final-{second}"]
    assert suffix(Stack("lab", account).up({}, "again", _database({"a": "2"}))) != second, "re-created: new"


def _snapshot(name: str, present: bool = True) -> Callable:
    """A program: a retained snapshot named `name`, whose name change the engine ignores."""
    def program():
        if present:
            aws.rds.Snapshot("before", db_instance_identifier="db", db_snapshot_identifier=name,
                             opts=pulumi.ResourceOptions(retain_on_delete=True,
                                                         ignore_changes=["dbSnapshotIdentifier"]))
    return program


def test_a_retained_snapshot_keeps_its_name_after_the_stack_lets_go():
    account = Account()
    stack = Stack("lab", account)
    stack.up({}, "one", _snapshot("s-1"))
    stack.up({}, "ignored", _snapshot("s-2"))
    assert not account.holds("rds-snapshot", "s-2"), "ignore_changes keeps the old name: nothing new is taken"
    stack.up({}, "dropped", _snapshot("s-1", present=False))
    assert account.holds("rds-snapshot", "s-1")
    with pytest.raises(CloudRefused, match="DBSnapshotAlreadyExists: rds-snapshot 's-1'"):
        stack.up({}, "again", _snapshot("s-1"))


def test_the_account_refuses_a_final_snapshot_name_it_already_holds():
    """Two deletions under one RandomId value: the second DeleteDBInstance answers DBSnapshotAlreadyExists."""
    account = Account()
    stack = Stack("lab", account)
    stack.up({}, "one", _database({"a": "1"}))
    hex_ = stack.outputs_of("random:index/randomId:RandomId")[0]["hex"]
    account.create("rds-snapshot", "kept", None, "DBSnapshotAlreadyExists")
    stack.up({}, "restore", _database({"a": "1"}, restore="kept"))  # replaced: the final snapshot of the first
    assert account.holds("rds-snapshot", f"db-final-{hex_}")
    with pytest.raises(CloudRefused, match="DBSnapshotAlreadyExists: rds-snapshot 'db-final-"):
        stack.destroy("gone")


def test_a_restore_needs_its_snapshot_and_protection_blocks_deletion():
    account = Account()
    stack = Stack("lab", account)
    with pytest.raises(CloudRefused, match="DBSnapshotNotFound"):
        stack.up({}, "restore", _database({}, restore="missing"))
    stack = Stack("lab", Account())
    stack.up({}, "one", _database({}, protect=True))
    with pytest.raises(EngineRefused, match="protected"):
        stack.destroy("gone")
    with pytest.raises(EngineRefused, match="unable to replace"):
        stack.up({}, "replace", _database({}, protect=True, restore="kept"))
    stack.up({}, "cloud-protected", _database({}, deletion_protection=True))
    with pytest.raises(CloudRefused, match="Cannot delete protected DB Instance"):
        stack.destroy("gone")


# --- the stacks' lives -------------------------------------------------------------------------------

def _with(config: dict, version: str, section: str = "", **values) -> dict:
    """`config` with mlflow:mlflowVersion set and some keys of mlflow:<section> replaced."""
    changed = {**config, "mlflow:mlflowVersion": version}
    if section:
        key = f"mlflow:{section}"
        changed[key] = json.dumps({**json.loads(config.get(key, "{}")), **values})
    return changed


def _only(names: list[str], what: str) -> str:
    assert len(names) == 1, f"expected one {what}, found {names}"
    return names[0]


def _aws_to_the_second_bump(account: Account) -> tuple[Stack, dict]:
    """aws up to "bump again", as README "Going back to the previous MLflow version" has it: the
    snapshot the bump took is restored with protection off (deletion protection first, in an update of
    its own: RDS refuses to delete a protected instance, and a replacement deletes the old one with
    its old settings), protection back on afterwards."""
    stack, config = Stack("aws", account), stack_file_config("aws")
    stack.up(config, "deploy")
    stack.up(_with(config, AFTER), "bump")
    snapshot = _only(account.made_in("bump", "rds-snapshot"), "snapshot taken before the bump")
    unprotected = _with(config, AFTER, "aws", deletionProtection=False, protectResources=False)
    stack.up(unprotected, "unprotect for the restore")
    restored = _with(unprotected, BEFORE, "aws", dbRestoreSnapshot=snapshot)
    stack.up(restored, "restore")
    protected = _with(restored, AFTER, "aws", deletionProtection=True, protectResources=True)
    stack.up(protected, "bump again")
    return stack, protected


def test_aws_deploy_bump_go_back_bump_destroy_and_recreate():
    account = Account()
    stack, config = _aws_to_the_second_bump(account)
    stack.up(_with(config, AFTER, "aws", deletionProtection=False, protectResources=False), "unprotect for teardown")
    stack.destroy("destroy")
    assert account.made_in("destroy", "rds-snapshot"), "the database's final snapshot is kept"
    Stack("aws", account).up(stack_file_config("aws"), "re-create")


def test_aws_go_back_twice():
    """The documented go-back path taken a second time replaces the database again."""
    account = Account()
    stack, config = _aws_to_the_second_bump(account)
    snapshot = _only(account.made_in("bump again", "rds-snapshot"), "snapshot taken before the second bump")
    unprotected = _with(config, AFTER, "aws", deletionProtection=False, protectResources=False)
    stack.up(unprotected, "unprotect for the second restore")
    stack.up(_with(unprotected, BEFORE, "aws", dbRestoreSnapshot=snapshot), "second restore")


@pytest.mark.parametrize("sku, backups", [("Standard_B2s", False), ("Standard_D2ds_v5", True)])
def test_azure_deploy_bump_go_back_bump_destroy_and_recreate(sku, backups):
    """azure, README "The azure stack": above the Burstable tier the bump takes an on-demand backup of the
    flexible server first (issue 23, azure 6; Burstable has none: review 2, 1); either way the server app
    records the version and the time its rollout started. Going back restores the server to a point in
    time before the bump with `az postgres flexible-server restore --name <server>-pitr` (a new server, a
    global name), copies the database back and sets the version back."""
    account = Account()
    stack, config = Stack("azure", account), _with(stack_file_config("azure"), BEFORE, "azure", dbSku=sku)
    stack.up(config, "deploy")
    stack.up(_with(config, AFTER), "bump")
    assert bool(account.made_in("bump", "flexible-server-backup")) == backups
    [app] = [o for o in stack.outputs_of("azure-native:app:ContainerApp") if o["containerAppName"] == "mlflow-server"]
    assert app["tags"]["mlflow-deployed-version"] == AFTER and app["tags"]["mlflow-rollout-started"]
    server = _only([o["serverName"] for o in stack.outputs_of(FLEXIBLE_SERVER)], "flexible server")
    account.create("flexible-server", f"{server}-pitr", None, "ServerNameAlreadyExists")
    stack.up(_with(config, BEFORE), "restore")
    stack.up(_with(config, AFTER), "bump again")
    stack.up(_with(config, AFTER, "azure", protectResources=False), "unprotect for teardown")
    stack.destroy("destroy")
    Stack("azure", account).up(stack_file_config("azure"), "re-create")