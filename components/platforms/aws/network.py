"""The VPC the `aws` stack creates (or the one it is given): public subnets for the load balancer,
private subnets for the tasks and the database, in each zone, and their ways out.

NAT: one gateway per zone by default, each zone's private subnet routing through its own, so an
outage of one zone leaves the other its egress (image pulls, Secrets Manager, CloudWatch Logs);
`aws.natGateways: single` keeps one. S3 traffic never takes the NAT (a gateway endpoint).
"""

import ipaddress
from dataclasses import dataclass
from typing import Callable

import pulumi
import pulumi_aws as aws

from components.platforms.aws.config import AwsConfig


@dataclass(frozen=True)
class Network:
    vpc_id: pulumi.Output[str]
    public_subnet_ids: pulumi.Output[list]
    private_subnet_ids: pulumi.Output[list]


Shared = Callable[..., dict]
"""AwsPlatform._shared: a platform-wide resource's name and options from its short name."""


def existing_network(settings: AwsConfig) -> Network:
    return Network(vpc_id=pulumi.Output.from_input(settings.vpc_id),
                   public_subnet_ids=pulumi.Output.from_input(settings.public_subnet_ids).apply(list),
                   private_subnet_ids=pulumi.Output.from_input(settings.private_subnet_ids).apply(list))


def zones(settings: AwsConfig, provider: pulumi.ProviderResource) -> tuple[str, ...]:
    """aws.availabilityZones, else the account's first two zones in the region. Which zone letters an
    account has varies (ap-northeast-1 has no `b` for most accounts: "Subnets can currently only be created
    in ... ap-northeast-1a, ap-northeast-1c, ap-northeast-1d", aws-samples/saas-reference-architecture-ecs#12),
    so the zones come from EC2 DescribeAvailabilityZones, not from the region's name; Local and Wavelength
    Zones (opt-in) are left out. The first two sorted names: `<region>a` and `<region>b` where the account
    has them, the zones earlier stacks took. Whatever their state: a zone impaired during a later `up` must
    not move the subnets, the NAT gateways and the database's subnet group to another (review 24, aws 2 F1)."""
    if settings.availability_zones:
        return settings.availability_zones
    found = aws.get_availability_zones(filters=[{"name": "opt-in-status", "values": ["opt-in-not-required"]}],
                                       opts=pulumi.InvokeOptions(provider=provider))
    names = sorted(found.names)
    if len(names) < 2:
        raise ValueError(f"aws.region {settings.region} has {len(names)} availability zone(s) for this account; "
                         "the stack spreads over two: set aws.availabilityZones or pick another region")
    return tuple(names[:2])


def new_network(settings: AwsConfig, prefix: str, shared: Shared, zones: tuple[str, ...]) -> Network:
    network = ipaddress.ip_network(settings.vpc_cidr)
    blocks = list(network.subnets(new_prefix=min(network.prefixlen + 4, 28)))
    vpc = aws.ec2.Vpc(**shared("vpc"), cidr_block=settings.vpc_cidr, enable_dns_hostnames=True,
                      enable_dns_support=True, tags={"Name": prefix})
    gateway = aws.ec2.InternetGateway(**shared("internet-gateway"), vpc_id=vpc.id)
    public_routes = aws.ec2.RouteTable(**shared("public-routes"), vpc_id=vpc.id,
                                       routes=[{"cidr_block": "0.0.0.0/0", "gateway_id": gateway.id}])
    public, private, private_route_tables = [], [], []
    for index, zone in enumerate(zones):
        subnet = aws.ec2.Subnet(**shared(f"public-{zone}"), vpc_id=vpc.id, cidr_block=str(blocks[index]),
                                availability_zone=zone, map_public_ip_on_launch=False,
                                tags={"Name": f"{prefix}-public-{zone}"})
        aws.ec2.RouteTableAssociation(**shared(f"public-{zone}"), subnet_id=subnet.id, route_table_id=public_routes.id)
        public.append(subnet)
    nat_zones = zones if settings.nat_gateways == "per-zone" else zones[:1]
    nats = []
    for index, zone in enumerate(nat_zones):
        # The first zone's gateway keeps the names it had when there was only one (and its address).
        suffix = "" if index == 0 else f"-{zone}"
        address = aws.ec2.Eip(**shared(f"nat-ip{suffix}"), domain="vpc")
        nats.append(aws.ec2.NatGateway(**shared(f"nat{suffix}", depends_on=[gateway]), subnet_id=public[index].id,
                                       allocation_id=address.id))
    for index, zone in enumerate(zones):
        nat = nats[index] if index < len(nats) else nats[0]
        routes = aws.ec2.RouteTable(**shared("private-routes" if index == 0 else f"private-routes-{zone}"),
                                    vpc_id=vpc.id, routes=[{"cidr_block": "0.0.0.0/0", "nat_gateway_id": nat.id}])
        subnet = aws.ec2.Subnet(**shared(f"private-{zone}"), vpc_id=vpc.id, cidr_block=str(blocks[8 + index]),
                                availability_zone=zone, tags={"Name": f"{prefix}-private-{zone}"})
        aws.ec2.RouteTableAssociation(**shared(f"private-{zone}"), subnet_id=subnet.id, route_table_id=routes.id)
        private.append(subnet)
        private_route_tables.append(routes)
    # Artifact traffic to S3 stays inside AWS (and off the NAT bill).
    aws.ec2.VpcEndpoint(**shared("s3-endpoint"), vpc_id=vpc.id, service_name=f"com.amazonaws.{settings.region}.s3",
                        vpc_endpoint_type="Gateway", route_table_ids=[table.id for table in private_route_tables])
    return Network(vpc_id=vpc.id, public_subnet_ids=pulumi.Output.all(*[subnet.id for subnet in public]),
                   private_subnet_ids=pulumi.Output.all(*[subnet.id for subnet in private]))
