"""A pod of the manifests as it would start on a node, without a cluster: its containers'
environment made the way the kubelet makes it, and the public-ip init container's script run on
a made-up Node object.

The checks load the SFU's settings from exactly what a pod would get, so a value that only
works once the cluster fills it in (a `$(VAR)` reference, a fieldRef, a key of another
ConfigMap) is checked as the SFU would see it.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.deploy import settings_view

Doc = dict[str, Any]

NODE_ADDRESS = "10.0.10.5"
"""The node's primary (VCN) address; with hostNetwork also the pod's."""
PUBLIC_ADDRESS = "203.0.113.7"
"""The node's public address (its ExternalIP)."""

FIELDS = {
    "metadata.name": "sfu-7d9c4b8f6-abcde",
    "spec.nodeName": NODE_ADDRESS,  # OKE names nodes by their private address
    "status.hostIP": NODE_ADDRESS,
    "status.podIP": NODE_ADDRESS,  # hostNetwork
}
"""What the downward API gives such a pod."""
SECRETS = {"SFU_JWT_SECRET": "x" * 64, "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}
"""Stand-ins for the values the pods take from Secrets, by environment variable."""

_REFERENCE = re.compile(r"\$\$|\$\((\w+)\)")


def expand(value: str, defined: Mapping[str, str]) -> str:
    """The kubelet's `$(VAR)` expansion: a variable defined before (envFrom, then the earlier
    `env` entries) is replaced, `$$` is a literal `$`, any other reference stays as written."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name is None:
            return "$"
        return defined.get(name, match.group(0))

    return _REFERENCE.sub(replace, value)


def config_maps(docs: Iterable[Doc]) -> dict[str, dict[str, str]]:
    """ConfigMap name → its data."""
    return {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}


def container_env(
    container: Doc, maps: Mapping[str, Mapping[str, str]], **overrides: str
) -> dict[str, str]:
    """The container's environment: envFrom first, then `env` in order (each may refer to what
    came before it), then `overrides` (say, a file another container writes: here, one the test
    wrote)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(maps[source["configMapRef"]["name"]])
    for entry in container.get("env", []):
        name = entry["name"]
        if "value" in entry:
            env[name] = expand(entry["value"], env)
            continue
        ref = entry["valueFrom"]
        if "fieldRef" in ref:
            env[name] = FIELDS[ref["fieldRef"]["fieldPath"]]
        elif "configMapKeyRef" in ref:
            env[name] = maps[ref["configMapKeyRef"]["name"]][ref["configMapKeyRef"]["key"]]
        elif "secretKeyRef" in ref:
            env[name] = SECRETS[name]
        else:
            raise AssertionError(f"{container['name']}: {name}: {sorted(ref)}")
    env.update(overrides)
    return env


def load_settings(
    container: Doc,
    maps: Mapping[str, Mapping[str, str]],
    monkeypatch: pytest.MonkeyPatch,
    **overrides: str,
) -> settings_view.Settings:
    """The settings the container's process would load (the caller has cleared the
    environment: the `clean_env` fixture)."""
    for name, value in container_env(container, maps, **overrides).items():
        monkeypatch.setenv(name, value)
    return settings_view.load()


def node(labels: Mapping[str, str] | None = None, external_ip: str | None = PUBLIC_ADDRESS) -> Doc:
    """A Node object as the API server returns it for an OKE worker."""
    addresses = [{"type": "InternalIP", "address": NODE_ADDRESS}]
    if external_ip:
        addresses.append({"type": "ExternalIP", "address": external_ip})
    return {
        "metadata": {"name": NODE_ADDRESS, "labels": dict(labels or {})},
        "status": {"addresses": addresses},
    }


def public_ip_script(maps: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
    """The init container's script (ConfigMap sfu-public-ip), loaded as a module namespace."""
    source = maps["sfu-public-ip"]["find_public_ip.py"]
    namespace: dict[str, Any] = {"__name__": "find_public_ip"}
    exec(compile(source, "find_public_ip.py", "exec"), namespace)
    return namespace


def run_init_container(
    init: Doc,
    maps: Mapping[str, Mapping[str, str]],
    node_doc: Doc,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Path:
    """Run the init container's script as its command line says, with its environment, on
    `node_doc` (the API call stood in for); return the settings file it wrote, kept in
    `tmp_path` under the file name the pod would use."""
    script = public_ip_script(maps)
    interpreter, script_path, target = init["command"]
    assert interpreter == "python" and script_path.endswith("/find_public_ip.py")
    written = tmp_path / Path(target).name
    script["fetch_node"] = lambda name: node_doc if name == node_doc["metadata"]["name"] else {}
    with monkeypatch.context() as patch:
        for name, value in container_env(init, maps).items():
            patch.setenv(name, value)
        patch.setattr(sys, "argv", [script_path, str(written)])
        script["main"]()
    return written


def sfu_settings(
    pod: Doc,
    maps: Mapping[str, Mapping[str, str]],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    node_doc: Doc | None = None,
) -> settings_view.Settings:
    """The SFU container's settings on a node (`node()` unless given): its init container runs
    first and writes the settings file the container names in SFU_CONFIG_FILE."""
    (init,) = pod["initContainers"]
    (container,) = [c for c in pod["containers"] if c["name"] == "sfu"]
    written = run_init_container(init, maps, node_doc or node(), monkeypatch, tmp_path)
    return load_settings(
        container, maps, monkeypatch, **{settings_view.CONFIG_FILE_ENV: str(written)}
    )
