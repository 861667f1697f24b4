"""environment.yml (conda) and pyproject.toml (pip) must list the same dependencies.

pyproject.toml is read with a small parser of its `[project] dependencies` array, not tomllib,
which only Python 3.11+ has (requires-python allows 3.9)."""
import re

import pytest
import yaml

from conftest import ROOT


def _norm(req: str) -> str:
    return re.sub(r"\s+", "", req).lower()


_TOKEN = re.compile(r"""\s+|#[^\n]*|"([^"\\]*)"|'([^']*)'|(,)|(\])""")


def project_dependencies(text: str) -> list[str]:
    """The strings of `dependencies = [...]` in the `[project]` table of a pyproject.toml (basic
    and literal strings, comments, a trailing comma: what a dependency list holds)."""
    table = re.search(r"^\[project\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
    assert table, "pyproject.toml has no [project] table"
    start = re.search(r"^dependencies\s*=\s*\[", table.group(1), re.M)
    assert start, "pyproject.toml's [project] table has no dependencies array"
    body, pos, items = table.group(1), start.end(), []
    while True:
        token = _TOKEN.match(body, pos)
        assert token, f"cannot read the dependencies array at {body[pos:pos + 30]!r}"
        pos = token.end()
        if token.group(4):
            return items
        if token.group(1) is not None or token.group(2) is not None:
            items.append(token.group(1) if token.group(1) is not None else token.group(2))


def _pyproject_dependencies() -> list[str]:
    deps = project_dependencies((ROOT / "pyproject.toml").read_text())
    assert deps, "no dependencies parsed from pyproject.toml"
    return deps


def test_the_parser_reads_what_tomllib_reads():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+: check the small parser against it
    text = (ROOT / "pyproject.toml").read_text()
    assert project_dependencies(text) == tomllib.loads(text)["project"]["dependencies"]
    sample = ('[project]\nname = "x"\ndependencies = [\n  "a>=1",  # why a\n  \'b[extra]\',\n]\n'
              '[tool.x]\ndependencies = ["c"]\n')
    assert project_dependencies(sample) == tomllib.loads(sample)["project"]["dependencies"] == ["a>=1", "b[extra]"]


def test_environment_yml_matches_pyproject():
    deps = _pyproject_dependencies()
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    conda_pip = [d for d in pip_section if d != "-e ."]
    assert sorted(map(_norm, conda_pip)) == sorted(map(_norm, deps))
    assert "-e ." in pip_section, "environment.yml must install vablib itself"


def test_torch_is_not_required_newer_than_2_14_1():
    torch_req = next(d for d in _pyproject_dependencies() if re.match(r"torch\b", d))
    assert "<=2.14.1" in _norm(torch_req)
