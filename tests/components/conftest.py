import pytest

from tests.harness.program import ProgramRun, run_program, stack_file_config


@pytest.fixture(scope="session")
def local_config() -> dict:
    return stack_file_config("local")


@pytest.fixture(scope="session")
def local_run(local_config) -> ProgramRun:
    """The `local` program as `pulumi up -s local` runs it, from Pulumi.local.yaml."""
    return run_program(local_config)
