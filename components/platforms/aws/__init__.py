"""The `aws` platform: RDS PostgreSQL, S3, ECR and ECS Fargate behind an Application Load Balancer.

    config.py    the `mlflow:aws` config section, its limits and cross-checks
    platform.py  AwsPlatform, the component: shared resources (network, cluster, load balancer,
                 alarm topic) and what the components ask for (database, bucket, images, services)
    network.py   the VPC: public and private subnets per zone, NAT, the S3 endpoint
    tasks.py     plain data: ECS container definitions and IAM policy documents
    alarms.py    CloudWatch alarms to the stack's topic

Imports only pulumi_aws (plus pulumi_docker to build and push images), so `local` never loads it.
"""

import importlib
import importlib.util

__all__ = ["AwsPlatform"]


def __getattr__(name: str):
    """AwsPlatform (and the rest of platform.py) on first use: importing this package for its config section
    must not load pulumi_aws."""
    if importlib.util.find_spec(f"{__name__}.{name}") is not None:
        raise AttributeError(name)  # a module of the package (`from ... import config`): imported as such
    return getattr(importlib.import_module(f"{__name__}.platform"), name)
