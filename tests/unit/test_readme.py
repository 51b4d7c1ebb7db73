"""README promises that are checked, not trusted."""

from pathlib import Path

from components.config import reference_table_markdown

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_config_reference_table_matches_the_model():
    table = README.split("<!-- config-reference:start -->\n")[1].split("\n<!-- config-reference:end -->")[0]
    assert table == reference_table_markdown(), "regenerate with scripts/config-reference"


def test_readme_gives_the_two_commands_and_ci_calls_the_test_command():
    assert "./scripts/up-local" in README and "pulumi up -s local" in README
    assert "./scripts/test" in README
    ci = (Path(__file__).resolve().parents[2] / ".ci" / "run").read_text()
    assert "scripts/test" in ci
