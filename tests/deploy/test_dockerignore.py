"""The build context: what `.dockerignore` lets through to the Dockerfile's COPY."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy import REPO
from tests.deploy.dockerfile_stages import Stage
from tests.deploy.dockerignore_rules import IgnorePattern, ignored, load_dockerignore


@pytest.mark.parametrize(
    ("patterns", "path", "expected"),
    [
        ("*\n!sfu/\n**/__pycache__", "sfu/app/factory.py", False),
        ("*\n!sfu/\n**/__pycache__", "sfu/api/__pycache__/rest.cpython-311.pyc", True),
        ("*\n!sfu/\n", "tests/unit/test_x.py", True),
        ("tests\n", "tests/unit/test_x.py", True),
        ("tests\n", "sfu/tests.py", False),
        ("*.md\n!README.md", "README.md", False),
        ("*.md\n!README.md", "docs/x.md", False),
        ("**/*.md", "docs/x.md", True),
        ("/bench", "bench/forwarding.py", True),
    ],
)
def test_dockerignore_matcher_follows_docker(patterns: str, path: str, expected: bool) -> None:
    """The matcher the checks below rely on, against cases with known Docker answers."""
    assert ignored(load_dockerignore(patterns), path) is expected


def _context_files(directory: Path) -> Iterator[str]:
    for path in sorted(directory.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            yield path.relative_to(REPO).as_posix()


def test_copy_sources_exist_and_survive_dockerignore(
    dockerfile: list[Stage], dockerignore: list[IgnorePattern]
) -> None:
    copied: set[str] = set()
    for stage in dockerfile:
        for instruction in stage.all("COPY") + stage.all("ADD"):
            if "from" in instruction.flags:
                continue
            sources = (instruction.exec_form or instruction.args.split())[:-1]
            for source in sources:
                path = REPO / source
                assert path.exists(), f"line {instruction.line}: COPY {source}: no such file"
                relative = path.relative_to(REPO).as_posix()
                assert not ignored(dockerignore, relative), f"{source} is in .dockerignore"
                copied.add(relative)
                if path.is_dir():
                    for name in _context_files(path):
                        assert not ignored(dockerignore, name), f"{name} is in .dockerignore"
    # What `pip wheel .` reads: the project file, its readme, the package.
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert {"pyproject.toml", project["readme"], "sfu"} <= copied


@pytest.mark.parametrize(
    "path",
    [
        "tests/deploy/test_dockerignore.py",
        "tests/conftest.py",
        "bench/forwarding.py",
        ".git/HEAD",
        ".venv/bin/python",
        "sfu/__pycache__/app.cpython-311.pyc",
        "config/sfu.toml",
        "Dockerfile",
    ],
)
def test_dockerignore_keeps_out(dockerignore: list[IgnorePattern], path: str) -> None:
    assert ignored(dockerignore, path)
