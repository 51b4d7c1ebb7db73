"""The clouds' own rules, as helpers the per-cloud modules share (test_cloud_rules_aws.py, ..._azure.py).

A type-correct graph is not a deployable one: names a cloud refuses, operations it takes one at a
time, timeouts that do not add up. These helpers build the recorded graphs the rules are checked on
(each stack file's defaults and variants that turn every option the rules depend on), and read what
the rules need from them: the resources' custom timeouts (which `Recorded` does not keep), the
transitive dependencies the engine orders by, and the rendered nginx.conf inside a task definition
or an app template. No rule is a copy of the code under test: each reads the graph as the cloud
would, from its own documentation.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any, Optional
from unittest import mock

import pulumi

from tests.policy.graphs import OIDC
from tests.harness import program as harness
from tests.harness.program import ProgramRun, Recorded, run_program, run_under_mocks, stack_file_config

DROP = object()
"""A section value that removes the key from the stack file's section (take the default)."""

LONG_INSTANCE = "mlflow-tracking-platform-research"
"""An MlflowTrackingServer name as long as a team would choose: physical names start with it."""


@dataclasses.dataclass(frozen=True)
class Variant:
    """One way to run the program: a stack file, the stack's name, changed config sections and the
    MlflowTrackingServer's name (`mlflow` is the repository's own program)."""

    name: str
    stack_file: str
    stack: str
    sections: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()
    instance: str = "mlflow"

    def config(self) -> dict[str, str]:
        config = stack_file_config(self.stack_file)
        for section, values in self.sections:
            key = f"mlflow:{section}"
            merged = json.loads(config[key]) if key in config else {}
            for name, value in values:
                if value is DROP:
                    merged.pop(name, None)
                else:
                    merged[name] = value
            config[key] = json.dumps(merged)
        return config

    @property
    def secret_keys(self) -> tuple[str, ...]:
        return ("mlflow:auth",) if "clientSecret" in self.config().get("mlflow:auth", "") else ()


def variant(name: str, stack_file: str, stack: Optional[str] = None, instance: str = "mlflow",
            **sections: Mapping[str, Any]) -> Variant:
    frozen = tuple((section, tuple(values.items())) for section, values in sections.items())
    return Variant(name, stack_file, stack or stack_file, frozen, instance)


@dataclasses.dataclass
class Graph:
    """A recorded graph with what the engine orders and times by."""

    variant: Variant
    run: ProgramRun
    timeouts: dict[str, dict[str, str]]
    """URN -> the customTimeouts the program set (create/update/delete, Go durations such as "30m")."""

    @property
    def resources(self) -> list[Recorded]:
        return self.run.resources

    def of_type(self, type_: str) -> list[Recorded]:
        return self.run.of_type(type_)

    def by_urn(self, urn: str) -> Recorded:
        return self.run.by_urn(urn)

    @functools.cached_property
    def _ancestors(self) -> dict[str, frozenset[str]]:
        """URN -> every URN it waits for. A dependency on a component waits for all its children."""
        direct = {r.urn: set(r.dependencies) for r in self.resources}
        children: dict[str, set[str]] = {}
        for resource in self.resources:
            children.setdefault(resource.parent, set()).add(resource.urn)
        closed: dict[str, frozenset[str]] = {}

        def visit(urn: str, trail: frozenset[str]) -> frozenset[str]:
            if urn in closed:
                return closed[urn]
            found: set[str] = set()
            for dependency in direct.get(urn, ()):
                if dependency in trail:
                    continue
                found.add(dependency)
                found |= visit(dependency, trail | {dependency})
                for child in children.get(dependency, ()):
                    found.add(child)
                    found |= visit(child, trail | {child})
            closed[urn] = frozenset(found)
            return closed[urn]

        for resource in self.resources:
            visit(resource.urn, frozenset({resource.urn}))
        return closed

    def waits_for(self, later: Recorded, earlier: Recorded) -> bool:
        """Does the engine create `later` only after `earlier` (a path of dependencies)?"""
        return earlier.urn in self._ancestors.get(later.urn, frozenset())

    def timeout_seconds(self, resource: Recorded, operation: str, default_seconds: int) -> int:
        value = self.timeouts.get(resource.urn, {}).get(operation)
        return go_duration_seconds(value) if value else default_seconds


def _timeouts_monitor(sink: dict[str, dict[str, str]]) -> type:
    class TimeoutsMonitor(harness.RecordingMonitor):
        """The harness's monitor, also keeping each resource's custom timeouts."""

        def RegisterResource(self, request):
            response = super().RegisterResource(request)
            if request.HasField("customTimeouts"):
                timeouts = request.customTimeouts
                sink[response.urn] = {key: getattr(timeouts, key) for key in ("create", "update", "delete")
                                      if getattr(timeouts, key)}
            return response

    return TimeoutsMonitor


def build(chosen: Variant) -> Graph:
    """The program's graph for `chosen`, as `pulumi up` would register it."""
    timeouts: dict[str, dict[str, str]] = {}
    with mock.patch.object(harness, "RecordingMonitor", _timeouts_monitor(timeouts)):
        if chosen.instance == "mlflow":
            run = run_program(chosen.config(), stack=chosen.stack, secret_keys=chosen.secret_keys)
        else:
            run = run_under_mocks(lambda: _instance(chosen.instance), chosen.config(), chosen.stack,
                                  secret_keys=chosen.secret_keys)
    return Graph(chosen, run, timeouts)


def _instance(name: str) -> None:
    from components import MlflowTrackingServer
    from components.stack import load_stack_args

    server = MlflowTrackingServer(name, load_stack_args())
    for key, value in server.outputs().items():
        pulumi.export(key, value)


OIDC_AUTH = {"mode": "oidc", "oidc": OIDC}


# --- values ---------------------------------------------------------------------------------------

def go_duration_seconds(text: str) -> int:
    """A Go duration as Pulumi's customTimeouts take it ("1h30m", "45m", "90s")."""
    units = {"h": 3600, "m": 60, "s": 1}
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"not a Go duration: {text!r}"
    return int(sum(float(number) * units[unit] for number, unit in parts))


GIB = 1024 ** 3


def nginx_size_bytes(text: str) -> float:
    """An Nginx size (`0` is no limit: infinite)."""
    match = re.fullmatch(r"(\d+)([kKmMgG]?)", text.strip())
    assert match, f"not an nginx size: {text!r}"
    number, unit = int(match.group(1)), match.group(2).lower()
    if number == 0:
        return math.inf
    return number * {"": 1, "k": 1024, "m": 1024 ** 2, "g": GIB}[unit]


def nginx_time_seconds(text: str) -> float:
    """An Nginx time ("75", "75s", "5m", "1h", "1m30s")."""
    text = text.strip()
    if text.isdigit():
        return float(text)
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    parts = re.findall(r"(\d+)(ms|s|m|h|d)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"not an nginx time: {text!r}"
    return sum(int(number) * units[unit] for number, unit in parts)


# --- nginx.conf -------------------------------------------------------------------------------------

NGINX_DEFAULT_KEEPALIVE_SECONDS = 75.0
"""http://nginx.org/en/docs/http/ngx_http_core_module.html#keepalive_timeout (default 75s)."""
NGINX_DEFAULT_BODY_SIZE = "1m"
"""http://nginx.org/en/docs/http/ngx_http_core_module.html#client_max_body_size (default 1m)."""


def nginx_conf_in(values: Iterable[str]) -> str:
    """The nginx.conf among a container's plain env values (the platforms write files from env)."""
    found = [value for value in values if isinstance(value, str) and "http {" in value and "server {" in value]
    assert len(found) == 1, f"expected one nginx.conf in the container's env, found {len(found)}"
    return found[0]


def _blocks(text: str, opener: str) -> list[tuple[str, str]]:
    """(header, body) of each `opener ... { body }` in text, braces matched."""
    found = []
    for match in re.finditer(rf"(?m)^\s*({opener}[^{{;]*)\{{", text):
        depth, index = 1, match.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(text[index], 0)
            index += 1
        found.append((match.group(1).strip(), text[match.end():index - 1]))
    return found


def public_server_block(conf: str) -> str:
    """The first `server` block: the one clients (and the load balancer) reach."""
    servers = _blocks(conf, "server")
    assert servers, "nginx.conf has no server block"
    return servers[0][1]


def directive(block: str, name: str) -> Optional[str]:
    """A directive's value at this block's own level (nested blocks ignored)."""
    flat = block
    for _, body in _blocks(block, r"(?:location|if|limit_except)"):
        flat = flat.replace(body, "")
    match = re.search(rf"(?m)^\s*{name}\s+([^;]+);", flat)
    return match.group(1).strip() if match else None


def artifact_body_size(conf: str) -> str:
    """What Nginx accepts in one artifact upload: the limit of the location of the streaming router's
    unprefixed file routes (every other route keeps the server's, far smaller: components/render/proxy.py)."""
    server = public_server_block(conf)
    found = [body for header, body in _blocks(server, "location")
             if header.split()[1:2] == ["~"] and "mlflow-artifacts/artifacts/" in header and "^/(" in header]
    assert len(found) == 1, f"expected one artifact upload location, found {len(found)}"
    return directive(found[0], "client_max_body_size") or directive(server, "client_max_body_size") or \
        NGINX_DEFAULT_BODY_SIZE


def location_for(server: str, path: str) -> Optional[str]:
    """The body of the location Nginx picks for `path` among exact and prefix locations (regex
    locations are not evaluated: a path they would take is reported as unmatched)."""
    prefix_best: tuple[int, Optional[str]] = (-1, None)
    for header, body in _blocks(server, "location"):
        parts = header.split()
        if len(parts) == 3 and parts[1] == "=" and parts[2] == path:
            return body
        if len(parts) == 2 and path.startswith(parts[1]) and len(parts[1]) > prefix_best[0]:
            prefix_best = (len(parts[1]), body)
        if len(parts) == 3 and parts[1] == "^~" and path.startswith(parts[2]) and len(parts[2]) > prefix_best[0]:
            prefix_best = (len(parts[2]), body)
    return prefix_best[1]


def answered_by_nginx(conf: str, path: str) -> Optional[str]:
    """None when Nginx answers `path` itself with 200 and without credentials; else why not."""
    server = public_server_block(conf)
    body = location_for(server, path)
    if body is None:
        return f"no location of the public server takes {path}"
    if "proxy_pass" in body:
        return f"the location taking {path} passes it on upstream (proxy_pass)"
    if not re.search(r"return\s+200\b", body):
        return f"the location taking {path} does not `return 200`"
    if directive(server, "auth_basic") not in (None, "off") and not re.search(r"auth_basic\s+off\s*;", body):
        return f"the location taking {path} asks for credentials (auth_basic), a probe has none"
    return None


def url_path(command: Iterable[str]) -> Optional[str]:
    """The path of the http(s) URL a health-check command fetches."""
    for part in command:
        match = re.search(r"https?://[^/\s]+(/[^\s\"']*)", str(part))
        if match:
            return match.group(1)
    return None


def uvicorn_keep_alive_seconds(command: Iterable[str]) -> float:
    """`--timeout-keep-alive` in the server's command (`--uvicorn-opts`); uvicorn's default is 5 s
    (https://www.uvicorn.org/settings/#timeouts)."""
    match = re.search(r"--timeout-keep-alive[ =](\d+)", " ".join(str(part) for part in command))
    return float(match.group(1)) if match else 5.0


# --- names --------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class NameRule:
    """A cloud's rule for one kind of name: allowed characters (a full-match regex) and length."""

    what: str
    pattern: str
    min_length: int
    max_length: int
    source: str

    def problems(self, value: Any) -> list[str]:
        if not isinstance(value, str):
            return [f"{self.what}: {value!r} is not a string"]
        found = []
        if not self.min_length <= len(value) <= self.max_length:
            found.append(f"{self.what} {value!r}: {len(value)} characters, allowed {self.min_length}-{self.max_length}")
        if not re.fullmatch(self.pattern, value):
            found.append(f"{self.what} {value!r}: does not match {self.pattern} ({self.source})")
        return found


def dig(value: Any, path: str) -> list[Any]:
    """Values at a dotted path; `[]` fans out over a list (`containers[].name`)."""
    current = [value]
    for part in path.split("."):
        fan = part.endswith("[]")
        key = part[:-2] if fan else part
        following = []
        for item in current:
            if isinstance(item, dict) and key in item and item[key] is not None:
                following.extend(item[key] if fan and isinstance(item[key], list) else [item[key]])
        current = following
    return current


def name_problems(graph: Graph, checks: Iterable[tuple[str, str, NameRule]]) -> list[str]:
    """Every name the graph sets, at (type, input path), against its rule."""
    found = []
    for type_, path, rule in checks:
        for resource in graph.of_type(type_):
            for value in dig(resource.inputs, path):
                found += [f"[{graph.variant.name}] {resource.name}: {problem}" for problem in rule.problems(value)]
    return found


def total_order_problems(graph: Graph, resources: list[Recorded], what: str) -> list[str]:
    """Pairs of `resources` neither of which waits for the other: the engine runs them at once."""
    found = []
    for index, first in enumerate(resources):
        for second in resources[index + 1:]:
            if not (graph.waits_for(first, second) or graph.waits_for(second, first)):
                found.append(f"[{graph.variant.name}] {what}: {first.name} and {second.name} may run at the same time")
    return found


# --- EventBridge event patterns ---------------------------------------------------------------------

def _one_element_each(value: Any) -> Iterable[Any]:
    """`value` with each array of objects replaced by one of its elements, every way of choosing."""
    if isinstance(value, dict):
        keys = list(value)
        for chosen in itertools.product(*(list(_one_element_each(value[key])) for key in keys)):
            yield dict(zip(keys, chosen))
    elif isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        for item in value:
            yield from _one_element_each(item)
    else:
        yield value


def event_matches(pattern: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    """Would EventBridge deliver `event` to a rule with `pattern`? The operators (exact values, prefix,
    anything-but, numeric, exists, $or) are moto's EventPattern, a maintained emulation of EventBridge's
    matching. moto descends into objects only; AWS's matcher (Event Ruler) "crushes out" an array of objects,
    so a pattern on `detail.containers.exitCode` matches if one container's exit code does, and fields from
    different elements of one array never match together (aws/event-ruler README, "JSON Array Matching";
    arrays of values: https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-event-patterns-arrays.html).
    So the event is tried with each element of each such array in its place, each alone.
    moto takes an operator it does not know as a match: every use keeps a case that must not match."""
    from moto.events.models import EventPattern

    matcher = EventPattern.load(json.dumps(pattern))
    return any(matcher.matches_event(candidate) for candidate in _one_element_each(json.loads(json.dumps(event))))
