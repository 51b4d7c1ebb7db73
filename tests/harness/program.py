"""Run the Pulumi program under mocks and record the whole resource graph as the engine would see it.

Plain `pulumi.runtime.Mocks` loses what these tests are about: the mock monitor neither records
resource options (parent, protect, retain-on-delete, dependencies) nor marks
`additional_secret_outputs` as secret, so a secret assertion would pass or fail by accident. The
recording monitor here keeps every RegisterResource request raw (secrets still wrapped in Pulumi's
secret sentinel), applies `additional_secret_outputs` to the state it returns, and keeps the
outputs each resource and the stack register.

Provider behaviour is emulated only where the program reads a computed output: generated
passwords (URL-hostile on purpose, and real bcrypt hashes of them), image ids, PEMs. Every
generated secret is remembered so tests can search the graph for it in plain text. Generated
values are random but seeded by the resource's type and name, so two ways of building the same
graph (the program, and the package's construct path) can be compared value for value.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import runpy
import random
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import bcrypt
import pulumi
import yaml
from google.protobuf import json_format
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime.sync_await import _sync_await

REPO_ROOT = Path(__file__).resolve().parents[2]
ROOT_STACK_TYPE = "pulumi:pulumi:Stack"
SECRET_SIG = rpc._special_secret_sig
SIG_KEY = rpc._special_sig_key


def is_secret_wrapper(value: Any) -> bool:
    return isinstance(value, dict) and value.get(SIG_KEY) == SECRET_SIG


def unwrap(value: Any) -> Any:
    """Strip secret sentinels: the values as a provider would receive them."""
    if is_secret_wrapper(value):
        return unwrap(value.get("value"))
    if isinstance(value, dict):
        return {key: unwrap(item) for key, item in value.items()}
    if isinstance(value, list):
        return [unwrap(item) for item in value]
    return value


def plain_strings(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every string reachable WITHOUT passing through a secret sentinel, with its path."""
    if is_secret_wrapper(value):
        return
    if isinstance(value, dict):
        for key, item in value.items():
            yield from plain_strings(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from plain_strings(item, f"{path}[{index}]")
    elif isinstance(value, str):
        yield path, value


MOCK_CLOCK = "2026-05-06T07:08:09Z"
"""What a `date -u ...` command prints under the mocks."""


@dataclass
class Recorded:
    """One registered resource: what the engine would store and pass to the provider."""

    type: str
    name: str
    urn: str
    parent: str
    custom: bool
    raw_inputs: dict
    protect: bool
    retain_on_delete: bool
    ignore_changes: list[str]
    dependencies: list[str]
    additional_secret_outputs: list[str]
    provider: str
    deleted_with: str = ""
    """The URN of the resource whose deletion deletes this one (Pulumi then skips its own delete)."""
    delete_before_replace: bool = False
    """Replaced by deleting it first, then creating the new one (Pulumi's default is the other way round)."""
    aliases: list[dict] = field(default_factory=list)
    """The alias specs (or URNs) the program sent, as the engine receives them."""
    outputs: dict = field(default_factory=dict)
    """Raw outputs the program registered (components and the stack), secrets still wrapped."""
    state: dict = field(default_factory=dict)
    """What the (mock) provider answered for a custom resource: its inputs and computed outputs."""

    @property
    def inputs(self) -> dict:
        return unwrap(self.raw_inputs)

    def input_is_secret(self, key: str) -> bool:
        return is_secret_wrapper(self.raw_inputs.get(key))


def _password(rng: random.Random, length: int, specials: str) -> str:
    """A generated password that contains URL-reserved characters, as RandomPassword may."""
    alphabet = string.ascii_letters + string.digits + specials
    body = "".join(rng.choice(alphabet) for _ in range(max(length - 6, 4)))
    return ("Aa1" + (specials[:3] if specials else "xyz") + body)[:max(length, 8)]


def bcrypt_base64(raw: bytes) -> bytes:
    """bcrypt's own base64 alphabet (./A-Za-z0-9), 22 characters of salt."""
    standard = base64.b64encode(raw).decode().rstrip("=")
    table = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/",
                          "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
    return standard.translate(table)[:22].encode()


class ProgramMocks(pulumi.runtime.Mocks):
    """Computed outputs for the providers the program uses; remembers every generated secret."""

    def __init__(self, parameters: Optional[dict[str, str]] = None) -> None:
        self.generated_secrets: list[str] = []
        self.parameters = dict(parameters or {})
        """SSM parameters the account already holds (name -> value), as a stack's earlier run left them."""
        self.seed_salt = ""
        """Mixed into every generated value's seed: a subclass sets it to make a re-created resource's values new."""
        self.aws_region = "eu-west-1"
        """The region of the program's AWS provider (what its look-ups answer for)."""

    def before_new_resource(self, urn: str, request) -> None:
        """Hook: called with the URN and the raw RegisterResource request (options included) just
        before `new_resource` answers for it (tests/harness/lifecycle.py keeps state between runs)."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        outputs = dict(args.inputs)
        kind = args.typ
        rng = random.Random(f"{kind}::{args.name}{self.seed_salt}")
        if kind == "random:index/randomPassword:RandomPassword":
            specials = (args.inputs.get("overrideSpecial", "!@#$%&*()-_=+[]{}<>:?")
                        if args.inputs.get("special", True) else "")
            value = _password(rng, int(args.inputs.get("length", 16)), specials)
            outputs["result"] = value
            salt = b"$2a$04$" + bcrypt_base64(rng.randbytes(16))
            outputs["bcryptHash"] = bcrypt.hashpw(value.encode(), salt).decode()
            self.generated_secrets.append(value)
        elif kind == "random:index/randomString:RandomString":
            length = int(args.inputs.get("length", 16))
            outputs["result"] = rng.randbytes(length // 2 + 1).hex()[:length]
            self.generated_secrets.append(outputs["result"])
        elif kind == "random:index/randomId:RandomId":
            raw = rng.randbytes(int(args.inputs["byteLength"]))
            outputs.update(hex=raw.hex(), b64Std=base64.b64encode(raw).decode(), dec=str(int.from_bytes(raw, "big")))
        elif kind == "random:index/randomBytes:RandomBytes":
            raw = rng.randbytes(int(args.inputs["length"]))
            outputs["base64"], outputs["hex"] = base64.b64encode(raw).decode(), raw.hex()
        elif kind == "tls:index/privateKey:PrivateKey":
            body = rng.randbytes(48).hex()
            outputs["privateKeyPem"] = f"-----BEGIN EC PRIVATE KEY-----\n{body}\n-----END EC PRIVATE KEY-----\n"
            outputs["publicKeyPem"] = "-----BEGIN PUBLIC KEY-----\nPUB\n-----END PUBLIC KEY-----\n"
            self.generated_secrets.append(body)
        elif kind == "tls:index/selfSignedCert:SelfSignedCert":
            outputs["certPem"] = "-----BEGIN CERTIFICATE-----\nCERT\n-----END CERTIFICATE-----\n"
        elif kind == "docker:index/remoteImage:RemoteImage":
            outputs["imageId"] = "sha256:" + hashlib.sha256(args.inputs["name"].encode()).hexdigest()
            outputs["repoDigest"] = (args.inputs["name"] + "@sha256:"
                                     + hashlib.sha256(b"d" + args.inputs["name"].encode()).hexdigest())
        elif kind == "docker:index/image:Image":
            outputs["repoDigest"] = args.inputs["imageName"] + "@sha256:" + "0" * 64
        elif kind == "minio:index/s3Bucket:S3Bucket":
            outputs.setdefault("arn", f"arn:aws:s3:::{args.inputs.get('bucket')}")
        elif kind == "pulumi:providers:aws":
            self.aws_region = str(args.inputs.get("region") or self.aws_region)
        elif kind.startswith("aws:"):
            outputs.update(self._aws(kind, args))
        elif kind.startswith("azure-native:"):
            resource_id, computed = self._azure(kind, args)
            outputs.update(computed)
            return resource_id, outputs
        elif kind == "command:local:Command" and any(
                login in str(args.inputs.get("create", "")) for login in ("--expose-token", "ecr get-login-password")):
            # `az acr login --expose-token` and `aws ecr get-login-password` print a registry token.
            outputs["stdout"] = base64.urlsafe_b64encode(rng.randbytes(48)).decode() + "\n"
            self.generated_secrets.append(outputs["stdout"].strip())
        elif kind == "command:local:Command" and str(args.inputs.get("create", "")).startswith("date -u "):
            outputs["stdout"] = MOCK_CLOCK + "\n"
        elif kind == "command:local:Command":
            outputs["stdout"] = ""
        return f"{args.name}-id", outputs

    AWS_ACCOUNT = "123456789012"
    AWS_IMPAIRED_ZONES: frozenset[str] = frozenset()
    """Zones in an event (impaired, information, unavailable) as the look-up happens: not `available`."""
    AWS_ZONE_LETTERS = {"ap-northeast-1": "acd", "us-west-1": "bc", "us-east-1": "abcdef"}
    """The zone letters an account has where they are not a, b, c (ap-northeast-1 has no `b` for most
    accounts; us-west-1 has two of a, b, c, which per account)."""

    def _aws(self, kind: str, args: pulumi.runtime.MockResourceArgs) -> dict:
        """Computed attributes AWS assigns, with the formats the real API uses."""
        region, account, name = "eu-west-1", self.AWS_ACCOUNT, args.name
        service = kind.split(":")[1].split("/")[0]
        computed: dict = {"arn": f"arn:aws:{service}:{region}:{account}:{name}"}
        if kind == "aws:s3/bucket:Bucket":
            bucket = args.inputs.get("bucket") or f"{args.inputs.get('bucketPrefix', name)}20261126abcdef"
            computed.update(bucket=bucket, arn=f"arn:aws:s3:::{bucket}", id=bucket)
        elif kind == "aws:rds/instance:Instance":
            address = f"{name}.abcdefghij.{region}.rds.amazonaws.com"
            identifier = args.inputs.get("identifier") or f"{args.inputs.get('identifierPrefix', '')}20261126abcd"
            computed.update(address=address, port=5432, endpoint=f"{address}:5432", identifier=identifier,
                            arn=f"arn:aws:rds:{region}:{account}:db:{identifier}")
            if args.inputs.get("manageMasterUserPassword"):
                secret = f"arn:aws:secretsmanager:{region}:{account}:secret:rds!db-0123abcd-4567-89ef-AbCdEf"
                computed["masterUserSecrets"] = [{"secretArn": secret, "secretStatus": "active",
                                                  "kmsKeyId": f"arn:aws:kms:{region}:{account}:key/aws-secretsmanager"}]
        elif kind == "aws:lb/loadBalancer:LoadBalancer":
            computed.update(dnsName=f"MLflow-{name}-1234567890.{region}.elb.amazonaws.com", zoneId="Z32O12XQLNTSW2",
                            arnSuffix=f"app/{name[:24]}/0123456789abcdef")
        elif kind == "aws:lb/targetGroup:TargetGroup":
            computed.update(arnSuffix=f"targetgroup/{name[:24]}/0123456789abcdef")
        elif kind == "aws:ecr/repository:Repository":
            computed.update(repositoryUrl=f"{account}.dkr.ecr.{region}.amazonaws.com/{args.inputs.get('name')}",
                            registryId=account,
                            arn=f"arn:aws:ecr:{region}:{account}:repository/{args.inputs.get('name')}")
        elif kind == "aws:cloudwatch/logGroup:LogGroup":
            computed.update(arn=f"arn:aws:logs:{region}:{account}:log-group:{args.inputs.get('name')}")
        elif kind == "aws:secretsmanager/secret:Secret":
            computed.update(arn=f"arn:aws:secretsmanager:{region}:{account}:secret:{name}-AbCdEf")
        elif kind == "aws:acm/certificate:Certificate":
            computed.update(domainValidationOptions=[{
                "domainName": args.inputs.get("domainName"),
                "resourceRecordName": "_x." + args.inputs.get("domainName"),
                "resourceRecordType": "CNAME", "resourceRecordValue": "_y.acm-validations.aws."}])
        elif kind == "aws:acm/certificateValidation:CertificateValidation":
            computed.update(certificateArn=args.inputs.get("certificateArn"))
        elif kind == "aws:route53/record:Record":
            computed.update(fqdn=args.inputs.get("name"))
        elif kind == "aws:ecs/taskDefinition:TaskDefinition":
            # arn:...:task-definition/<family>:<revision>: what grants and event patterns cut the family from.
            family = args.inputs.get("family") or name
            computed.update(arn=f"arn:aws:ecs:{region}:{account}:task-definition/{family}:1", revision=1,
                            arnWithoutRevision=f"arn:aws:ecs:{region}:{account}:task-definition/{family}")
        elif kind == "aws:sqs/queue:Queue":
            queue = args.inputs.get("name") or name
            computed.update(arn=f"arn:aws:sqs:{region}:{account}:{queue}", name=queue,
                            url=f"https://sqs.{region}.amazonaws.com/{account}/{queue}")
        elif kind == "aws:cloudwatch/eventRule:EventRule":
            computed.update(arn=f"arn:aws:events:{region}:{account}:rule/{args.inputs.get('name') or name}")
        return computed

    AZURE_SUBSCRIPTION = "00000000-1111-2222-3333-444444444444"
    AZURE_TENANT = "99999999-8888-7777-6666-555555555555"

    def _azure(self, kind: str, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        """ARM ids and the attributes Azure computes, in the formats the real API uses."""
        inputs, name = args.inputs, args.name
        rng = random.Random(f"{kind}::{name}")
        group = inputs.get("resourceGroupName", "mlflow-azure")
        provider_type = {
            "resources:ResourceGroup": None, "network:VirtualNetwork": "Microsoft.Network/virtualNetworks",
            "managedidentity:UserAssignedIdentity": "Microsoft.ManagedIdentity/userAssignedIdentities",
            "containerregistry:Registry": "Microsoft.ContainerRegistry/registries",
            "app:ManagedEnvironment": "Microsoft.App/managedEnvironments",
            "app:ContainerApp": "Microsoft.App/containerApps",
            "dbforpostgresql:Server": "Microsoft.DBforPostgreSQL/flexibleServers",
            "storage:StorageAccount": "Microsoft.Storage/storageAccounts",
            "operationalinsights:Workspace": "Microsoft.OperationalInsights/workspaces",
            "privatedns:PrivateZone": "Microsoft.Network/privateDnsZones",
        }
        short = kind.split(":", 1)[1]
        explicit = next((inputs[key] for key in ("resourceName", "registryName", "environmentName", "containerAppName",
                                                 "serverName", "accountName", "workspaceName", "privateZoneName",
                                                 "virtualNetworkName") if isinstance(inputs.get(key), str)), name)
        base = f"/subscriptions/{self.AZURE_SUBSCRIPTION}/resourceGroups/{group}"
        resource_id = (f"{base}/providers/{provider_type[short]}/{explicit}" if provider_type.get(short)
                       else f"{base}/x/{name}")
        computed: dict = {"name": explicit}
        identity = inputs.get("identity")
        if isinstance(identity, dict) and isinstance(identity.get("userAssignedIdentities"), list):
            # Given as a list of identity ids, answered as a map of them to their ids and principals.
            computed["identity"] = {**identity, "userAssignedIdentities": {
                identity_id: {"principalId": "p-" + identity_id[-8:], "clientId": "c-" + identity_id[-8:]}
                for identity_id in identity["userAssignedIdentities"]}}
        if short == "resources:ResourceGroup":
            resource_id, computed["name"] = f"/subscriptions/{self.AZURE_SUBSCRIPTION}/resourceGroups/{group}", group
        elif short == "network:Subnet":
            resource_id = (f"{base}/providers/Microsoft.Network/virtualNetworks/{inputs['virtualNetworkName']}"
                           f"/subnets/{inputs['subnetName']}")
        elif short == "managedidentity:UserAssignedIdentity":
            computed.update(principalId=str(__import__("uuid").UUID(int=rng.getrandbits(128))),
                            clientId=str(__import__("uuid").UUID(int=rng.getrandbits(128))), tenantId=self.AZURE_TENANT)
        elif short == "containerregistry:Registry":
            computed["loginServer"] = f"{explicit}.azurecr.io"
        elif short == "app:ManagedEnvironment":
            computed.update(defaultDomain=f"happy-river-0123abcd.{inputs.get('location', 'westeurope')}"
                                          ".azurecontainerapps.io",
                            staticIp="10.50.0.100",
                            customDomainConfiguration={"customDomainVerificationId": hashlib.sha256(
                                name.encode()).hexdigest().upper()})
        elif short == "dbforpostgresql:Server":
            computed["fullyQualifiedDomainName"] = (
                f"{explicit}.{inputs['network']['privateDnsZoneArmResourceId'].rsplit('/', 1)[-1]}")
        elif short == "storage:BlobContainer":
            resource_id = (f"{base}/providers/Microsoft.Storage/storageAccounts/{inputs['accountName']}/blobServices/"
                           f"default/containers/{inputs['containerName']}")
            computed["name"] = inputs["containerName"]
        elif short == "app:ManagedCertificate":
            resource_id = (f"{base}/providers/Microsoft.App/managedEnvironments/{inputs['environmentName']}"
                           f"/managedCertificates/{name}")
        return resource_id, computed

    def call(self, args: pulumi.runtime.MockCallArgs):
        """Look-ups, answered as AWS would for an account with a default VPC of two subnets."""
        if args.token == "aws:ec2/getVpc:getVpc":
            return {"id": "vpc-0default", "cidrBlock": "172.31.0.0/16", "default": True}
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            # An account's zones in the region (opt-in-not-required): the letters vary by region and account.
            region = self.aws_region
            letters = self.AWS_ZONE_LETTERS.get(region, "abc")
            if args.args.get("state") == "available":  # a zone in an event is left out of `available`
                letters = "".join(letter for letter in letters if f"{region}{letter}" not in self.AWS_IMPAIRED_ZONES)
            return {"id": region, "names": [f"{region}{letter}" for letter in letters],
                    "zoneIds": [f"{region[:3]}{region[-1]}-az{index + 1}" for index in range(len(letters))]}
        if args.token == "aws:ec2/getSubnets:getSubnets":
            return {"id": "eu-west-1", "ids": ["subnet-0default1", "subnet-0default2"]}
        if args.token == "azure-native:authorization:getClientConfig":
            return {"clientId": "11111111-2222-3333-4444-555555555555",
                    "objectId": "66666666-7777-8888-9999-000000000000",
                    "subscriptionId": self.AZURE_SUBSCRIPTION, "tenantId": self.AZURE_TENANT}
        if args.token == "azure-native:app:getCustomDomainVerificationId":  # the subscription's, always set
            return {"value": hashlib.sha256(self.AZURE_SUBSCRIPTION.encode()).hexdigest().upper()}
        if args.token == "aws:route53/getZone:getZone":
            return {"id": "Z0123456789EXAMPLE", "zoneId": "Z0123456789EXAMPLE", "name": args.args.get("name")}
        if args.token == "aws:ssm/getParametersByPath:getParametersByPath":
            path = args.args["path"].rstrip("/") + "/"
            found = sorted((name, value) for name, value in self.parameters.items() if name.startswith(path))
            return {"id": path, "path": path, "names": [n for n, _ in found], "values": [v for _, v in found],
                    "types": ["String"] * len(found), "arns": [f"arn:aws:ssm:eu-west-1:{self.AWS_ACCOUNT}:parameter{n}"
                                                            for n, _ in found]}
        if args.token == "aws:ecr/getAuthorizationToken:getAuthorizationToken":
            token = base64.urlsafe_b64encode(random.Random(args.token).randbytes(32)).decode().rstrip("=")
            self.generated_secrets.append(token)
            return {"userName": "AWS", "password": token, "authorizationToken": token,
                    "proxyEndpoint": f"https://{self.AWS_ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com"}
        return {}


def engine_urn(stack: str, project: str, parent_type: str, type_: str, name: str) -> str:
    """The engine's `resource.NewURN`: the parent's whole qualified type chain goes before the type,
    except the root stack's type. (The SDK's mock monitor keeps only the parent's last type and the
    stack's, which would make URNs, and the aliases tested against them, differ from a real stack.)"""
    qualified = type_ if parent_type in ("", ROOT_STACK_TYPE) else f"{parent_type}${type_}"
    return f"urn:pulumi:{stack}::{project}::{qualified}::{name}"


def qualified_type(urn: str) -> str:
    return urn.split("::")[2]


def urn_name(urn: str) -> str:
    return urn.split("::", 3)[3]


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """The mock monitor, plus what the engine would know: options, raw inputs, secret outputs."""

    def make_urn(self, parent: str, type_: str, name: str) -> str:
        return engine_urn(pulumi.get_stack(), pulumi.get_project(), qualified_type(parent) if parent else "",
                          type_, name)

    def __init__(self, mocks: ProgramMocks, emulate_secret_outputs: bool = True) -> None:
        super().__init__(mocks)
        self.emulate_secret_outputs = emulate_secret_outputs
        self.recorded: dict[str, Recorded] = {}

    def RegisterResource(self, request):
        urn = self.make_urn(request.parent, request.type, request.name)
        if request.type == "pulumi:pulumi:Stack":
            from pulumi.runtime.proto import resource_pb2

            self.stack_urn = urn
            return resource_pb2.RegisterResourceResponse(urn=urn)
        raw_inputs = json_format.MessageToDict(request.object)
        response, state = self._register(request, urn)
        self.recorded[urn] = Recorded(
            type=request.type, name=request.name, urn=urn, parent=request.parent, custom=request.custom,
            raw_inputs=raw_inputs, protect=bool(request.protect),
            retain_on_delete=bool(request.retainOnDelete) if request.HasField("retainOnDelete") else False,
            ignore_changes=list(request.ignoreChanges), dependencies=list(request.dependencies),
            additional_secret_outputs=list(request.additionalSecretOutputs), provider=request.provider,
            deleted_with=request.deletedWith, delete_before_replace=bool(request.deleteBeforeReplace),
            aliases=[json_format.MessageToDict(alias) for alias in request.aliases], state=state,
        )
        return response

    def _register(self, request, urn):
        """MockMonitor.RegisterResource, with additional_secret_outputs wrapped as the engine does."""
        from pulumi.runtime.proto import resource_pb2

        pulumi_mocks._ensure_event_loop()
        inputs = rpc.deserialize_properties(request.object)
        args = pulumi.runtime.MockResourceArgs(
            typ=request.type, name=request.name, inputs=inputs, provider=request.provider,
            resource_id=request.importId, custom=request.custom or False,
        )
        self.mocks.before_new_resource(urn, request)
        id_, state = self.mocks.new_resource(args)
        if request.type == "random:index/randomString:RandomString" and "result" not in request.additionalSecretOutputs:
            # A random string the program did not ask to keep secret is a name part (a suffix), not a secret.
            self.mocks.generated_secrets.remove(state["result"])
        secret_outputs = set(request.additionalSecretOutputs) if self.emulate_secret_outputs else set()
        marked = {key: ({SIG_KEY: SECRET_SIG, "value": value} if key in secret_outputs else value)
                  for key, value in state.items()}
        # Inputs that arrived secret stay secret in the state, as the engine keeps them.
        raw = json_format.MessageToDict(request.object)
        for key, value in raw.items():
            if is_secret_wrapper(value) and key in marked and not is_secret_wrapper(marked[key]):
                marked[key] = {SIG_KEY: SECRET_SIG, "value": marked[key]}
        obj_proto = pulumi_mocks._sync_await(rpc.serialize_properties(marked, {}))
        self.resources[urn] = pulumi_mocks.MockMonitor.ResourceRegistration(urn, id_, state)
        return resource_pb2.RegisterResourceResponse(urn=urn, id=id_, object=obj_proto), {"id": id_, **state}

    def RegisterResourceOutputs(self, request):
        outputs = json_format.MessageToDict(request.outputs)
        if request.urn in self.recorded:
            self.recorded[request.urn].outputs = outputs
        return super().RegisterResourceOutputs(request)


@dataclass
class ProgramRun:
    """The result of running a program under mocks."""

    resources: list[Recorded]
    stack_outputs: dict
    generated_secrets: list[str]
    result: Any = None

    def of_type(self, type_token: str) -> list[Recorded]:
        return [r for r in self.resources if r.type == type_token]

    def one(self, type_token: str, name: Optional[str] = None) -> Recorded:
        found = [r for r in self.of_type(type_token) if name is None or r.name == name]
        assert len(found) == 1, f"expected one {type_token} {name or ''}, found {[r.name for r in found]}"
        return found[0]

    def by_urn(self, urn: str) -> Recorded:
        return next(r for r in self.resources if r.urn == urn)

    def output(self, name: str) -> Any:
        return unwrap(self.stack_outputs[name])

    def output_is_secret(self, name: str) -> bool:
        return is_secret_wrapper(self.stack_outputs[name])


def stack_file_config(stack: str) -> dict[str, str]:
    """The `config:` block of Pulumi.<stack>.yaml as the engine hands it to the program: full
    keys, structured values as JSON text."""
    document = yaml.safe_load((REPO_ROOT / f"Pulumi.{stack}.yaml").read_text()) or {}
    return {key: value if isinstance(value, str) else json.dumps(value)
            for key, value in (document.get("config") or {}).items()}


async def _resolve(value: Any) -> Any:
    """A value as the engine would store it: Outputs resolved (deeply), secrets wrapped."""
    if isinstance(value, dict):
        return {key: await _resolve(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [await _resolve(item) for item in value]
    if isinstance(value, pulumi.Output):
        resolved = await _resolve(await value.future())
        return {SIG_KEY: SECRET_SIG, "value": resolved} if await value.is_secret() else resolved
    return value


def _resolve_exports(stack: Any) -> dict:
    """The stack's exports as the engine would store them: values, secrets wrapped."""
    return {name: _sync_await(_resolve(pulumi.Output.from_input(value)))
            for name, value in (stack.outputs if stack else {}).items()}


def run_program(config: dict[str, Any], stack: str = "local", program: Path = REPO_ROOT / "__main__.py",
                emulate_secret_outputs: bool = True, parameters: Optional[dict[str, str]] = None,
                secret_keys: Sequence[str] = (), mocks: Optional[ProgramMocks] = None) -> ProgramRun:
    """Run the program with `config` (full keys, e.g. "mlflow:server") under recording mocks.

    `emulate_secret_outputs=False` behaves like plain mocks: providers' secret outputs come back
    unmarked, so only what the program wraps itself stays secret. `parameters`: SSM parameters an
    earlier run left in the account. `secret_keys`: the config keys set with --secret, as the
    engine names them to the program. `mocks`: a ProgramMocks of the caller's (a stateful account)."""
    return run_under_mocks(lambda: runpy.run_path(str(program), run_name="__main__"), config, stack,
                           emulate_secret_outputs, parameters, secret_keys, mocks)


@contextlib.contextmanager
def offline_dns() -> Iterator[None]:
    """The azure platform asks public DNS whether a custom domain's records exist (a read at
    program time). Under the mocks nothing leaves this machine: every DNS query answers nothing
    (dnspython's resolver raises NXDOMAIN: the records a fresh domain lacks). A test that puts its own
    resolver in the platform's place is not affected."""
    import dns.resolver

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise dns.resolver.NXDOMAIN()

    original = dns.resolver.Resolver.resolve
    dns.resolver.Resolver.resolve = refuse
    try:
        yield
    finally:
        dns.resolver.Resolver.resolve = original


def run_under_mocks(body: Callable[[], Any], config: Optional[dict[str, Any]] = None, stack: str = "local",
                    emulate_secret_outputs: bool = True, parameters: Optional[dict[str, str]] = None,
                    secret_keys: Sequence[str] = (), mocks: Optional[ProgramMocks] = None) -> ProgramRun:
    """Run `body` as a Pulumi program of project `mlflow`, stack `stack`, under recording mocks;
    `body`'s return value is kept in `ProgramRun.result` (Outputs resolved, secrets wrapped)."""
    mocks = mocks or ProgramMocks(parameters)
    monitor = RecordingMonitor(mocks, emulate_secret_outputs)
    pulumi.runtime.settings.reset_options()
    pulumi.runtime.set_mocks(mocks, project="mlflow", stack=stack, preview=False, monitor=monitor)
    pulumi.runtime.set_all_config({key: value if isinstance(value, str) else json.dumps(value)
                                   for key, value in (config or {}).items()}, list(secret_keys))
    returned: list[Any] = []
    try:
        @pulumi.runtime.test
        def execute():
            returned.append(body())
            return pulumi.Output.from_input(True)

        with offline_dns():
            execute()
        stack_outputs = _resolve_exports(pulumi.runtime.get_root_resource())
        result = _sync_await(_resolve(returned[0]))
    finally:
        pulumi.runtime.set_all_config({}, [])
    return ProgramRun(resources=list(monitor.recorded.values()), stack_outputs=stack_outputs,
                      generated_secrets=list(mocks.generated_secrets), result=result)


def adopted_urns(run: ProgramRun, old_urns: set[str], stack: str, project: str = "mlflow") -> dict[str, str]:
    """Old URN -> the new resource that takes it over on the next `pulumi up`, decided as the engine's
    step generator does (pkg/resource/deploy/step_generator.go: generateAliases, collapseAliasToUrn,
    inheritedChildAlias): a resource answers to its own URN, to each alias it was given, and to its
    parent's matched old URN with its name re-prefixed; the first one found in the old state wins.
    An old URN claimed twice is an error, as it is for the engine."""
    matched: dict[str, str] = {}  # new URN -> the old URN it took over (the engine's sg.aliases)
    claimed: dict[str, str] = {}

    def collapse(resource: Recorded, alias: dict) -> str:
        if "urn" in alias:
            return alias["urn"]
        spec = alias.get("spec", {})
        name, type_ = spec.get("name") or resource.name, spec.get("type") or resource.type
        parent = spec.get("parentUrn") or ""
        if not parent:
            parent = resource.parent
        elif parent in matched:
            parent = matched[parent]
        if spec.get("noParent") or (parent and qualified_type(parent) == ROOT_STACK_TYPE):
            parent = ""
        return engine_urn(stack, project, qualified_type(parent) if parent else "", type_, name)

    def inherited(child_type: str, child_name: str, parent_name: str, parent_alias: str) -> str:
        name = (urn_name(parent_alias) + child_name[len(parent_name):] if child_name.startswith(parent_name)
                else child_name)
        return engine_urn(stack, project, qualified_type(parent_alias), child_type, name)

    for resource in run.resources:  # registration order: a parent comes before its children
        candidates = [resource.urn, *(collapse(resource, alias) for alias in resource.aliases)]
        if resource.parent in matched:
            parent_alias, parent_name = matched[resource.parent], urn_name(resource.parent)
            candidates.append(inherited(resource.type, resource.name, parent_name, parent_alias))
            for alias in resource.aliases:
                own = collapse(resource, alias)
                candidates.append(inherited(qualified_type(own).split("$")[-1], urn_name(own), parent_name,
                                            parent_alias))
        for candidate in candidates:
            if candidate in old_urns:
                assert candidate not in claimed, f"{candidate} claimed by {claimed[candidate]} and {resource.urn}"
                claimed[candidate] = resource.urn
                if candidate != resource.urn:
                    matched[resource.urn] = candidate
                break
    return claimed
