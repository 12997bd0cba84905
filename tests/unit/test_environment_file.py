import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_environment_yml_pins_the_same_dependencies_as_pyproject():
    pyproject = re.findall(r'^\s+"([^"]+)",$', (ROOT / "pyproject.toml").read_text(), re.M)
    conda = re.findall(r"^\s+- ([\w.-]+==[\w.]+)$", (ROOT / "environment.yml").read_text(), re.M)
    assert pyproject and sorted(pyproject) == sorted(conda)
    assert all("==" in dep for dep in pyproject)
