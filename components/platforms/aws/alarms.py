"""CloudWatch alarms, each notifying the stack's SNS topic when it fires and when it clears.

Thresholds are for a team's tracking server: a burst of errors or a lost task should reach
someone within minutes; a slowly filling disk within the hour.
"""

from dataclasses import dataclass
from typing import Any, Sequence

import pulumi
import pulumi_aws as aws

FIVE_MINUTES = 300


@dataclass(frozen=True)
class AlarmTarget:
    topic_arn: pulumi.Output[str]
    prefix: str
    """Alarm names start with it (ECS deployments name the alarms they watch)."""


def metric_alarm(resource_name: str, target: AlarmTarget, short_name: str, description: str,
                 opts: pulumi.ResourceOptions, **settings: Any) -> aws.cloudwatch.MetricAlarm:
    """An alarm on one metric or a metric-math expression (`metric_queries`), named
    `<prefix>-<short_name>`; missing data (no traffic, a stopped database) does not alarm."""
    return aws.cloudwatch.MetricAlarm(
        resource_name,
        name=f"{target.prefix}-{short_name}",
        alarm_description=description,
        alarm_actions=[target.topic_arn],
        ok_actions=[target.topic_arn],
        treat_missing_data="notBreaching",
        opts=opts,
        **settings,
    )


def metric(metric_id: str, namespace: str, name: str, dimensions: Any, stat: str = "Sum",
           period: int = 60, return_data: bool = False) -> dict:
    return {"id": metric_id, "return_data": return_data,
            "metric": {"namespace": namespace, "metric_name": name, "dimensions": dimensions, "period": period,
                       "stat": stat}}


def expression(metric_id: str, formula: str, label: str, inputs: Sequence[dict]) -> list[dict]:
    return [*inputs, {"id": metric_id, "expression": formula, "label": label, "return_data": True}]
