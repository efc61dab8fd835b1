"""Fixtures shared by the deployment checks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.deploy import REPO, settings_view
from tests.deploy.dockerfile_stages import Stage, parse_dockerfile, stages_of
from tests.deploy.dockerignore_rules import IgnorePattern, load_dockerignore
from tests.deploy.manifests import Doc, _one


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No SFU_* / REDIS_URL from outside and no config/sfu.toml of the checkout."""
    for name in list(os.environ):
        if settings_view.reads_env(name):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def defaults(clean_env: Path) -> settings_view.Settings:
    return settings_view.defaults()


@pytest.fixture(scope="module")
def dockerfile() -> list[Stage]:
    return stages_of(parse_dockerfile((REPO / "Dockerfile").read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def final(dockerfile: list[Stage]) -> Stage:
    return dockerfile[-1]


@pytest.fixture(scope="module")
def dockerignore() -> list[IgnorePattern]:
    return load_dockerignore((REPO / ".dockerignore").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def deployment() -> Doc:
    return _one("Deployment", "sfu")


@pytest.fixture(scope="module")
def pod(deployment: Doc) -> Doc:
    spec: Doc = deployment["spec"]["template"]["spec"]
    return spec


@pytest.fixture(scope="module")
def container(pod: Doc) -> Doc:
    found: list[Doc] = [c for c in pod["containers"] if c["name"] == "sfu"]
    assert len(found) == 1
    return found[0]


@pytest.fixture(scope="module")
def config() -> dict[str, str]:
    data: dict[str, str] = _one("ConfigMap", "sfu-config")["data"]
    return data
