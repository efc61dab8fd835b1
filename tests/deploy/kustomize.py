"""kustomize, the real one: the standalone `kustomize` if installed, else the one built into
`kubectl` (`kubectl kustomize`, the same code `kubectl apply -k` runs). No Debian package ships a
current kustomize; scripts/test.sh says where it comes from. Without either, the overlay checks
skip with that message, except under CI (`CI` set), where a missing kustomize is a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml

Doc = dict[str, Any]

MIN_MAJOR = 5
"""The overlays use inline JSON patches with `target` (kustomize 4+); checked with 5."""


def _command() -> tuple[list[str], str] | None:
    """The build command and the kustomize version it runs."""
    if found := shutil.which("kustomize"):
        out = subprocess.run(
            [found, "version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
        return [found, "build"], out.strip()
    if found := shutil.which("kubectl"):
        out = subprocess.run(
            [found, "version", "--client", "-o", "json"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        return [found, "kustomize"], str(json.loads(out).get("kustomizeVersion", ""))
    return None


def _missing(message: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def require() -> list[str]:
    """The build command; skips (fails under CI) when there is none, or too old a one."""
    found = _command()
    if found is None:
        _missing(
            "kustomize not found: neither `kustomize` nor `kubectl` is on PATH "
            "(scripts/test.sh explains where they come from)"
        )
    command, version = found
    match = re.search(r"v?(\d+)\.(\d+)", version)
    if not match or int(match.group(1)) < MIN_MAJOR:
        _missing(f"{' '.join(command)}: kustomize {version!r}, {MIN_MAJOR}.x or later needed")
    return command


def build(command: list[str], directory: Path) -> list[Doc]:
    """`kustomize build directory`, parsed."""
    done = subprocess.run(
        [*command, str(directory)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"kustomize build {directory}: {done.stderr.strip()}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc is not None]
