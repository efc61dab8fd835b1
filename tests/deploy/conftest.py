"""Fixtures shared by the deployment checks, and how they read the Dockerfile and .dockerignore.

The Dockerfile is parsed by `dockerfile` (PyPI), a binding of BuildKit's own Dockerfile parser,
under the thin adapter in dockerfile_stages.py that groups its instructions into stages. The
other candidate, `dockerfile-parse`, also installs here (pure Python, with typed stubs), but it
hands back each instruction's raw text: flags such as `COPY --from=build` and
`HEALTHCHECK --interval=30s` left in the string, the JSON exec form not told from the shell form
nor decoded, HEALTHCHECK's CMD and ENV's pairs unsplit. An adapter doing all that on top of it
would be the hand-written parser again. `dockerfile` gives all of it, read the way
`docker build` reads it (continuations with comments inside, directives, heredocs, and a broken
JSON array falling back to the shell form); what neither library has, stages, is the adapter's
only real work. Its cost: wheels exist for x86-64 Linux and Windows only, elsewhere pip builds
it from source with a Go toolchain.

`.dockerignore` is matched by dockerignore_rules.py, a small matcher kept on purpose, because no
package on PyPI follows Docker's rules: pathspec's gitwildmatch has Git's, and the Docker SDK's
`docker.utils.build.PatternMatcher` ports moby's older `Matches`, which tries only the parent
directory at the pattern's own depth, so `**/__pycache__` misses
`sfu/api/__pycache__/rest.cpython-311.pyc`, which BuildKit (moby/patternmatcher's
MatchesOrParentMatches) leaves out. test_dockerignore_matcher_follows_docker holds the matcher
to cases with known Docker answers, that one among them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.deploy import REPO, pods, settings_view
from tests.deploy.dockerfile_stages import Stage, parse_dockerfile, stages_of
from tests.deploy.dockerignore_rules import IgnorePattern, load_dockerignore
from tests.deploy.manifests import MANIFESTS, Doc, _one


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


@pytest.fixture(scope="module")
def maps() -> dict[str, dict[str, str]]:
    """Every ConfigMap's data, by name: what the pods' env and envFrom refer to."""
    return pods.config_maps(m.doc for m in MANIFESTS)
