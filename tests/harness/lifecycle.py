"""A stateful fake cloud account for the unit harness: successive `pulumi up`s and `pulumi destroy`s
of one program against names that outlive them.

The harness answers every run from scratch, so a graph that deploys once can still fail its second
`up`, its go-back or its re-creation in the same account: a snapshot kept after its stack (retained,
or taken by RDS as an instance's final snapshot) holds its name, and the cloud refuses a second one.
`Account` remembers the physical names the clouds keep unique (and who, if anyone, still manages
each); `Stack` is the engine's side: it keeps each resource's inputs and outputs between runs,
decides create / update / replace / delete as the engine does, and applies each step to the account.

What decides a physical name between runs (emulated in `_StackMocks`):
- a resource whose URN is known and whose replacing inputs are unchanged keeps its outputs (a
  Random*'s value, a bucket's or instance's generated name); `ignore_changes` keeps the old input;
- a new URN, or a change to an input the provider cannot update in place (`Naming.replace_on`, the
  provider's ForceNew; any input of a random:* resource, keepers included), makes new values;
- a replacement creates the new resource before deleting the old one unless `deleteBeforeReplace`
  (https://www.pulumi.com/docs/iac/concepts/options/deletebeforereplace/), so a fixed name collides.
Engine rules (https://www.pulumi.com/docs/iac/concepts/options/protect/, pulumi/pulumi#8873): a
protected resource is never deleted; it may be replaced only if its old or new `protect` is off.
`retain_on_delete` (https://www.pulumi.com/docs/iac/concepts/options/retainondelete/) leaves the
cloud object in place with no owner.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import pulumi

from components.platforms.azure.platform import ON_DEMAND_BACKUP_SCRIPT
from tests.harness.program import ProgramMocks, ProgramRun, run_program, run_under_mocks, unwrap

RDS_INSTANCE, RDS_SNAPSHOT = "aws:rds/instance:Instance", "aws:rds/snapshot:Snapshot"
ECR_REPOSITORY, SECRET = "aws:ecr/repository:Repository", "aws:secretsmanager/secret:Secret"
SSM_PARAMETER = "aws:ssm/parameter:Parameter"
FLEXIBLE_SERVER = "azure-native:dbforpostgresql:Server"
CONTAINER_APP, GET_CONTAINER_APP = "azure-native:app:ContainerApp", "azure-native:app:getContainerApp"
BACKUP_TYPES = ("azure-native:dbforpostgresql:Backup", "azure-native:dbforpostgresql:BackupsAutomaticAndOnDemand")
"""Backup resources a program might keep (the azure stack takes its own with ON_DEMAND_BACKUP_SCRIPT instead)."""


class CloudRefused(Exception):
    """The cloud's API answered an error (its code first, as the provider would report it)."""


class EngineRefused(Exception):
    """The Pulumi engine refused the step before calling the provider."""


@dataclass(frozen=True)
class Naming:
    """How the cloud names one resource type: the name it keeps unique, the error it answers for a
    name already taken, and the inputs whose change replaces the resource."""

    kind: str
    duplicate: str
    name: Callable[[dict], Optional[str]]
    replace_on: tuple[str, ...]
    source: str


def _key(*keys: str) -> Callable[[dict], Optional[str]]:
    return lambda state: "/".join(str(state[k]) for k in keys) if all(state.get(k) for k in keys) else None


NAMING: dict[str, Naming] = {naming_type: naming for naming_type, naming in [
    (RDS_SNAPSHOT, Naming("rds-snapshot", "DBSnapshotAlreadyExists", _key("dbSnapshotIdentifier"),
                          ("dbSnapshotIdentifier", "dbInstanceIdentifier"),
                          "https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_CreateDBSnapshot.html")),
    (RDS_INSTANCE, Naming("rds-instance", "DBInstanceAlreadyExists", _key("identifier"),
                          ("identifier", "identifierPrefix", "snapshotIdentifier", "engine", "dbName", "username",
                           "storageEncrypted", "kmsKeyId", "availabilityZone", "characterSetName"),
                          "https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_CreateDBInstance.html")),
    ("aws:s3/bucket:Bucket", Naming("s3-bucket", "BucketAlreadyExists", _key("bucket"), ("bucket", "bucketPrefix"),
                                    "https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html")),
    (SSM_PARAMETER, Naming("ssm-parameter", "ParameterAlreadyExists", _key("name"), ("name",),
                           "https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_PutParameter.html")),
    (ECR_REPOSITORY, Naming("ecr-repository", "RepositoryAlreadyExistsException", _key("name"), ("name",),
                            "https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_CreateRepository.html")),
    (SECRET, Naming("secret", "ResourceExistsException", _key("name"), ("name", "namePrefix"),
                    "https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_DeleteSecret.html")),
    ("aws:cloudwatch/logGroup:LogGroup", Naming(
        "log-group", "ResourceAlreadyExistsException", _key("name"), ("name", "namePrefix"),
        "https://docs.aws.amazon.com/AmazonCloudWatchLogs/latest/APIReference/API_CreateLogGroup.html")),
    ("aws:iam/role:Role", Naming("iam-role", "EntityAlreadyExists", _key("name"), ("name", "namePrefix"),
                                 "https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateRole.html")),
    ("azure-native:resources:ResourceGroup", Naming(
        "resource-group", "ResourceGroupExists", _key("resourceGroupName"), ("resourceGroupName",),
        "https://learn.microsoft.com/en-us/azure/azure-resource-manager/management/manage-resource-groups-portal")),
    ("azure-native:storage:StorageAccount", Naming(
        "storage-account", "StorageAccountAlreadyTaken", _key("accountName"), ("accountName",),
        "https://learn.microsoft.com/en-us/azure/storage/common/storage-account-overview#storage-account-name")),
    ("azure-native:containerregistry:Registry", Naming(
        "container-registry", "AlreadyInUse", _key("registryName"), ("registryName",),
        "https://learn.microsoft.com/en-us/azure/azure-resource-manager/management/resource-name-rules")),
    (FLEXIBLE_SERVER, Naming(
        "flexible-server", "ServerNameAlreadyExists", _key("serverName"), ("serverName",),
        "https://learn.microsoft.com/en-us/azure/azure-resource-manager/management/resource-name-rules")),
    ("azure-native:keyvault:Vault", Naming(
        "key-vault", "VaultAlreadyExists", _key("vaultName"), ("vaultName",),
        "https://learn.microsoft.com/en-us/azure/key-vault/general/soft-delete-overview")),
    *[(backup_type, Naming(
        "flexible-server-backup", "BackupAlreadyExists", _key("serverName", "backupName"),
        ("serverName", "backupName"), "https://learn.microsoft.com/en-us/cli/azure/postgres/flexible-server/backup"))
      for backup_type in BACKUP_TYPES],
]}

GENERATED_NAMES = {
    # type: (the prefix input, the output holding the generated name, outputs derived from it)
    "aws:s3/bucket:Bucket": ("bucketPrefix", "bucket", ("id", "arn")),
    RDS_INSTANCE: ("identifierPrefix", "identifier", ("arn",)),
    SECRET: ("namePrefix", "name", ("arn",)),
}
"""Names the cloud makes unique from a prefix: a new resource gets a new one, an updated one keeps its own."""


@dataclass
class CloudObject:
    kind: str
    name: str
    owner: Optional[str]
    """The URN of the stack resource that manages it; None once nothing does (retained, final snapshot)."""
    made_in: str
    """The step (scenario label) that made it."""


@dataclass
class Account:
    """One cloud account (or subscription): every physical name it holds, whoever made it."""

    objects: dict[tuple[str, str], CloudObject] = field(default_factory=dict)
    parameters: dict[str, str] = field(default_factory=dict)
    """SSM parameter values, as the program's look-ups read them at the start of a run."""
    step: str = ""
    serial: int = 0

    def fresh(self) -> str:
        """A value the cloud (or a Random* provider) has not handed out before in this account."""
        self.serial += 1
        return f"{self.serial:08x}"

    def create(self, kind: str, name: str, owner: Optional[str], duplicate: str) -> None:
        if (kind, name) in self.objects:
            held = self.objects[(kind, name)]
            raise CloudRefused(f"{duplicate}: {kind} {name!r} already exists (made in step {held.made_in!r}, "
                               f"{'managed by ' + held.owner if held.owner else 'kept after its stack let go'})")
        self.objects[(kind, name)] = CloudObject(kind, name, owner, self.step)

    def release(self, kind: str, name: str) -> None:
        """The stack lets go; the object stays and keeps its name."""
        self.objects[(kind, name)].owner = None

    def remove(self, kind: str, name: str, prefix: bool = False) -> None:
        for key in [key for key in self.objects if key[0] == kind and (key[1] == name or
                                                                        prefix and key[1].startswith(name))]:
            del self.objects[key]

    def holds(self, kind: str, name: str) -> bool:
        return (kind, name) in self.objects

    def made_in(self, step: str, kind: str) -> list[str]:
        return [o.name for o in self.objects.values() if o.kind == kind and o.made_in == step]


@dataclass
class Entry:
    """One resource in the stack's state: what the engine keeps between runs."""

    type: str
    urn: str
    inputs: dict
    """The inputs as the provider last received them (ignore_changes applied)."""
    outputs: dict
    protect: bool
    retain_on_delete: bool


@dataclass(frozen=True)
class Plan:
    action: str  # "create", "update" or "replace"
    delete_before_replace: bool = False


def _replaces(kind: str, old: dict, new: dict) -> bool:
    """Whether the provider must replace rather than update: random:* resources on any input change
    (https://www.pulumi.com/registry/packages/random/api-docs/randomid/: keepers), others on their ForceNew inputs."""
    if kind.startswith("random:"):
        return old != new
    naming = NAMING.get(kind)
    return bool(naming) and any(old.get(key) != new.get(key) for key in naming.replace_on)


class _StackMocks(ProgramMocks):
    """The harness's mocks answering from the stack's state: kept values for kept resources, new ones otherwise."""

    def __init__(self, state: dict[str, Entry], account: Account) -> None:
        super().__init__(account.parameters)
        self.state, self.account = state, account
        self.plans: dict[str, Plan] = {}
        self.inputs: dict[str, dict] = {}
        self._current: tuple[str, list[str], bool] = ("", [], False)

    def before_new_resource(self, urn: str, request) -> None:
        self._current = (urn, list(request.ignoreChanges), bool(request.deleteBeforeReplace))

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        urn, ignored, delete_first = self._current
        old = self.state.get(urn) if urn in self.state and self.state[urn].type == args.typ else None
        inputs = dict(args.inputs)
        for key in ignored if old else ():
            if key in old.inputs:
                inputs[key] = old.inputs[key]
        self.inputs[urn] = inputs
        args = pulumi.runtime.MockResourceArgs(typ=args.typ, name=args.name, inputs=inputs, provider=args.provider,
                                               resource_id=args.resource_id, custom=args.custom)
        if old is None or _replaces(args.typ, old.inputs, inputs):
            self.plans[urn] = Plan("replace" if old else "create", delete_first)
            self.seed_salt = "#" + self.account.fresh()
            resource_id, outputs = super().new_resource(args)
            self._generate_name(args.typ, inputs, outputs)
            return resource_id, outputs
        self.plans[urn] = Plan("update")
        self.seed_salt = ""
        resource_id, outputs = super().new_resource(args)
        self._keep(args.typ, old, inputs, outputs)
        return resource_id, outputs

    def call(self, args: pulumi.runtime.MockCallArgs):
        """Look-ups that read the account: a container app as the stack last wrote it, or Azure's "not found"."""
        if args.token == GET_CONTAINER_APP:
            for entry in self.state.values():
                if entry.type == CONTAINER_APP \
                        and entry.outputs.get("containerAppName") == args.args["containerAppName"] \
                        and entry.outputs.get("resourceGroupName") == args.args["resourceGroupName"]:
                    return entry.outputs
            return {}, [("", f"ResourceNotFound: the container app {args.args['containerAppName']!r} was not found")]
        return super().call(args)

    def _generate_name(self, kind: str, inputs: dict, outputs: dict) -> None:
        prefix_key, name_key, derived = GENERATED_NAMES.get(kind, ("", "", ()))
        if prefix_key in inputs and not inputs.get(name_key):
            stale, outputs[name_key] = outputs.get(name_key), f"{inputs[prefix_key]}{self.account.fresh()}"
            for key in derived:  # the harness's fixed name inside an id or ARN, made the new one
                if stale and isinstance(outputs.get(key), str):
                    outputs[key] = outputs[key].replace(stale, outputs[name_key])

    def _keep(self, kind: str, old: Entry, inputs: dict, outputs: dict) -> None:
        """An update keeps what the provider generated at creation: a Random*'s value, a generated name."""
        if kind.startswith("random:"):
            kept = [key for key in old.outputs if key not in inputs]
        else:
            _, name_key, derived = GENERATED_NAMES.get(kind, ("", "", ()))
            kept = [key for key in (name_key, *derived) if key and key in old.outputs]
        for key in kept:
            if outputs.get(key) in self.generated_secrets:
                self.generated_secrets[self.generated_secrets.index(outputs[key])] = old.outputs[key]
            outputs[key] = old.outputs[key]


class Stack:
    """One Pulumi stack of the program, deployed into `account`: `up` and `destroy` as the engine runs them."""

    def __init__(self, name: str, account: Account) -> None:
        self.name, self.account = name, account
        self.state: dict[str, Entry] = {}

    def up(self, config: dict[str, Any], step: str, program: Optional[Callable[[], Any]] = None) -> ProgramRun:
        """One `pulumi up` with `config` (full keys); `program` instead of __main__.py for small tests.
        Raises CloudRefused or EngineRefused at the first step the cloud or the engine refuses."""
        self.account.step = step
        mocks = _StackMocks(self.state, self.account)
        run = (run_under_mocks(program, config, stack=self.name, mocks=mocks) if program
               else run_program(config, stack=self.name, mocks=mocks))
        new: dict[str, Entry] = {}
        replaced: list[Entry] = []
        for resource in run.resources:  # registration order: what a resource needs is made before it
            if not resource.custom or resource.urn not in mocks.plans:
                continue
            entry = Entry(resource.type, resource.urn, mocks.inputs[resource.urn], unwrap(resource.state),
                          resource.protect, resource.retain_on_delete)
            new[resource.urn] = entry
            plan, old = mocks.plans[resource.urn], self.state.get(resource.urn)
            if plan.action == "replace":
                if old.protect and entry.protect:
                    raise EngineRefused(f"unable to replace resource {resource.urn} as it is currently marked for "
                                        "protection")
                if plan.delete_before_replace:
                    self._delete(old)
                else:
                    replaced.append(old)
            if plan.action != "update":
                self._create(entry)
        for old in replaced:
            self._delete(old)
        for urn in reversed(list(self.state)):
            if urn not in new:
                self._remove(self.state[urn])
        self.state = new
        for entry in new.values():
            if entry.type == SSM_PARAMETER:
                self.account.parameters[entry.outputs["name"]] = entry.outputs["value"]
        return run

    def destroy(self, step: str) -> None:
        """`pulumi destroy`: every resource in reverse order; protected ones refuse."""
        self.account.step = step
        for urn in reversed(list(self.state)):
            self._remove(self.state[urn])
            del self.state[urn]  # only once deleted: a refused deletion leaves the resource in the state

    def outputs_of(self, type_token: str) -> list[dict]:
        return [entry.outputs for entry in self.state.values() if entry.type == type_token]

    def _create(self, entry: Entry) -> None:
        restore = entry.inputs.get("snapshotIdentifier") if entry.type == RDS_INSTANCE else None
        if restore and not self.account.holds("rds-snapshot", restore):
            raise CloudRefused(f"DBSnapshotNotFound: {restore!r} (restoring {entry.urn})")
        if entry.type == "command:local:Command" and entry.inputs.get("create") == ON_DEMAND_BACKUP_SCRIPT:
            # The azure stack takes its on-demand backups with the Azure CLI: the backup is the account's, no
            # resource's (nothing deletes it; Azure does, after the retention window).
            environment = entry.inputs["environment"]
            self.account.create("flexible-server-backup", f"{environment['SERVER']}/{environment['BACKUP_NAME']}",
                                None, "BackupAlreadyExists")
        naming = NAMING.get(entry.type)
        name = naming.name(entry.outputs) if naming else None
        if name:
            self.account.create(naming.kind, name, entry.urn, naming.duplicate)

    def _remove(self, entry: Entry) -> None:
        """A resource gone from the program, or destroyed: the engine never deletes a protected one."""
        if entry.protect:
            raise EngineRefused(f"resource {entry.urn} cannot be deleted because it is protected "
                                "(set protect false and `pulumi up` first)")
        self._delete(entry)

    def _delete(self, entry: Entry) -> None:
        """The provider's delete of one resource, with what the cloud does or refuses on the way."""
        naming = NAMING.get(entry.type)
        name = naming.name(entry.outputs) if naming else None
        if entry.retain_on_delete or not name:
            if name:
                self.account.release(naming.kind, name)
            return
        state = entry.outputs
        if entry.type == RDS_INSTANCE:
            # https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_DeleteDBInstance.html: refused
            # under deletion protection; else a final snapshot first, whose name must be new.
            if state.get("deletionProtection"):
                raise CloudRefused(f"InvalidParameterCombination: Cannot delete protected DB Instance {name!r}, "
                                   "please disable deletion protection and try again")
            if not state.get("skipFinalSnapshot"):
                self.account.create("rds-snapshot", state["finalSnapshotIdentifier"], None, "DBSnapshotAlreadyExists")
        if entry.type == ECR_REPOSITORY and not state.get("forceDelete"):
            # The stack pushed images into it: https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_DeleteRepository.html
            raise CloudRefused(f"RepositoryNotEmptyException: {name!r} holds images (forceDelete is off)")
        if entry.type == SECRET and state.get("recoveryWindowInDays", 30):
            self.account.release(naming.kind, name)  # the name stays taken for the recovery window
            return
        if entry.type == SSM_PARAMETER:
            self.account.parameters.pop(name, None)
        if entry.type == FLEXIBLE_SERVER:  # its on-demand backups go with it
            self.account.remove("flexible-server-backup", f"{name}/", prefix=True)
        self.account.remove(naming.kind, name)
