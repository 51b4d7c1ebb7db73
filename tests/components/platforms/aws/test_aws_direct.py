"""artifacts.transfer on the `aws` graph (issue 26): proxied keeps every byte behind the load balancer;
direct signs URLs for the bucket's regional endpoint with a task role holding exactly the actions MLflow
calls, behind a bucket that still refuses plain HTTP and ACLs, and changes nothing else."""

from __future__ import annotations

import json

import pytest

from components import render
from components.platforms.aws.platform import s3_addressing_style, s3_endpoint
from tests.harness.program import ProgramRun, Recorded, run_program
from tests.harness.stacks import aws_config, containers, policy_statements

TASK = "aws:ecs/taskDefinition:TaskDefinition"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"


@pytest.fixture(scope="module")
def proxied() -> ProgramRun:
    return run_program(aws_config(), stack="aws")


@pytest.fixture(scope="module")
def direct() -> ProgramRun:
    return run_program(aws_config(artifacts={"transfer": "direct"}), stack="aws")


def server_env(run: ProgramRun) -> dict[str, str]:
    server = containers(run, "mlflow-server")["mlflow-server"]
    return {entry["name"]: entry["value"] for entry in server["environment"]}


def nginx_conf(run: ProgramRun) -> str:
    proxy = containers(run, "mlflow-proxy")["mlflow-proxy"]
    [conf] = [e["value"] for e in proxy["environment"] if "http {" in e["value"]]
    return conf


def access_policy(run: ProgramRun) -> Recorded:
    return run.one(ROLE_POLICY, "mlflow-server-access-0")


def test_proxied_signs_nothing_for_clients(proxied):
    env = server_env(proxied)
    assert "MLFLOW_S3_ENDPOINT_URL" not in env and render.PRESIGNED_DOWNLOAD_TTL_ENV not in env
    conf = nginx_conf(proxied)
    assert conf.count("sub_filter '\"multipart_uploads_enabled\":true'") == 2


def test_direct_signs_for_the_regional_endpoint_of_the_buckets_region(direct):
    env = server_env(direct)
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "https://s3.eu-west-1.amazonaws.com"
    assert env["AWS_DEFAULT_REGION"] == "eu-west-1"
    assert env["MLFLOW_BOTO_CLIENT_ADDRESSING_STYLE"] == "virtual"
    assert env[render.PRESIGNED_DOWNLOAD_TTL_ENV] == "300"
    # A signed ExpectedBucketOwner header the client is never told to send breaks every upload part.
    assert "MLFLOW_S3_EXPECTED_BUCKET_OWNER" not in env
    assert "server-info" not in nginx_conf(direct)


def test_the_urls_are_those_clients_anywhere_can_use(direct):
    """botocore with the rendered settings signs virtual-hosted URLs at the regional endpoint, scoped to the
    bucket's region: what S3 answers without a redirect (a global-endpoint URL would not be)."""
    import boto3
    from botocore.config import Config

    env = server_env(direct)
    client = boto3.client("s3", endpoint_url=env["MLFLOW_S3_ENDPOINT_URL"], region_name=env["AWS_DEFAULT_REGION"],
                          aws_access_key_id="AKIAEXAMPLE", aws_secret_access_key="secret",
                          config=Config(signature_version="s3v4",
                                        s3={"addressing_style": env["MLFLOW_BOTO_CLIENT_ADDRESSING_STYLE"]}))
    url = client.generate_presigned_url("upload_part", Params={"Bucket": "mlflow-artifacts-1a2b", "Key": "1/r/x",
                                                               "PartNumber": 1, "UploadId": "u"})
    assert url.startswith("https://mlflow-artifacts-1a2b.s3.eu-west-1.amazonaws.com/1/r/x?")
    assert "%2Feu-west-1%2Fs3%2Faws4_request" in url and "X-Amz-SignedHeaders=host&" in url


def test_the_task_role_gets_exactly_the_actions_mlflow_calls(direct):
    bucket = direct.output("bucket")
    statements = policy_statements(access_policy(direct))
    assert statements == [
        {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [f"arn:aws:s3:::{bucket}"]},
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
         "Resource": [f"arn:aws:s3:::{bucket}/*"]},
    ]
    # The presigned operations each need one of them: create/upload part/complete s3:PutObject, abort its own,
    # the presigned GET (and the HeadObject before it) s3:GetObject.
    granted = {action for statement in statements for action in statement["Action"]}
    assert {"s3:PutObject", "s3:AbortMultipartUpload", "s3:GetObject"} <= granted
    others = [p.name for p in direct.of_type(ROLE_POLICY) if p.name != "mlflow-server-access-0"
              and any(str(action).startswith("s3:") for statement in policy_statements(p)
                      for action in (statement["Action"] if isinstance(statement["Action"], list)
                                     else [statement["Action"]]))]
    assert others == [], "no other policy grants S3"


def test_a_prefix_keeps_the_listing_and_the_objects_under_it():
    run = run_program(aws_config(artifacts={"transfer": "direct", "prefix": "team/mlflow"}), stack="aws")
    bucket = run.output("bucket")
    listing, objects = policy_statements(access_policy(run))
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["team/mlflow/*"]}}
    assert objects["Resource"] == [f"arn:aws:s3:::{bucket}/team/mlflow/*"]


def test_the_bucket_still_refuses_plain_http_and_acls_and_nothing_a_client_sends(direct):
    """The bucket policy's one statement denies non-TLS requests; no condition on the network (aws:SourceVpce,
    aws:SourceVpc, aws:SourceIp) that a client's presigned request from outside the VPC would fail."""
    [statement] = policy_statements(direct.one("aws:s3/bucketPolicy:BucketPolicy"))
    assert statement["Effect"] == "Deny" and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert direct.one("aws:s3/bucketOwnershipControls:BucketOwnershipControls").inputs["rule"] == {
        "objectOwnership": "BucketOwnerEnforced"}
    block = direct.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock").inputs
    assert all(block[key] is True for key in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                                              "restrictPublicBuckets"))
    [endpoint] = direct.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")
    assert "policy" not in endpoint.inputs, "the gateway endpoint (the server's route) keeps S3's full policy"


def test_incomplete_multipart_uploads_are_cleaned_up(direct):
    """A client that never completes or aborts leaves parts S3 bills for: the lifecycle rule aborts them."""
    rules = direct.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration").inputs["rules"]
    [abort] = [rule for rule in rules if "abortIncompleteMultipartUpload" in rule]
    assert abort["status"] == "Enabled" and abort["filter"] == {}
    assert abort["abortIncompleteMultipartUpload"] == {"daysAfterInitiation": 7}


def test_direct_changes_only_the_server_and_the_proxy(proxied, direct):
    """The role's S3 policy is one in both modes (review of issue 26)."""
    before = {r.urn: r for r in proxied.resources}
    after = {r.urn: r for r in direct.resources}
    assert set(before) == set(after)
    changed = {(r.type, r.name) for urn, r in after.items() if r.raw_inputs != before[urn].raw_inputs}
    assert changed == {(TASK, "mlflow-server"), (TASK, "mlflow-proxy")}


@pytest.mark.parametrize("region,endpoint", [
    ("eu-west-1", "https://s3.eu-west-1.amazonaws.com"), ("us-east-1", "https://s3.us-east-1.amazonaws.com"),
    ("af-south-1", "https://s3.af-south-1.amazonaws.com"), ("us-gov-west-1", "https://s3.us-gov-west-1.amazonaws.com"),
    ("cn-north-1", "https://s3.cn-north-1.amazonaws.com.cn")])
def test_regional_endpoints_by_partition(region, endpoint):
    assert s3_endpoint(region) == endpoint


def test_a_dotted_bucket_name_is_signed_path_style():
    """The regional endpoint's wildcard certificate covers one label: virtual-hosted HTTPS to a.b.s3... fails."""
    assert s3_addressing_style("mlflow-artifacts") == "virtual"
    assert s3_addressing_style("mlflow.artifacts") == "path"
    run = run_program(aws_config(artifacts={"transfer": "direct", "bucket": "ml.artifacts"}), stack="aws")
    assert server_env(run)["MLFLOW_BOTO_CLIENT_ADDRESSING_STYLE"] == "path"


def test_an_internal_load_balancer_with_direct_deploys_and_says_nothing(direct):
    """The clients of an internal stack need a route to S3 of their own (README): the stack cannot see it,
    so it neither refuses nor warns; the URLs are the same."""
    run = run_program(aws_config(artifacts={"transfer": "direct"}, aws={"internal": True}), stack="aws")
    assert server_env(run)["MLFLOW_S3_ENDPOINT_URL"] == server_env(direct)["MLFLOW_S3_ENDPOINT_URL"]
    assert json.dumps(run.stack_outputs.get("warning")) == json.dumps(direct.stack_outputs.get("warning"))
