"""Azure Monitor metric alerts, each notifying the stack's action group when it fires and when it
clears (auto-mitigated): the azure counterpart of the aws platform's CloudWatch alarms.

Metric names, aggregations and dimensions are Azure's own, from its supported-metrics pages:
- Container Apps (`Requests` by `statusCodeCategory`):
  https://learn.microsoft.com/en-us/azure/azure-monitor/reference/supported-metrics/microsoft-app-containerapps-metrics
- Container Apps jobs (`Executions` by `state`):
  https://learn.microsoft.com/en-us/azure/azure-monitor/reference/supported-metrics/microsoft-app-jobs-metrics
- Flexible server (`cpu_percent`, `storage_percent`, `active_connections`):
  https://learn.microsoft.com/en-us/azure/azure-monitor/reference/supported-metrics/microsoft-dbforpostgresql-flexibleservers-metrics

A metric alert evaluates one metric per criterion and has no metric math (its `allOf` criteria must
each hold on their own: https://learn.microsoft.com/en-us/azure/azure-monitor/alerts/alerts-types#metric-alerts),
so the proxy's 5xx alert counts 5xx responses rather than dividing them by all requests. A window
without data (no traffic, a stopped job) is not evaluated and does not fire.

No restart alert: Container Apps' `RestartCount` is each replica's cumulative count, not restarts in the
window (https://github.com/microsoft/azure-container-apps/issues/467,
https://github.com/microsoft/azure-container-apps/issues/1384), so any threshold on it fires for as long as
a replica that once restarted lives, and a metric alert cannot take a difference. A log alert on the
environment's system logs would count new restarts, but its table and columns are not checked here
against a real workspace; the README names the query to run instead.
"""

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_azure_native as azure

# Metric alerts are global resources
# (https://learn.microsoft.com/en-us/azure/templates/microsoft.insights/metricalerts).
ALERT_LOCATION = "global"
ACTION_GROUP_LOCATION = "Global"
# An action group's short name: at most 12 characters (it heads SMS and email subjects).
ACTION_GROUP_SHORT_NAME = "mlflow"
SINGLE_RESOURCE = "Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria"
CONTAINER_APPS = "Microsoft.App/containerApps"
JOBS = "Microsoft.App/jobs"
FLEXIBLE_SERVERS = "Microsoft.DBforPostgreSQL/flexibleServers"
# Severities: 1 error (users see failures), 2 warning (capacity running out).
ERROR, WARNING = 1, 2
# Thresholds, as the aws alarms set them for a team's tracking server.
PROXY_5XX_PER_5_MINUTES = 10
DATABASE_CPU_PERCENT = 80
DATABASE_STORAGE_PERCENT = 85
DATABASE_CONNECTIONS_SHARE = 0.8


@dataclass(frozen=True)
class AlertTarget:
    """Where alerts go and how they are named: rule names are unique per resource group, so each
    starts with the stack's Azure prefix."""

    resource_group: pulumi.Output[str]
    action_group_id: pulumi.Output[str]
    prefix: str


def action_group(resource_name: str, resource_group: pulumi.Output[str], prefix: str, email: Optional[str],
                 opts: pulumi.ResourceOptions) -> azure.monitor.ActionGroup:
    """The group every alert notifies: `azure.alarmEmail` as its email receiver when set (with none, the
    alerts still fire and show in the portal's Alerts view, as aws's topic without a subscription)."""
    receivers = [{"name": "alarm-email", "email_address": email, "use_common_alert_schema": True}] if email else []
    return azure.monitor.ActionGroup(
        resource_name, resource_group_name=resource_group, action_group_name=f"{prefix}-alerts",
        group_short_name=ACTION_GROUP_SHORT_NAME, enabled=True, location=ACTION_GROUP_LOCATION,
        email_receivers=receivers, opts=opts)


def criterion(metric: str, namespace: str, aggregation: str, operator: str, threshold: float,
              dimensions: Optional[dict[str, list[str]]] = None) -> azure.monitor.MetricCriteriaArgs:
    """One static-threshold criterion on a metric of `namespace`, optionally narrowed to dimension values.
    Args classes, not dicts: `criteria` is a union of types, and the SDK translates a plain dict's
    snake_case keys to the API's names only where the type is known."""
    return azure.monitor.MetricCriteriaArgs(
        criterion_type="StaticThresholdCriterion", name=metric, metric_name=metric, metric_namespace=namespace,
        time_aggregation=aggregation, operator=operator, threshold=threshold,
        dimensions=[azure.monitor.MetricDimensionArgs(name=name, operator="Include", values=values)
                    for name, values in (dimensions or {}).items()])


def metric_alert(resource_name: str, target: AlertTarget, short_name: str, description: str,
                 scope: pulumi.Input[str], rule: azure.monitor.MetricCriteriaArgs, opts: pulumi.ResourceOptions,
                 *, severity: int = WARNING,
                 window: str = "PT15M", frequency: str = "PT5M") -> azure.monitor.MetricAlert:
    """An alert `<prefix>-<short_name>` on one resource and one criterion, resolved by itself when the
    metric recovers."""
    return azure.monitor.MetricAlert(
        resource_name, resource_group_name=target.resource_group, rule_name=f"{target.prefix}-{short_name}",
        description=description, location=ALERT_LOCATION, enabled=True, auto_mitigate=True, severity=severity,
        scopes=[scope], window_size=window, evaluation_frequency=frequency,
        criteria=azure.monitor.MetricAlertSingleResourceMultipleMetricCriteriaArgs(odata_type=SINGLE_RESOURCE,
                                                                                   all_of=[rule]),
        actions=[{"action_group_id": target.action_group_id}], opts=opts)


def app_alerts(resource_name: str, target: AlertTarget, app_name: str, app_id: pulumi.Input[str], public: bool,
               opts: pulumi.ResourceOptions) -> None:
    """For the public (proxy) app, the 5xx its ingress counts (no restart alert: module docstring)."""
    if public:
        metric_alert(f"{resource_name}-alert-5xx", target, f"{app_name}-http-5xx",
                     f"{app_name}: more than {PROXY_5XX_PER_5_MINUTES} responses 5xx at the ingress in 5 minutes",
                     app_id, criterion("Requests", CONTAINER_APPS, "Total", "GreaterThan", PROXY_5XX_PER_5_MINUTES,
                                       {"statusCodeCategory": ["5xx"]}),
                     opts, severity=ERROR, window="PT5M", frequency="PT1M")


def job_alerts(resource_name: str, target: AlertTarget, job_name: str, job_id: pulumi.Input[str],
               opts: pulumi.ResourceOptions) -> None:
    """Any failed execution of a scheduled job, looked at over a day (the job runs at most that often
    in practice; the alert clears a day after the last failure)."""
    metric_alert(f"{resource_name}-alert-failed", target, f"{job_name}-failed",
                 f"{job_name}: an execution failed", job_id,
                 criterion("Executions", JOBS, "Total", "GreaterThan", 0, {"state": ["Failed"]}),
                 opts, window="P1D", frequency="PT1H")


def database_alerts(resource_name: str, target: AlertTarget, server_id: pulumi.Input[str], max_connections: int,
                    opts: pulumi.ResourceOptions) -> None:
    """CPU, storage and connections of the flexible server (connections against the max_connections
    this stack writes to it)."""
    metric_alert(f"{resource_name}-alert-cpu", target, "database-cpu",
                 f"Database CPU above {DATABASE_CPU_PERCENT}% for 15 minutes", server_id,
                 criterion("cpu_percent", FLEXIBLE_SERVERS, "Average", "GreaterThan", DATABASE_CPU_PERCENT), opts)
    metric_alert(f"{resource_name}-alert-storage", target, "database-storage",
                 f"Database storage above {DATABASE_STORAGE_PERCENT}% used (auto-grow may be at its limit: README)",
                 server_id,
                 criterion("storage_percent", FLEXIBLE_SERVERS, "Maximum", "GreaterThan", DATABASE_STORAGE_PERCENT),
                 opts)
    limit = int(max_connections * DATABASE_CONNECTIONS_SHARE)
    metric_alert(f"{resource_name}-alert-connections", target, "database-connections",
                 f"Database connections above {limit} ({DATABASE_CONNECTIONS_SHARE:.0%} of max_connections "
                 f"{max_connections}) for 15 minutes", server_id,
                 criterion("active_connections", FLEXIBLE_SERVERS, "Maximum", "GreaterThan", limit), opts)
