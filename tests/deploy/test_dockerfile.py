"""The Dockerfile, checked without a Docker engine."""

from __future__ import annotations

import http.server
import importlib
import os
import re
import socket
import subprocess
import sys
import threading
import tomllib
from typing import Any

import pytest

from sfu.cli import main as sfu_main
from tests.deploy import REPO, settings_view
from tests.deploy.dockerfile_stages import Stage, env_of


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
    # the lifecycle job and storage analytics sign OCI requests with the oci SDK (k8s/)
    assert re.search(r"/opt/venv/bin/pip install [^&]*\[oci\]", build_runs), build_runs


def test_runtime_user_is_fixed_and_not_root(final: Stage) -> None:
    user = final.last("USER").args
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0, f"USER {user}: runAsNonRoot needs a numeric UID"
    assert not gid or (gid.isdigit() and int(gid) != 0)
    # Nothing after USER switches back.
    assert final.instructions.index(final.last("USER")) > max(
        final.instructions.index(i) for i in final.all("RUN")
    )


def _port_spec(spec: str) -> tuple[int, int, str]:
    ports, _, protocol = spec.partition("/")
    low, _, high = ports.partition("-")
    return int(low), int(high or low), protocol or "tcp"


def test_expose_matches_settings(final: Stage, defaults: settings_view.Settings) -> None:
    http_port, stun_port, rtc_port_min, rtc_port_max = (
        settings_view.get(defaults, name)
        for name in ("SFU_HTTP_PORT", "SFU_STUN_PORT", "SFU_RTC_PORT_MIN", "SFU_RTC_PORT_MAX")
    )
    exposed = {_port_spec(word) for e in final.all("EXPOSE") for word in e.args.split()}
    assert exposed == {
        (http_port, http_port, "tcp"),
        (stun_port, stun_port, "udp"),
        (rtc_port_min, rtc_port_max, "udp"),
    }
    assert (http_port, stun_port) == (8080, 3478)
    assert (rtc_port_min, rtc_port_max) == (50000, 50200)


def test_container_env_defaults_are_settings(
    final: Stage, defaults: settings_view.Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = env_of(final)
    assert env["SFU_HTTP_HOST"] == "0.0.0.0"
    assert env["SFU_LOG_JSON"] == "true"
    assert env["PATH"].startswith("/opt/venv/bin:")
    for name, value in env.items():
        if name.startswith("SFU_"):
            assert name in settings_view.env_names(), f"ENV {name} is no setting"
            monkeypatch.setenv(name, value)
    settings = settings_view.load()
    assert settings_view.get(settings, "SFU_HTTP_HOST") == "0.0.0.0"
    assert settings_view.get(settings, "SFU_LOG_JSON") is True
    assert settings_view.get(settings, "SFU_HTTP_PORT") == settings_view.get(
        defaults, "SFU_HTTP_PORT"
    )


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


def test_healthcheck_asks_health_on_the_http_port(
    final: Stage, defaults: settings_view.Settings
) -> None:
    check = final.last("HEALTHCHECK")
    command = check.exec_form
    assert command is not None and command[:2] == ["python", "-c"]
    assert "curl" not in check.args and "wget" not in check.args
    code = command[2]
    assert "/health" in code
    default_port = re.search(r"SFU_HTTP_PORT['\"], ['\"](\d+)['\"]", code)
    assert default_port
    assert int(default_port.group(1)) == settings_view.get(defaults, "SFU_HTTP_PORT")
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
