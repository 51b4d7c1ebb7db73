"""The platform registry (components.platforms.PLATFORMS) is the one list of platforms: the config's
`platform` values and sections, the component the facade builds, and what loads when (issue 24)."""

import subprocess
import sys

import pytest

from components.config import StackConfig, parse_stack_config
from components.platforms import PLATFORMS, PlatformRules
from components.platforms.base import Platform
from tests.harness.program import REPO_ROOT


def test_the_config_takes_its_platforms_and_their_sections_from_the_registry():
    fields = list(StackConfig.model_fields)
    assert StackConfig.model_fields["platform"].annotation.__args__ == tuple(PLATFORMS)
    assert fields[-len(PLATFORMS):] == list(PLATFORMS), "the platforms' sections come last, in the registry's order"
    for name, plugin in PLATFORMS.items():
        assert StackConfig.model_fields[name].annotation is plugin.config_section


@pytest.mark.parametrize("name", list(PLATFORMS))
def test_each_platforms_config_module_gives_what_the_configuration_asks(name):
    asked = [member for member in vars(PlatformRules) if not member.startswith("_")]
    asked += list(PlatformRules.__annotations__)
    assert [member for member in asked if not hasattr(PLATFORMS[name].rules, member)] == []


@pytest.mark.parametrize("name", list(PLATFORMS))
def test_each_platform_names_a_platform_component(name):
    component = PLATFORMS[name].component_class()
    asked = [member for member, value in vars(Platform).items() if callable(value) and not member.startswith("_")]
    assert asked and [member for member in asked if not callable(getattr(component, member, None))] == [], component


@pytest.mark.parametrize("name", [name for name, plugin in PLATFORMS.items() if plugin.rehearsal_runtime])
def test_each_rehearsal_runtime_gives_what_the_platform_run_asks(name):
    """rehearsal/runtimes/__init__.py's contract; `scripts/rehearse --platform` offers exactly these."""
    import importlib

    from rehearsal.platform_graph import rehearsed_platforms

    runtime = importlib.import_module(str(PLATFORMS[name].rehearsal_runtime))
    assert runtime.ARTIFACT_STAND_IN in ("s3", "azurite")
    assert callable(runtime.services) and callable(runtime.database)
    assert name in rehearsed_platforms() and "local" not in rehearsed_platforms()


def test_reading_the_config_loads_no_provider_sdk():
    """The config sections live in the platforms' packages; importing them (every tool reads the
    config) must not import the platform components and their SDKs."""
    code = ("import sys, components.config, components.platforms; "
            "print(sorted(m for m in ('pulumi_aws', 'pulumi_azure_native', 'pulumi_docker', "
            "'components.platforms.local.platform', 'components.platforms.aws.platform', "
            "'components.platforms.azure.platform') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_only_the_chosen_platform_checks_the_other_sections():
    """A platform's cross-checks (`consistent`) run only when it is chosen: self-signed TLS is the
    local proxy's to terminate, and the aws load balancer's."""
    assert parse_stack_config({"platform": "local", "proxy": {"tls": "self-signed"}}, "test").proxy.tls == "self-signed"
    with pytest.raises(ValueError, match="proxy.tls must be off on aws"):
        parse_stack_config({"platform": "aws", "proxy": {"tls": "self-signed"}, "aws": {"allowPlainHttp": True}},
                           "test")
