"""Deployment files: the Dockerfile (checked without a Docker engine) and the k8s/ manifests.

The Dockerfile is read by a small parser below (instructions, flags, JSON arguments, line
continuations); `.dockerignore` by a matcher with Docker's rules. Every manifest under k8s/ is
validated offline by kubernetes-validate in strict mode (unknown fields are errors), then
cross-checked against `sfu.settings.Settings`: ports, probes, env names, drain timeout.
"""

from __future__ import annotations

import copy
import http.server
import importlib
import importlib.metadata
import json
import os
import re
import shlex
import socket
import struct
import subprocess
import sys
import sysconfig
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from packaging.requirements import Requirement

from sfu.cli import main as sfu_main
from sfu.settings import Settings, SettingsError, load_settings

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
KUBERNETES_VERSION = "1.30"
"""The oldest Kubernetes minor OKE still supports that kubernetes-validate bundles."""

NAMESPACE = "cotept"
HOST = "sfu.cotept.com"
REGISTRY = "ocir.ap-seoul-1.oci.oraclecloud.com/cotept/"

Doc = dict[str, Any]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No SFU_* / REDIS_URL from outside and no config/sfu.toml of the checkout."""
    for name in list(os.environ):
        if name.startswith("SFU_") or name == "REDIS_URL":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def defaults(clean_env: Path) -> Settings:
    return Settings()


def _env_name(field_name: str) -> str:
    return "REDIS_URL" if field_name == "redis_url" else f"SFU_{field_name.upper()}"


SETTING_ENV_NAMES = frozenset(_env_name(name) for name in Settings.model_fields)
"""SFU_<FIELD> for every field, REDIS_URL for redis_url."""
CONFIG_FILE_ENV = "SFU_CONFIG_FILE"
"""Not a field: sfu/settings.py reads it to find the settings file."""


# --- a Dockerfile parser -----------------------------------------------------------------------

KEYWORDS = frozenset(
    {
        *("ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK"),
        *("LABEL", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"),
    }
)
JSON_FORM = frozenset({"CMD", "ENTRYPOINT", "RUN", "SHELL", "COPY", "ADD", "VOLUME"})


@dataclass
class Instruction:
    keyword: str
    flags: dict[str, str]
    args: str
    line: int
    exec_form: list[str] | None = None
    """The JSON array form's words, when the arguments are one."""


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert found, f"stage {self.name or self.base} has no {keyword}"
        return found[-1]


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Join backslash continuations; drop comments and blank lines (also inside a
    continuation, as Docker does)."""
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        yield start, " ".join(part for part in pending if part)
        pending = []
    assert not pending, f"line {start}: continuation runs past the end of the file"


def _split_flags(rest: str) -> tuple[dict[str, str], str]:
    flags: dict[str, str] = {}
    while rest.startswith("--"):
        word, _, rest = rest.partition(" ")
        name, _, value = word[2:].partition("=")
        flags[name] = value
        rest = rest.lstrip()
    return flags, rest


def _json_words(keyword: str, args: str, line: int) -> list[str] | None:
    if not args.startswith("["):
        return None
    try:
        words = json.loads(args)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"line {line}: {keyword} looks like JSON but is not: {exc}") from None
    assert isinstance(words, list) and all(isinstance(w, str) for w in words), line
    return words


def parse_dockerfile(text: str) -> list[Instruction]:
    instructions = []
    for line, logical in _logical_lines(text):
        keyword, _, rest = logical.partition(" ")
        keyword = keyword.upper()
        assert keyword in KEYWORDS, f"line {line}: unknown instruction {keyword}"
        flags, args = _split_flags(rest.strip())
        instruction = Instruction(keyword, flags, args, line)
        if keyword in JSON_FORM:
            instruction.exec_form = _json_words(keyword, args, line)
        elif keyword == "HEALTHCHECK":
            sub, _, cmd = args.partition(" ")
            assert sub.upper() in ("CMD", "NONE"), f"line {line}: HEALTHCHECK {sub}"
            instruction.exec_form = _json_words("HEALTHCHECK CMD", cmd.strip(), line)
        instructions.append(instruction)
    return instructions


def stages_of(instructions: list[Instruction]) -> list[Stage]:
    stages: list[Stage] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            words = instruction.args.split()
            assert len(words) in (1, 3), f"line {instruction.line}: FROM {instruction.args}"
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        else:
            assert stages or instruction.keyword == "ARG", "only ARG may come before FROM"
            if stages:
                stages[-1].instructions.append(instruction)
    return stages


def env_of(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in stage.all("ENV"):
        for word in shlex.split(instruction.args):
            name, sep, value = word.partition("=")
            assert sep, f"line {instruction.line}: use ENV NAME=value, not the legacy form"
            env[name] = value
    return env


@pytest.fixture(scope="module")
def dockerfile() -> list[Stage]:
    return stages_of(parse_dockerfile((REPO / "Dockerfile").read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def final(dockerfile: list[Stage]) -> Stage:
    return dockerfile[-1]


# --- .dockerignore, with Docker's rules ----------------------------------------------------------


@dataclass(frozen=True)
class IgnorePattern:
    regex: re.Pattern[str]
    exclusion: bool


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i + 1)
            body = pattern[i + 1 : end]
            out += "[" + ("^" + body[1:] if body.startswith("!") else body) + "]"
            i = end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def load_dockerignore(text: str) -> list[IgnorePattern]:
    patterns = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exclusion = line.startswith("!")
        line = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        patterns.append(IgnorePattern(_pattern_regex(line), exclusion))
    return patterns


def ignored(patterns: list[IgnorePattern], path: str) -> bool:
    """moby/patternmatcher's MatchesOrParentMatches: the last pattern that matches the path or
    one of its parent directories decides."""
    parts = path.split("/")
    parents = ["/".join(parts[: i + 1]) for i in range(len(parts) - 1)]
    matched = False
    for pattern in patterns:
        if pattern.exclusion != matched:
            continue
        hit = bool(pattern.regex.match(path)) or any(pattern.regex.match(p) for p in parents)
        if hit:
            matched = not pattern.exclusion
    return matched


@pytest.fixture(scope="module")
def dockerignore() -> list[IgnorePattern]:
    return load_dockerignore((REPO / ".dockerignore").read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("patterns", "path", "expected"),
    [
        ("*\n!sfu/\n**/__pycache__", "sfu/app.py", False),
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


# --- Dockerfile -----------------------------------------------------------------------------------


def test_dockerfile_parses(dockerfile: list[Stage]) -> None:
    assert dockerfile, "no FROM"
    for stage in dockerfile:
        for instruction in stage.instructions:
            if instruction.keyword in ("CMD", "ENTRYPOINT", "HEALTHCHECK"):
                assert instruction.exec_form is not None, (
                    f"line {instruction.line}: {instruction.keyword} in shell form: the process "
                    "would run under /bin/sh and SIGTERM would not reach it"
                )


def test_multi_stage_on_one_slim_base(dockerfile: list[Stage], final: Stage) -> None:
    assert len(dockerfile) >= 2
    assert re.fullmatch(r"python:3\.11-slim(-bookworm)?", final.base), final.base
    # The venv copied from the build stage links to the build stage's interpreter.
    assert {stage.base for stage in dockerfile} == {final.base}
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11"


def test_runtime_stage_takes_only_the_venv(dockerfile: list[Stage], final: Stage) -> None:
    earlier = {stage.name for stage in dockerfile[:-1]}
    copies = final.all("COPY") + final.all("ADD")
    assert copies, "the runtime stage copies nothing"
    for instruction in copies:
        assert instruction.keyword == "COPY", f"line {instruction.line}: ADD"
        assert instruction.flags.get("from") in earlier, (
            f"line {instruction.line}: the runtime stage copies from the build context"
        )
        assert instruction.args.split() == ["/opt/venv", "/opt/venv"]
    for run in final.all("RUN"):
        assert not re.search(r"apt-get|apt |pip |gcc|build-essential|make ", run.args), (
            f"line {run.line}: the runtime stage installs or builds something: {run.args}"
        )
    build_runs = " ".join(r.args for stage in dockerfile[:-1] for r in stage.all("RUN"))
    assert "pip wheel" in build_runs and "/opt/venv/bin/pip install" in build_runs
    assert "[test]" not in build_runs, "test extras do not belong in the image"


def test_runtime_user_is_fixed_and_not_root(final: Stage) -> None:
    user = final.last("USER").args
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0, f"USER {user}: runAsNonRoot needs a numeric UID"
    assert not gid or (gid.isdigit() and int(gid) != 0)
    # Nothing after USER switches back.
    assert final.instructions.index(final.last("USER")) > max(
        final.instructions.index(i) for i in final.all("RUN")
    )


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
        "tests/unit/test_deploy.py",
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


def _port_spec(spec: str) -> tuple[int, int, str]:
    ports, _, protocol = spec.partition("/")
    low, _, high = ports.partition("-")
    return int(low), int(high or low), protocol or "tcp"


def test_expose_matches_settings(final: Stage, defaults: Settings) -> None:
    exposed = {_port_spec(word) for e in final.all("EXPOSE") for word in e.args.split()}
    assert exposed == {
        (defaults.http_port, defaults.http_port, "tcp"),
        (defaults.stun_port, defaults.stun_port, "udp"),
        (defaults.rtc_port_min, defaults.rtc_port_max, "udp"),
    }
    assert (defaults.http_port, defaults.stun_port) == (8080, 3478)
    assert (defaults.rtc_port_min, defaults.rtc_port_max) == (50000, 50200)


def test_container_env_defaults_are_settings(
    final: Stage, defaults: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = env_of(final)
    assert env["SFU_HTTP_HOST"] == "0.0.0.0"
    assert env["SFU_LOG_JSON"] == "true"
    assert env["PATH"].startswith("/opt/venv/bin:")
    for name, value in env.items():
        if name.startswith("SFU_"):
            assert name in SETTING_ENV_NAMES, f"ENV {name} is no setting"
            monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.http_host == "0.0.0.0" and settings.log_json is True
    assert settings.http_port == defaults.http_port


class _Health(http.server.BaseHTTPRequestHandler):
    status = {"/health": 200}

    def do_GET(self) -> None:
        self.send_response(self.status.get(self.path, 404))
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _run_healthcheck(command: list[str], port: int) -> int:
    assert command[0] == "python"
    env = {**os.environ, "SFU_HTTP_PORT": str(port)}
    done = subprocess.run([sys.executable, *command[1:]], env=env, capture_output=True, timeout=20)
    return done.returncode


def test_healthcheck_asks_health_on_the_http_port(final: Stage, defaults: Settings) -> None:
    check = final.last("HEALTHCHECK")
    command = check.exec_form
    assert command is not None and command[:2] == ["python", "-c"]
    assert "curl" not in check.args and "wget" not in check.args
    code = command[2]
    assert "/health" in code
    default_port = re.search(r"SFU_HTTP_PORT['\"], ['\"](\d+)['\"]", code)
    assert default_port and int(default_port.group(1)) == defaults.http_port
    assert {"interval", "timeout", "retries"} <= set(check.flags)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert _run_healthcheck(command, port) == 0
        _Health.status = {"/health": 503}
        assert _run_healthcheck(command, port) == 1
    finally:
        _Health.status = {"/health": 200}
        server.shutdown()
        server.server_close()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    assert _run_healthcheck(command, closed_port) == 1


def test_entrypoint_is_the_console_script(final: Stage, capsys: pytest.CaptureFixture[str]) -> None:
    entrypoint = final.last("ENTRYPOINT").exec_form
    cmd = final.last("CMD").exec_form
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert entrypoint == ["sfu"] and "sfu" in scripts
    module, _, attribute = scripts["sfu"].partition(":")
    target = getattr(importlib.import_module(module), attribute)
    assert target is sfu_main
    assert cmd == ["serve"]
    with pytest.raises(SystemExit) as exited:  # `serve` is a subcommand it knows
        sfu_main([*cmd, "--help"])
    assert exited.value.code == 0
    assert "usage: sfu serve" in capsys.readouterr().out


# --- what the runtime stage must hold: the wheel's dependencies and nothing from Debian ----------


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _dependency_closure(root: str) -> set[str]:
    """The installed distributions `pip install <root>` brings, root included."""
    seen: set[str] = set()
    todo = [root]
    while todo:
        name = _normal(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        for line in importlib.metadata.requires(name) or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return seen


RUNTIME_IMPORTS = """
import json, sys
before = set(sys.modules)
import sfu.cli, sfu.server, redis.asyncio, uvloop
from sfu.app import create_app
from sfu.settings import Settings
create_app(Settings(node_id="image-check"))
new = (sys.modules[name] for name in set(sys.modules) - before)
files = {m.__name__: f for m in new if (f := getattr(m, "__file__", None))}
print(json.dumps(sorted(files.items())))
"""


def _installed_by(names: set[str]) -> set[Path]:
    """Every file these distributions installed."""
    files = set()
    for name in names:
        dist = importlib.metadata.distribution(name)
        files |= {Path(str(dist.locate_file(file))).resolve() for file in dist.files or []}
    return files


def test_runtime_imports_come_from_the_wheels_dependencies(clean_env: Path) -> None:
    """The image installs the wheel's dependencies only: every module `sfu serve` loads must
    come from the standard library, the project, or one of those (not, say, numpy from the
    test extras)."""
    done = subprocess.run(
        [sys.executable, "-c", RUNTIME_IMPORTS],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=clean_env,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr
    loaded: list[tuple[str, str]] = json.loads(done.stdout.strip().splitlines()[-1])
    allowed = _installed_by(_dependency_closure("cotept-sfu") - {"cotept-sfu"})
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    strays: dict[str, str] = {}
    for module, file in loaded:
        path = Path(file).resolve()
        from_stdlib = path.is_relative_to(stdlib) and "site-packages" not in path.parts
        if not (from_stdlib or path.is_relative_to(REPO / "sfu") or path in allowed):
            strays.setdefault(module.partition(".")[0], file)
    assert len(loaded) > 100, "the import probe saw nothing"
    assert not strays, f"loaded by `sfu serve`, not from a dependency of the wheel: {strays}"


SLIM_BASE_LIBRARIES = re.compile(
    r"(ld-linux[-\w.]*|libc|libm|libmvec|libdl|libpthread|librt|libutil|libresolv"
    r"|libgcc_s|libstdc\+\+|libz)\.so(\.[\d.]+)?"
)
"""Shared libraries python:3.11-slim-bookworm has without an apt-get (glibc, libgcc-s1,
libstdc++6 and zlib1g come with debian:bookworm-slim)."""


def _needed(path: Path) -> list[str]:
    """The DT_NEEDED entries of a 64-bit little-endian ELF file (x86_64, aarch64)."""
    with path.open("rb") as elf:
        header = elf.read(64)
        assert header[:4] == b"\x7fELF" and header[4:6] == b"\x02\x01", f"{path}: not ELF64 LE"
        shoff, (shentsize, shnum) = (
            struct.unpack_from("<Q", header, 0x28)[0],
            struct.unpack_from("<HH", header, 0x3A),
        )
        elf.seek(shoff)
        table = elf.read(shentsize * shnum)
        sections = [struct.unpack_from("<IIQQQQIIQQ", table, i * shentsize) for i in range(shnum)]

        def read(index: int) -> bytes:
            elf.seek(sections[index][4])
            return elf.read(sections[index][5])

        names = []
        for number, section in enumerate(sections):
            if section[1] != 6:  # SHT_DYNAMIC
                continue
            dynamic, strings = read(number), read(section[6])
            for tag, value in struct.iter_unpack("<qQ", dynamic):
                if tag == 1:  # DT_NEEDED
                    names.append(strings[value : strings.index(b"\0", value)].decode())
        return names


def test_native_extensions_need_nothing_beyond_the_slim_base() -> None:
    """Every shared object the wheel's dependencies install needs only libraries they bundle
    (manylinux `*.libs/`) or the slim base's: the runtime stage needs no apt-get."""
    missing: dict[str, set[str]] = {}
    checked = 0
    for name in sorted(_dependency_closure("cotept-sfu")):
        dist = importlib.metadata.distribution(name)
        objects = [f for f in dist.files or [] if re.search(r"\.so(\.[\d.]+)?$", f.name)]
        bundled = {f.name for f in objects if f.parts[0].endswith(".libs")}
        for file in objects:
            checked += 1
            for library in _needed(Path(str(dist.locate_file(file)))):
                if library not in bundled and not SLIM_BASE_LIBRARIES.fullmatch(library):
                    missing.setdefault(library, set()).add(f"{name}: {file}")
    assert checked > 10, "no shared objects found: is the project installed?"
    assert not missing, f"libraries the slim base lacks: {missing}"


# --- k8s/ ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Manifest:
    path: str
    doc: Doc

    @property
    def key(self) -> tuple[str, str]:
        return self.doc["kind"], self.doc["metadata"]["name"]


def _load_manifests() -> list[Manifest]:
    manifests = []
    for path in sorted(K8S.rglob("*.y*ml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc is not None:
                manifests.append(Manifest(path.relative_to(REPO).as_posix(), doc))
    return manifests


MANIFESTS = _load_manifests()


def _one(kind: str, name: str) -> Doc:
    found = [m.doc for m in MANIFESTS if m.key == (kind, name)]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


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


def test_manifests_exist() -> None:
    kinds = {m.key for m in MANIFESTS}
    for wanted in [
        ("Namespace", NAMESPACE),
        ("Deployment", "sfu"),
        ("Service", "sfu-service"),
        ("Ingress", "sfu"),
        ("PodDisruptionBudget", "sfu"),
        ("ConfigMap", "sfu-config"),
        ("Secret", "sfu-secrets"),
        ("StatefulSet", "redis"),
        ("Service", "redis-service"),
        ("Deployment", "vod-worker"),
        ("PersistentVolumeClaim", "sfu-recordings"),
        ("StorageClass", "cotept-recordings-fss"),
        ("PriorityClass", "cotept-sfu"),
        ("PriorityClass", "cotept-vod-worker"),
        ("Secret", "vod-storage"),
    ]:
        assert wanted in kinds, wanted


@pytest.mark.parametrize(
    "manifest", MANIFESTS, ids=[f"{m.path}:{m.key[0]}/{m.key[1]}" for m in MANIFESTS]
)
def test_manifest_validates_strictly(manifest: Manifest) -> None:
    try:
        kubernetes_validate.validate(manifest.doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(p) for p in exc.path)
        pytest.fail(f"{manifest.path}: {where}: {exc.message}")
    except kubernetes_validate.SchemaNotFoundError as exc:
        pytest.fail(f"{manifest.path}: {exc.message}")


def test_strict_validation_rejects_unknown_fields(deployment: Doc) -> None:
    """The check above would catch a misspelt field (strict mode is on and bites)."""
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_everything_is_in_the_namespace() -> None:
    cluster_scoped = {
        *("Namespace", "ClusterRole", "ClusterRoleBinding", "StorageClass", "PriorityClass")
    }
    for manifest in MANIFESTS:
        namespace = manifest.doc["metadata"].get("namespace")
        if manifest.key[0] in cluster_scoped:
            assert namespace is None, manifest.path
        else:
            assert namespace == NAMESPACE, f"{manifest.path}: {manifest.key}"


def _ports(container: Doc) -> dict[tuple[int, str], str | None]:
    return {
        (p["containerPort"], p.get("protocol", "TCP")): p.get("name") for p in container["ports"]
    }


def _named_port(container: Doc, port: int | str) -> int:
    if isinstance(port, int):
        return port
    found = [p["containerPort"] for p in container["ports"] if p.get("name") == port]
    assert len(found) == 1, f"no container port named {port}"
    return int(found[0])


def test_container_ports_match_settings(
    container: Doc, pod: Doc, config: dict[str, str], defaults: Settings
) -> None:
    ports = _ports(container)
    expected = {(defaults.http_port, "TCP"), (defaults.stun_port, "UDP")} | {
        (port, "UDP") for port in range(defaults.rtc_port_min, defaults.rtc_port_max + 1)
    }
    assert set(ports) == expected
    assert len(container["ports"]) == len(expected)
    assert ports[(defaults.http_port, "TCP")] == "http"
    assert int(config["SFU_HTTP_PORT"]) == defaults.http_port
    assert int(config["SFU_STUN_PORT"]) == defaults.stun_port
    assert int(config["SFU_RTC_PORT_MIN"]) == defaults.rtc_port_min
    assert int(config["SFU_RTC_PORT_MAX"]) == defaults.rtc_port_max
    # hostNetwork: the ports are the node's; a hostPort, if written, must equal containerPort.
    assert pod["hostNetwork"] is True
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    for port in container["ports"]:
        assert port.get("hostPort", port["containerPort"]) == port["containerPort"]


def test_probes_hit_health_and_ready_on_the_http_port(container: Doc, defaults: Settings) -> None:
    liveness = container["livenessProbe"]["httpGet"]
    readiness = container["readinessProbe"]["httpGet"]
    assert liveness["path"] == "/health"
    assert readiness["path"] == "/ready"
    for probe in (liveness, readiness):
        assert _named_port(container, probe["port"]) == defaults.http_port


def _env_names(container: Doc) -> set[str]:
    return {entry["name"] for entry in container.get("env", [])}


def test_env_names_are_settings(container: Doc, pod: Doc, config: dict[str, str]) -> None:
    allowed = SETTING_ENV_NAMES | {CONFIG_FILE_ENV}
    assert set(config) <= SETTING_ENV_NAMES, set(config) - SETTING_ENV_NAMES
    assert _env_names(container) <= allowed, _env_names(container) - allowed
    assert [s["configMapRef"]["name"] for s in container["envFrom"]] == ["sfu-config"]
    # Env beats the settings file: SFU_PUBLIC_IP anywhere would hide the node's address.
    assert "SFU_PUBLIC_IP" not in set(config) | _env_names(container)
    assert not set(config) & _env_names(container), "set twice"
    for init in pod["initContainers"]:
        assert _env_names(init) <= {"NODE_NAME"}, init["name"]


def _field_ref(container: Doc, name: str) -> str:
    entry = next(e for e in container["env"] if e["name"] == name)
    path: str = entry["valueFrom"]["fieldRef"]["fieldPath"]
    return path


def test_per_pod_values(container: Doc, pod: Doc, config: dict[str, str]) -> None:
    assert _field_ref(container, "SFU_NODE_ID") == "metadata.name"
    assert _field_ref(container, "SFU_RTC_ADDRESSES") == "status.hostIP"
    assert config["SFU_PUBLIC_URL"] == f"https://{HOST}"
    assert config["SFU_STUN_HOST"] == HOST
    init = next(c for c in pod["initContainers"] if c["name"] == "public-ip")
    assert _field_ref(init, "NODE_NAME") == "spec.nodeName"
    # The init container writes the file the SFU reads as its settings file.
    config_file = next(e["value"] for e in container["env"] if e["name"] == CONFIG_FILE_ENV)
    assert init["command"][-1] == config_file
    shared = {m["name"] for m in init["volumeMounts"]} & {
        m["name"] for m in container["volumeMounts"]
    }
    mount = next(m for m in container["volumeMounts"] if m["name"] in shared)
    assert config_file.startswith(mount["mountPath"] + "/")


def test_redis_url_names_the_redis_service(config: dict[str, str]) -> None:
    service = _one("Service", "redis-service")
    statefulset = _one("StatefulSet", "redis")
    assert config["REDIS_URL"] == "redis://redis-service:6379/0"
    assert [p["port"] for p in service["spec"]["ports"]] == [6379]
    assert statefulset["spec"]["serviceName"] == "redis-service"
    labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    redis = statefulset["spec"]["template"]["spec"]["containers"][0]
    assert redis["image"] == "redis:7-alpine"
    assert {p["containerPort"] for p in redis["ports"]} == {6379}
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert claim["metadata"]["name"] in {m["name"] for m in redis["volumeMounts"]}


# --- the public IP script (run here on made-up Node objects) -------------------------------------


@pytest.fixture(scope="module")
def public_ip_script() -> dict[str, Any]:
    source = _one("ConfigMap", "sfu-public-ip")["data"]["find_public_ip.py"]
    namespace: dict[str, Any] = {"__name__": "find_public_ip"}
    exec(compile(source, "find_public_ip.py", "exec"), namespace)
    return namespace


def _node(labels: dict[str, str], addresses: list[tuple[str, str]]) -> Doc:
    return {
        "metadata": {"name": "10.0.10.5", "labels": labels},
        "status": {"addresses": [{"type": t, "address": a} for t, a in addresses]},
    }


def test_public_ip_from_external_ip_or_label(public_ip_script: dict[str, Any]) -> None:
    public_ip = public_ip_script["public_ip"]
    internal = ("InternalIP", "10.0.10.5")
    assert public_ip(_node({}, [internal, ("ExternalIP", "203.0.113.7")])) == "203.0.113.7"
    label = {"sfu.cotept.com/public-ip": "198.51.100.4"}
    assert public_ip(_node(label, [internal, ("ExternalIP", "203.0.113.7")])) == "198.51.100.4"
    with pytest.raises(SystemExit, match=r"kubectl label node 10\.0\.10\.5"):
        public_ip(_node({}, [internal, ("Hostname", "node-a")]))
    with pytest.raises(ValueError):
        public_ip(_node({"sfu.cotept.com/public-ip": "not-an-ip"}, [internal]))


def test_public_ip_file_is_read_by_settings(
    public_ip_script: dict[str, Any],
    container: Doc,
    config: dict[str, str],
    clean_env: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The pod's whole configuration, as the SFU would see it on a node, loads."""
    settings_file = clean_env / "public-ip.toml"
    settings_file.write_text(public_ip_script["settings_text"]("203.0.113.7"), encoding="utf-8")
    for name, value in config.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(CONFIG_FILE_ENV, str(settings_file))
    monkeypatch.setenv("SFU_NODE_ID", "sfu-7d9c-abcde")
    monkeypatch.setenv("SFU_RTC_ADDRESSES", "10.0.10.5")
    monkeypatch.setenv("SFU_JWT_SECRET", "x" * 64)
    settings = load_settings()
    assert settings.public_ip == "203.0.113.7"
    assert settings.rtc_addresses == ("10.0.10.5",)
    assert settings.public_url == f"https://{HOST}"
    assert settings.redis_url == config["REDIS_URL"]
    assert settings.http_port == _named_port(container, "http")


def test_secret_placeholder_is_refused(
    container: Doc, clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No usable secret is committed: the placeholder stops `sfu serve` at start."""
    ref = next(e for e in container["env"] if e["name"] == "SFU_JWT_SECRET")
    ref = ref["valueFrom"]["secretKeyRef"]
    secret = _one("Secret", ref["name"])
    value = secret["stringData"][ref["key"]]
    monkeypatch.setenv("SFU_JWT_SECRET", value)
    with pytest.raises(SettingsError, match="SFU_JWT_SECRET"):
        load_settings()


def test_only_the_init_container_gets_an_api_token(pod: Doc) -> None:
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    token_volumes = {
        v["name"]
        for v in pod["volumes"]
        if any("serviceAccountToken" in s for s in v.get("projected", {}).get("sources", []))
    }
    assert token_volumes
    for c in pod["containers"]:
        assert not token_volumes & {m["name"] for m in c.get("volumeMounts", [])}, c["name"]
    role = _one("ClusterRole", "cotept-sfu-node-reader")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]
    binding = _one("ClusterRoleBinding", "cotept-sfu-node-reader")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": pod["serviceAccountName"], "namespace": NAMESPACE}
    ]


def test_image_and_user_match_the_dockerfile(pod: Doc, final: Stage) -> None:
    uid, _, gid = final.last("USER").args.partition(":")
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == int(uid)
    assert pod["securityContext"]["runAsGroup"] == int(gid or uid)
    images = {c["image"] for c in pod["containers"] + pod["initContainers"]}
    assert len(images) == 1 and images.pop().startswith(REGISTRY)
    (sfu,) = [c for c in pod["containers"] if c["name"] == "sfu"]
    assert "command" not in sfu, "the image's ENTRYPOINT (sfu) must run"
    assert sfu["args"] == final.last("CMD").exec_form


# --- Service, Ingress, rollout ------------------------------------------------------------------


def test_service_selects_the_deployment(deployment: Doc, container: Doc) -> None:
    service = _one("Service", "sfu-service")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    assert port["port"] == 8080
    assert _named_port(container, port["targetPort"]) == Settings.model_fields["http_port"].default
    pdb = _one("PodDisruptionBudget", "sfu")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_ingress_serves_the_host_through_the_service() -> None:
    ingress = _one("Ingress", "sfu")
    service = _one("Service", "sfu-service")
    annotations = ingress["metadata"]["annotations"]
    assert annotations["cert-manager.io/cluster-issuer"] == "letsencrypt-prod"
    assert ingress["spec"]["ingressClassName"] == "nginx"
    # /ws lives as long as a session; the SFU pings every 20 s.
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    (tls,) = ingress["spec"]["tls"]
    assert tls["hosts"] == [HOST] and tls["secretName"]
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == HOST
    (path,) = rule["http"]["paths"]
    assert (path["path"], path["pathType"]) == ("/", "Prefix")
    backend = path["backend"]["service"]
    assert backend["name"] == service["metadata"]["name"]
    (port,) = service["spec"]["ports"]
    assert backend["port"] in ({"number": port["port"]}, {"name": port["name"]})


def test_grace_period_outlasts_the_drain(pod: Doc, config: dict[str, str]) -> None:
    """SIGTERM drains for up to SFU_DRAIN_TIMEOUT_S, then closes rooms and exits; the kubelet
    must not SIGKILL before that (10 s margin for closing rooms and the webhook flush)."""
    drain = float(
        config.get("SFU_DRAIN_TIMEOUT_S", Settings.model_fields["drain_timeout_s"].default)
    )
    assert pod["terminationGracePeriodSeconds"] >= drain + 10


def test_two_replicas_one_per_node_rolled_one_at_a_time(deployment: Doc, pod: Doc) -> None:
    assert deployment["spec"]["replicas"] == 2
    strategy = deployment["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"] == {"maxUnavailable": 1, "maxSurge": 0}
    (term,) = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert term["labelSelector"]["matchLabels"].items() <= labels.items()


# --- the VOD worker -----------------------------------------------------------------------------

SESSION_S = 3600
"""The longest session the worker's grace period is sized for."""
RENDER_SPEED = 2.4
"""The worker's measured speed, times real time (docs/benchmarks.md, `bench/vod`)."""
SECRET_ENV = {"SFU_JWT_SECRET": "x" * 64, "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}
"""Stand-ins for the values the pods take from Secrets."""


@pytest.fixture(scope="module")
def worker_deployment() -> Doc:
    return _one("Deployment", "vod-worker")


@pytest.fixture(scope="module")
def worker_pod(worker_deployment: Doc) -> Doc:
    spec: Doc = worker_deployment["spec"]["template"]["spec"]
    return spec


@pytest.fixture(scope="module")
def worker(worker_pod: Doc) -> Doc:
    (found,) = worker_pod["containers"]
    assert found["name"] == "vod-worker"
    return found  # type: ignore[no-any-return]


def _pod_settings(container: Doc, monkeypatch: pytest.MonkeyPatch, **files: str) -> Settings:
    """The settings a container would load: its ConfigMaps, then its own env (fieldRefs and
    Secrets stood in for)."""
    for source in container.get("envFrom", []):
        for name, value in _one("ConfigMap", source["configMapRef"]["name"])["data"].items():
            monkeypatch.setenv(name, value)
    for entry in container.get("env", []):
        name = entry["name"]
        if name in files:  # a file another container writes: here, one the test wrote
            monkeypatch.setenv(name, files[name])
        elif "value" in entry:
            monkeypatch.setenv(name, entry["value"])
        elif "secretKeyRef" in entry["valueFrom"]:
            monkeypatch.setenv(name, SECRET_ENV[name])
        else:
            monkeypatch.setenv(name, "10.0.10.5" if name == "SFU_RTC_ADDRESSES" else "pod-x")
    return load_settings()


def _mounts(container: Doc, pod: Doc) -> dict[str, Doc]:
    """mountPath → the pod volume mounted there."""
    volumes = {v["name"]: v for v in pod["volumes"]}
    return {m["mountPath"]: volumes[m["name"]] for m in container.get("volumeMounts", [])}


def _on_volume(path: Path, container: Doc, pod: Doc) -> Doc:
    """The volume holding `path` in the container (the deepest mount above it)."""
    above = [m for m in _mounts(container, pod) if path.is_relative_to(m)]
    assert above, f"{path} is on the container's read-only root filesystem"
    return _mounts(container, pod)[max(above, key=len)]


def test_vod_worker_runs_sfu_vod_worker(
    worker: Doc, container: Doc, final: Stage, capsys: pytest.CaptureFixture[str]
) -> None:
    assert worker["image"] == container["image"] and worker["image"].startswith(REGISTRY)
    assert "command" not in worker, "the image's ENTRYPOINT (sfu) must run, as PID 1"
    assert final.last("ENTRYPOINT").exec_form + worker["args"] == ["sfu", "vod-worker"]
    with pytest.raises(SystemExit) as exited:
        sfu_main([*worker["args"], "--help"])
    assert exited.value.code == 0
    assert "usage: sfu vod-worker" in capsys.readouterr().out


def test_recordings_are_one_volume_at_the_same_path(
    worker: Doc,
    worker_pod: Doc,
    container: Doc,
    pod: Doc,
    clean_env: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Both pods resolve SFU_RECORDINGS_DIR to the same path, and mount the same ReadWriteMany
    claim exactly there; the worker's scratch folder is on a pod-local emptyDir."""
    config_file = clean_env / "public-ip.toml"
    config_file.write_text('public_ip = "203.0.113.7"\n', encoding="utf-8")
    with monkeypatch.context() as env:
        sfu = _pod_settings(container, env, SFU_CONFIG_FILE=str(config_file))
    with monkeypatch.context() as env:
        vod = _pod_settings(worker, env)
    assert sfu.recordings_root == vod.recordings_root
    assert sfu.recordings_root.is_absolute()
    claims = set()
    for c, p in ((container, pod), (worker, worker_pod)):
        volume = _mounts(c, p).get(str(sfu.recordings_root))
        assert volume is not None, f"{c['name']}: nothing mounted at {sfu.recordings_root}"
        claims.add(volume["persistentVolumeClaim"]["claimName"])
        mount = next(m for m in c["volumeMounts"] if m["mountPath"] == str(sfu.recordings_root))
        assert not mount.get("readOnly"), c["name"]
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
    (claim_name,) = claims
    claim = _one("PersistentVolumeClaim", claim_name)
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    storage_class = _one("StorageClass", claim["spec"]["storageClassName"])
    assert storage_class["provisioner"] == "fss.csi.oraclecloud.com"
    assert storage_class["reclaimPolicy"] == "Retain"
    # What each process writes outside the recordings is on a writable pod-local volume.
    scratch = _on_volume(vod.data_dir / "vod-work", worker, worker_pod)
    assert "emptyDir" in scratch
    for c, p in ((container, pod), (worker, worker_pod)):
        assert "emptyDir" in _on_volume(Path("/tmp"), c, p)


async def test_vod_worker_shares_settings_and_queue(
    worker: Doc,
    container: Doc,
    config: dict[str, str],
    clean_env: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Same ConfigMap, same Redis stream and consumer group, same webhook secret; the storage
    key comes from a Secret; the worker's own env names are settings or boto3's."""
    from sfu.recording.handoff import queue_from_settings
    from sfu.storage import StorageError, open_store, store_from_settings
    from sfu.storage.s3 import S3Store

    assert worker["envFrom"] == container["envFrom"]
    assert config["REDIS_URL"].startswith("redis://")
    aws = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"}
    assert _env_names(worker) <= SETTING_ENV_NAMES | aws, _env_names(worker) - SETTING_ENV_NAMES
    assert not set(config) & _env_names(worker), "set twice"
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in worker["env"] if "valueFrom" in e}
    sfu_ref = next(e for e in container["env"] if e["name"] == "SFU_JWT_SECRET")
    assert refs["SFU_JWT_SECRET"] == sfu_ref["valueFrom"]["secretKeyRef"]
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        secret = _one("Secret", refs[name]["name"])
        assert refs[name]["key"] in secret["stringData"]
        assert secret["stringData"][refs[name]["key"]] == "", "a real key is committed"
    config_file = clean_env / "public-ip.toml"
    config_file.write_text('public_ip = "203.0.113.7"\n', encoding="utf-8")
    with monkeypatch.context() as env:
        sfu = _pod_settings(container, env, SFU_CONFIG_FILE=str(config_file))
    with monkeypatch.context() as env:
        vod = _pod_settings(worker, env)
        queues = [queue_from_settings(vod), queue_from_settings(sfu)]
        try:
            assert {type(q).__name__ for q in queues} == {"RedisJobQueue"}
            assert repr(queues[0]) == repr(queues[1])  # stream and group
            assert queues[0].max_attempts == queues[1].max_attempts
        finally:
            for queue in queues:
                await queue.close()
        # The endpoint names the tenancy's namespace: the placeholder stops the worker at
        # start instead of failing every upload; filled in, it is an S3 store on the bucket.
        assert vod.storage_url and vod.s3_endpoint and "<namespace>" in vod.s3_endpoint
        with pytest.raises(StorageError):
            store_from_settings(vod)
        store = open_store(
            vod.storage_url, endpoint=vod.s3_endpoint.replace("<namespace>", "axaxnpcrorw5")
        )
        assert isinstance(store, S3Store) and store.bucket == "cotept-vod"
        await store.close()


def test_vod_worker_yields_the_cpu_to_the_sfu(
    worker: Doc, worker_pod: Doc, pod: Doc, worker_deployment: Doc
) -> None:
    resources = worker["resources"]
    request = float(resources["requests"]["cpu"])
    limit = float(resources["limits"]["cpu"])
    assert 1 <= request <= limit <= 2, "x264 needs a core; more than 2 would crowd an SFU node"
    assert resources["limits"]["memory"] and resources["requests"]["memory"]
    sfu_class = _one("PriorityClass", pod["priorityClassName"])
    worker_class = _one("PriorityClass", worker_pod["priorityClassName"])
    assert worker_class["value"] < sfu_class["value"]
    assert worker_class["preemptionPolicy"] == "Never"
    assert not sfu_class["globalDefault"] and not worker_class["globalDefault"]
    (avoid_sfu, *_) = worker_pod["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    assert avoid_sfu["podAffinityTerm"]["labelSelector"]["matchLabels"] == {"app": "sfu"}
    assert avoid_sfu["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    labels = worker_deployment["spec"]["template"]["metadata"]["labels"]
    assert worker_deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert labels.get("app") != "sfu", "the SFU's Service and PDB would select the worker"


def test_vod_worker_finishes_its_job_on_sigterm(
    worker_pod: Doc, worker_deployment: Doc, config: dict[str, str]
) -> None:
    """SIGTERM lets the job in hand finish: the grace period covers rendering a SESSION_S
    session at the measured speed, and a rollout starts the new pod before stopping the old."""
    grace = worker_pod["terminationGracePeriodSeconds"]
    assert grace >= SESSION_S / RENDER_SPEED
    poll = float(config.get("SFU_VOD_POLL_S", Settings.model_fields["vod_poll_s"].default))
    assert grace > poll + 10
    strategy = worker_deployment["spec"]["strategy"]
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0


def test_vod_worker_is_unprivileged(worker: Doc, worker_pod: Doc, final: Stage) -> None:
    uid, _, gid = final.last("USER").args.partition(":")
    context = worker_pod["securityContext"]
    assert context["runAsNonRoot"] is True
    assert (context["runAsUser"], context["runAsGroup"]) == (int(uid), int(gid or uid))
    assert context["seccompProfile"]["type"] == "RuntimeDefault"
    assert worker_pod["automountServiceAccountToken"] is False
    assert not worker_pod.get("hostNetwork") and not worker_pod.get("hostPID")
    assert not any("hostPath" in v for v in worker_pod["volumes"])
    security = worker["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
