"""Writes `components/mlflow_tracking_server_args.py`, MlflowTrackingServer's plain-data arguments,
from the pydantic model in `config.py`: one TypedDict per config section, a `str` Enum per choice,
each field's description and default as its docstring. Keys, types, defaults and descriptions so have
one source, and a unit test fails when the generated module is stale (`scripts/generate-package`).

Why a generated file rather than classes built at import time: Pulumi's component analyzer reads
the argument types' docstrings from their source code.
"""

import json
import re
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.alias_generators import to_camel

from components.config import KNOWN_LATER_KEYS, StackConfig
from components.platforms import PLATFORMS

MODULE_PATH = "components/mlflow_tracking_server_args.py"

# One schema type per section and per choice; the names are the package's public API. A platform's
# section is named after it, its choices by its config module (ARGS_ENUM_TYPES).
SECTION_TYPES = {"server": "Server", "proxy": "Proxy", "database": "Database", "artifacts": "Artifacts",
                 "auth": "Auth", "auth.oidc": "Oidc", "observability": "Observability", "maintenance": "Maintenance",
                 **{name: name.capitalize() for name in PLATFORMS}}
ENUM_TYPES = {"platform": "PlatformName", "proxy.tls": "TlsMode", "proxy.passwordHash": "PasswordHashScheme",
              "artifacts.transfer": "ArtifactTransfer", "auth.mode": "AuthMode", "auth.defaultPermission": "Permission",
              **{key: type_name for plugin in PLATFORMS.values()
                 for key, type_name in plugin.rules.ARGS_ENUM_TYPES.items()}}

HEADER = '''"""MlflowTrackingServer's arguments: plain data any Pulumi language can pass.

GENERATED from the pydantic model in components/config.py by scripts/generate-package; do not edit (a
unit test fails when the two differ). Each key is the stack config key of the same name (README,
"Configuration"), with the same default and rules: MlflowTrackingServer validates its arguments with
that model. Keys that shape the resource graph are plain values; the ids of existing infrastructure
also take an Output. Pulumi's component analyzer reads these classes and docstrings for the package
schema, so this module must not use `from __future__ import annotations`.
"""

from enum import Enum
from typing import NotRequired, TypedDict

import pulumi
'''


def args_module_source() -> str:
    enums: list[str] = []
    sections: list[str] = []
    top_fields: list[str] = []
    for name, field in StackConfig.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            type_name = SECTION_TYPES[name]
            sections.append(_typed_dict(type_name, annotation, f"{to_camel(name)}.", enums))
            top_fields.append(_field(name, type_name, f"{(annotation.__doc__ or '').strip().rstrip('.')}. "
                                     "Defaults for every key inside."))
        else:
            top_fields.append(_field(name, _python_type(annotation, to_camel(name), enums),
                                     _description(field)))
    top = ('class MlflowTrackingServerArgs(TypedDict):\n'
           '    """Everything is optional: with no arguments the `local` platform runs with the defaults."""\n\n'
           + "\n\n".join(top_fields))
    return "\n\n\n".join([HEADER.rstrip("\n"), *enums, *sections, top]) + "\n"


def _typed_dict(type_name: str, model: type[BaseModel], prefix: str, enums: list[str]) -> str:
    """A section's TypedDict; a section nested in it goes to `enums` (the definitions that come first)."""
    fields = [_field(name, _python_type(field.annotation, prefix + to_camel(name), enums), _description(field))
              for name, field in model.model_fields.items()]
    return f'class {type_name}(TypedDict):\n    """{(model.__doc__ or "").strip()}"""\n\n' + "\n\n".join(fields)


def _field(name: str, python_type: str, description: str) -> str:
    return f"    {name}: NotRequired[{python_type}]\n    {_docstring(description)}"


def _docstring(text: str) -> str:
    """A field's docstring on one line: Pulumi's analyzer reads it verbatim into the schema's description (a
    wrapped one would carry its line breaks and indent there; pyproject.toml exempts this module from E501)."""
    text = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    return f'"""{text}"""'


def _description(field: Any) -> str:
    default = field.get_default(call_default_factory=True)
    if isinstance(default, BaseModel):
        return f"{(field.annotation.__doc__ or '').strip().rstrip('.')}. Defaults for every key inside."
    rendered = "unset" if default is None else json.dumps(list(default) if isinstance(default, tuple) else default)
    return f"{(field.description or '').rstrip('.')}. Default: {rendered}."


def _python_type(annotation: Any, key: str, enums: list[str]) -> str:
    if get_origin(annotation) is Union and type(None) in get_args(annotation):
        (inner,) = [arg for arg in get_args(annotation) if arg is not type(None)]
        return _python_type(inner, key, enums)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        type_name = SECTION_TYPES[key]
        enums.append(_typed_dict(type_name, annotation, f"{key}.", enums))
        return type_name
    if get_origin(annotation) is Literal:
        type_name = ENUM_TYPES[key]
        members = "\n".join(f'    {_member(value)} = "{value}"' for value in get_args(annotation))
        enums.append(f'class {type_name}(str, Enum):\n    """Allowed values of `{key}`."""\n\n{members}')
        return type_name
    later = key in KNOWN_LATER_KEYS
    if get_origin(annotation) is tuple:
        return "pulumi.Input[list[pulumi.Input[str]]]" if later else "list[str]"
    plain = {str: "str", int: "int", float: "float", bool: "bool"}[annotation]
    return f"pulumi.Input[{plain}]" if later else plain


def _member(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", value).upper()
