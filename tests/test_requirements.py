"""The pins in requirements*.txt and the Pipfile describe one environment."""

from __future__ import annotations

import re
import tomllib

from llm_studio.paths import REPO_ROOT


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _read_requirements(filename: str) -> list[tuple[str, str]]:
    pins = []
    for raw in (REPO_ROOT / filename).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        assert line.count("==") == 1, f"{filename}: {line!r} is not pinned with =="
        name, version = (part.strip() for part in line.split("=="))
        assert name and version, f"{filename}: {line!r} lacks a name or a version"
        pins.append((_normalize(name), version))
    return pins


def _pipfile_section(section: str) -> dict[str, str]:
    with open(REPO_ROOT / "Pipfile", "rb") as fh:
        pipfile = tomllib.load(fh)
    pins = {}
    for name, spec in pipfile[section].items():
        assert isinstance(spec, str) and spec.startswith("=="), f"Pipfile {name}: {spec!r}"
        pins[_normalize(name)] = spec.removeprefix("==")
    return pins


def test_torch_is_first_and_pinned():
    pins = _read_requirements("requirements.txt")
    assert pins[0] == ("torch", "2.13.0")


def test_requirement_files_list_each_package_once():
    for filename in ("requirements.txt", "requirements-dev.txt"):
        names = [name for name, _ in _read_requirements(filename)]
        assert len(names) == len(set(names)), f"{filename} repeats a package"


def test_runtime_and_dev_requirements_do_not_overlap():
    runtime = {name for name, _ in _read_requirements("requirements.txt")}
    dev = {name for name, _ in _read_requirements("requirements-dev.txt")}
    assert not runtime & dev


def test_pipfile_packages_match_requirements():
    assert _pipfile_section("packages") == dict(_read_requirements("requirements.txt"))


def test_pipfile_dev_packages_match_dev_requirements():
    assert _pipfile_section("dev-packages") == dict(_read_requirements("requirements-dev.txt"))


def test_pipfile_targets_python_311():
    with open(REPO_ROOT / "Pipfile", "rb") as fh:
        assert tomllib.load(fh)["requires"]["python_version"] == "3.11"
