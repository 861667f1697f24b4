"""environment.yml (conda) and pyproject.toml (pip) must list the same dependencies."""
import re
import tomllib

import yaml

from conftest import ROOT


def _norm(req: str) -> str:
    return re.sub(r"\s+", "", req).lower()


def test_environment_yml_matches_pyproject():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    conda_pip = [d for d in pip_section if d != "-e ."]
    assert sorted(map(_norm, conda_pip)) == sorted(map(_norm, deps))
    assert "-e ." in pip_section, "environment.yml must install vablib itself"


def test_torch_is_not_required_newer_than_2_14_1():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    torch_req = next(d for d in deps if d.startswith("torch") and not d.startswith("torchvision"))
    assert "<=2.14.1" in torch_req
