"""The `aws` platform: RDS PostgreSQL, S3, ECR and ECS Fargate behind an Application Load Balancer.

    platform.py  AwsPlatform, the component: shared resources (network, cluster, load balancer,
                 alarm topic) and what the components ask for (database, bucket, images, services)
    network.py   the VPC: public and private subnets per zone, NAT, the S3 endpoint
    tasks.py     plain data: ECS container definitions and IAM policy documents
    alarms.py    CloudWatch alarms to the stack's topic

Imports only pulumi_aws (plus pulumi_docker to build and push images), so `local` never loads it.
"""

from components.platforms.aws.platform import AwsPlatform

__all__ = ["AwsPlatform"]
