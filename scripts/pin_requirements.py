"""Rewrite requirements.txt and the Pipfile from the current .venv (`pip freeze`).

torch stays first and pinned without its local build tag, so the same pin gets a CPU build
here and a CUDA build elsewhere. Dev tools stay in requirements-dev.txt / [dev-packages].
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def read_pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name] = version
    return pins


def normalized(name: str) -> str:
    """pip freeze spells some names with `_` where the pins have `-` (pytest_httpserver)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def toml_key(name: str) -> str:
    """A dotted name (jaraco.classes) must be quoted, or TOML reads it as a nested table."""
    return f'"{name}"' if "." in name else name


def main() -> None:
    frozen = subprocess.run(
        [sys.executable, "-m", "pip", "freeze"], capture_output=True, text=True, check=True
    ).stdout
    dev = read_pins(ROOT / "requirements-dev.txt")
    dev_names = {normalized(n) for n in dev}
    pins = {}
    for line in frozen.splitlines():
        if "==" not in line:
            continue
        name, version = line.split("==")
        if normalized(name) in dev_names:
            continue
        pins[name] = version.split("+")[0] if name.lower() == "torch" else version
    torch_pin = pins.pop("torch")
    ordered = [("torch", torch_pin)] + sorted(pins.items(), key=lambda kv: kv[0].lower())
    (ROOT / "requirements.txt").write_text("".join(f"{n}=={v}\n" for n, v in ordered))
    pipfile = [
        "[[source]]",
        'url = "https://pypi.org/simple"',
        "verify_ssl = true",
        'name = "pypi"',
        "",
        "[packages]",
    ]
    pipfile += [f'{toml_key(n)} = "=={v}"' for n, v in ordered]
    pipfile += ["", "[dev-packages]"] + [f'{toml_key(n)} = "=={v}"' for n, v in dev.items()]
    pipfile += ["", "[requires]", 'python_version = "3.11"', ""]
    (ROOT / "Pipfile").write_text("\n".join(pipfile))


if __name__ == "__main__":
    main()
