"""Experiment ids written the one way MLflow writes them, everywhere a request can name one.

MLflow's auth apps compare experiment ids as text (the permission table holds "1"), the database as
numbers, so `01`, `001`, ` 1`, `+1` or `1_0` name experiment 1 (or 10) to the handler and nobody to
the auth app: a deny, or NO_PERMISSIONS, would not hold (issue 29). Every place the auth apps or the
handlers read an experiment id from is checked here, and any spelling other than MLflow's own
(`0` or a decimal number without a leading zero, as a JSON string) is refused, so both read the same
value. Run, trace and logged model ids need nothing: the auth apps look them up in the same database
as the handler, by the same exact text.
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterable, Iterator, NamedTuple, Optional
from urllib.parse import parse_qsl

CANONICAL_EXPERIMENT_ID = re.compile(r"0|[1-9][0-9]*")
EXPERIMENT_ID_KEY_ENDINGS = ("experimentid", "experimentids")
"""A field naming experiment ids, once lower-cased and stripped of `_`, `-` and blanks, at its end:
experiment_id, experimentIds, source_experiment_id... (protobuf accepts both the snake and the camel
spelling; mlflow_experiment.experiment_id in trace locations is found by walking the body)."""
EXPERIMENT_ID_HEADER = "x-mlflow-experiment-id"
"""The OTLP trace ingest (`/v1/traces`) takes its experiment from this header."""
ARTIFACT_ROUTE = re.compile(r"/mlflow-artifacts/(?:artifacts|presigned|mpu/[a-z]+)(?:/(?P<path>.*))?$")
"""The proxied artifact routes: the path (or ?path= when listing) starts with the experiment id."""
WORKSPACE_PATH = re.compile(r"workspaces/[^/]*/")
GRAPHQL_PATH = "/graphql"
FORM_TYPE = "application/x-www-form-urlencoded"


class Problem(NamedTuple):
    """A non-canonical experiment id: where it was and how it was written."""

    where: str
    value: Any

    def message(self) -> str:
        return (f"experiment id {self.value!r} in {self.where} is not written as MLflow writes it: "
                "write the id as a JSON string of its decimal digits without a leading zero (e.g. \"1\")")


def _normalised_key(key: str) -> str:
    return re.sub(r"[\s_-]", "", key).lower()


def names_experiment_ids(key: Any) -> bool:
    """Whether a field (query parameter, JSON key, GraphQL argument) holds experiment ids."""
    return isinstance(key, str) and _normalised_key(key).endswith(EXPERIMENT_ID_KEY_ENDINGS)


def is_canonical(value: Any) -> bool:
    """A string of MLflow's spelling; empty and null name no experiment (the auth apps then refuse
    or the handler reads nothing), so they pass."""
    if value is None or value == "":
        return True
    return isinstance(value, str) and CANONICAL_EXPERIMENT_ID.fullmatch(value) is not None


def _values(value: Any) -> Iterator[Any]:
    if isinstance(value, list):
        yield from value
    else:
        yield value


def check_value(where: str, value: Any) -> Optional[Problem]:
    """One field's value (a list of ids or one id)."""
    for item in _values(value):
        if not is_canonical(item):
            return Problem(where, item)
    return None


def check_pairs(pairs: Iterable[tuple[str, str]], source: str) -> Optional[Problem]:
    """Query string or form fields (every value of a repeated field)."""
    for key, value in pairs:
        if names_experiment_ids(key):
            if problem := check_value(f"{source} field {key!r}", value):
                return problem
    return None


def check_json(document: Any, where: str = "the JSON body") -> Optional[Problem]:
    """Every field naming experiment ids, at any depth (trace locations, GraphQL variables...)."""
    if isinstance(document, dict):
        for key, value in document.items():
            if names_experiment_ids(key) and (problem := check_value(f"{where} field {key!r}", value)):
                return problem
            if problem := check_json(value, where):
                return problem
    elif isinstance(document, list):
        for item in document:
            if problem := check_json(item, where):
                return problem
    return None


def parse_json_body(body: bytes) -> Any:
    """The body as MLflow's handlers read it: JSON whatever the Content-Type (get_json(force=True)),
    decoded a second time when it is a JSON string (older clients double-encode), None if not JSON."""
    try:
        document = json.loads(body)
        if isinstance(document, str):
            document = json.loads(document)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return document


def query_pairs(encoded: bytes) -> list[tuple[str, str]]:
    """Werkzeug's reading of a query string or form body: `&`-separated, percent- and `+`-decoded,
    every value of a repeated key."""
    return parse_qsl(encoded.decode("latin-1"), keep_blank_values=True, encoding="utf-8", errors="replace")


def is_form(content_type: str) -> bool:
    return content_type.split(";")[0].strip().lower() == FORM_TYPE


def check_query_string(query_string: bytes) -> Optional[Problem]:
    return check_pairs(query_pairs(query_string), "the query string")


def check_form(body: bytes) -> Optional[Problem]:
    return check_pairs(query_pairs(body), "the form body")


def check_header(headers: Iterable[tuple[bytes, bytes]]) -> Optional[Problem]:
    for name, value in headers:
        if name.decode("latin-1").lower() == EXPERIMENT_ID_HEADER:
            if problem := check_value(f"the {EXPERIMENT_ID_HEADER} header", value.decode("latin-1")):
                return problem
    return None


def _first_segment(artifact_path: str) -> str:
    return WORKSPACE_PATH.sub("", artifact_path.lstrip("/"), count=1).split("/", 1)[0]


def check_artifact_path(path: str, query_string: bytes) -> Optional[Problem]:
    """The artifact routes authorize the experiment the path starts with (the route's own path, or
    ?path= when listing): a number there is written canonically too."""
    match = ARTIFACT_ROUTE.search(path)
    if not match:
        return None
    paths = [match.group("path") or ""]
    paths += [value for key, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
              if key == "path"]
    for artifact_path in paths:
        segment = _first_segment(artifact_path)
        if segment.strip().lstrip("+-").isdigit() and not is_canonical(segment):
            return Problem("the artifact path", segment)
    return None


def check_graphql(document: Any) -> Optional[Problem]:
    """GraphQL names ids in its query text too (`input: {experimentId: "01"}`), or through a
    variable whose name says nothing (`experimentId: $x`, checked in `variables` and its default)."""
    from graphql import GraphQLError, parse, visit

    operations = document if isinstance(document, list) else [document]
    for operation in operations:
        if not isinstance(operation, dict) or not isinstance(operation.get("query"), str):
            continue
        try:
            tree = parse(operation["query"])
        except (GraphQLError, RecursionError):
            continue  # MLflow's handler fails to parse it too
        collected = _id_values_visitor()
        visit(tree, collected)
        if problem := _check_graphql_values(collected.values, tree, operation.get("variables")):
            return problem
    return None


def _id_values_visitor() -> Any:
    """A graphql-core visitor collecting the value nodes of arguments and input fields naming ids."""
    from graphql.language import ArgumentNode, ObjectFieldNode, Visitor

    class IdValues(Visitor):
        def __init__(self) -> None:
            super().__init__()
            self.values: list[Any] = []

        def enter_argument(self, node: ArgumentNode, *_: Any) -> None:
            if names_experiment_ids(node.name.value):
                self.values.append(node.value)

        def enter_object_field(self, node: ObjectFieldNode, *_: Any) -> None:
            if names_experiment_ids(node.name.value):
                self.values.append(node.value)

    return IdValues()


def _check_graphql_values(nodes: list[Any], tree: Any, variables: Any) -> Optional[Problem]:
    from graphql.language import ListValueNode, NullValueNode, StringValueNode, VariableNode

    variables = variables if isinstance(variables, dict) else {}
    defaults = {definition.variable.name.value: definition.default_value
                for definition in _variable_definitions(tree)}
    pending = list(nodes)
    while pending:
        node = pending.pop()
        if isinstance(node, ListValueNode):
            pending.extend(node.values)
        elif isinstance(node, VariableNode):
            name = node.name.value
            if problem := check_value(f"the GraphQL variable ${name}", variables.get(name)):
                return problem
            if defaults.get(name) is not None:
                pending.append(defaults[name])
        elif isinstance(node, StringValueNode):
            if problem := check_value("the GraphQL query", node.value):
                return problem
        elif not isinstance(node, NullValueNode):
            return Problem("the GraphQL query", getattr(node, "value", type(node).__name__))
    return None


def _variable_definitions(tree: Any) -> Iterator[Any]:
    for definition in tree.definitions:
        yield from getattr(definition, "variable_definitions", None) or ()


def check_body(path: str, content_type: str, body: bytes) -> Optional[Problem]:
    """A request body, read as MLflow may read it: as a form when it says so, and as JSON whatever
    it says (the handlers read JSON with get_json(force=True))."""
    if is_form(content_type) and (problem := check_form(body)):
        return problem
    document = parse_json_body(body)
    if document is None:
        return None
    if problem := check_json(document):
        return problem
    if path.endswith(GRAPHQL_PATH):
        return check_graphql(document)
    return None
