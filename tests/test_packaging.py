"""The dependency lists agree with each other, and the lock file satisfies them."""

import re
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _environment_pip_list():
    """The `- pip:` entries of environment.yml (a plain parse: no YAML library needed)."""
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- pip:")
    entries = []
    for line in lines[start + 1:]:
        match = re.match(r"^\s{6,}- (.+?)\s*$", line)
        if not match:
            break
        entries.append(match.group(1))
    return [e for e in entries if not e.startswith("-e ")]


def _as_map(specs):
    reqs = [Requirement(s) for s in specs]
    return {canonicalize_name(r.name): str(r.specifier) for r in reqs}


def test_environment_yml_matches_pyproject():
    project = _pyproject()
    wanted = _as_map(project["dependencies"] + project["optional-dependencies"]["dev"])
    assert _as_map(_environment_pip_list()) == wanted


def test_environment_yml_python_matches_requires_python():
    text = (ROOT / "environment.yml").read_text()
    version = re.search(r"- python=(\d+\.\d+)", text).group(1)
    assert Requirement(f"python{_pyproject()['requires-python']}").specifier.contains(version + ".0")


def test_lock_file_pins_every_dependency_within_its_range():
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    project = _pyproject()
    for spec in project["dependencies"] + project["optional-dependencies"]["dev"]:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name in pins, f"requirements.lock has no pin for {req.name}"
        assert req.specifier.contains(pins[name]), f"{req.name}=={pins[name]} is outside {req.specifier}"


def test_keras3_is_the_default_mode():
    import keras

    assert int(keras.__version__.split(".")[0]) == 3
