"""The kustomize base (k8s/Kustomization) and the environments built on it
(deploy/overlays/dev for sfu-dev.cotept.com, deploy/overlays/staging for sfu-staging.cotept.com),
rendered by kustomize itself and checked like the production manifests: strict validation, the
namespace, every host name, and exactly what each overlay changes."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy import REPO, kustomize, pods, settings_view
from tests.deploy.manifests import HOST, K8S, KUBERNETES_VERSION, MANIFESTS, NAMESPACE, Doc

OVERLAYS = REPO / "deploy" / "overlays"
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "StorageClass", "PriorityClass"}
NODE_READER = "cotept-sfu-node-reader"
LABEL_KEYS = ("sfu.cotept.com/public-ip", "sfu.cotept.com/public-host")
"""Node label keys: named after the production host, the same in every environment."""
_HOST = re.compile(r"(?<![\w.-])(?:[a-z0-9-]+\.)*cotept\.com(?![\w-])")


@dataclass(frozen=True)
class Environment:
    name: str
    front_end: str
    """The environment's web front end (the design's dev.cotept.com, staging.cotept.com)."""

    @property
    def namespace(self) -> str:
        return f"{NAMESPACE}-{self.name}"

    @property
    def host(self) -> str:
        return f"sfu-{self.name}.cotept.com"

    @property
    def path(self) -> Path:
        return OVERLAYS / self.name


ENVIRONMENTS = [
    Environment("dev", front_end="dev.cotept.com"),
    Environment("staging", front_end="staging.cotept.com"),
]

CHANGED = {
    "Namespace/cotept": {"metadata.name"},
    f"ClusterRoleBinding/{NODE_READER}": {"metadata.name", "subjects.0.namespace"},
    "Ingress/sfu": {"spec.rules.0.host", "spec.tls.0.hosts.0", "spec.tls.0.secretName"},
    "ConfigMap/sfu-public-ip": {"data.public_url"},
    "ConfigMap/sfu-config": {"data.SFU_STORAGE_URL", "data.SFU_CORS_ORIGINS"},
}
"""Everything an overlay changes in the base, besides every object's namespace."""


@pytest.fixture(scope="module")
def command() -> list[str]:
    return kustomize.require()


@pytest.fixture(scope="module")
def base(command: list[str]) -> list[Doc]:
    return kustomize.build(command, K8S)


@pytest.fixture(scope="module", params=ENVIRONMENTS, ids=[e.name for e in ENVIRONMENTS])
def env(request: pytest.FixtureRequest) -> Environment:
    found: Environment = request.param
    return found


@pytest.fixture(scope="module")
def rendered(command: list[str], env: Environment) -> list[Doc]:
    return kustomize.build(command, env.path)


def _key(doc: Doc) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _hosts(docs: Any) -> set[str]:
    """Every cotept.com host name anywhere in the documents (the node label keys aside)."""
    found: set[str] = set()
    for text in _strings(docs):
        for key in LABEL_KEYS:
            text = text.replace(key, "")
        found |= set(_HOST.findall(text))
    return found


def _diff(a: Any, b: Any, path: str = "") -> Iterator[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(a.keys() | b.keys()):
            where = f"{path}.{key}" if path else str(key)
            if key in a and key in b:
                yield from _diff(a[key], b[key], where)
            else:
                yield where
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            yield from _diff(x, y, f"{path}.{index}")
    elif a != b:
        yield path


def _one(docs: list[Doc], kind: str, name: str) -> Doc:
    (found,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


# --- the base ---------------------------------------------------------------------------------


def test_base_lists_what_kubectl_apply_f_applies() -> None:
    """`kubectl apply -f k8s/` takes k8s/'s .yaml, .yml and .json files (not its folders without
    -R); the base lists exactly those, and none of them is a kustomize file (apply would fail
    on it), which is why the base is `Kustomization`, without an extension."""
    applied = sorted(
        p.name for p in K8S.iterdir() if p.is_file() and p.suffix in {".yaml", ".yml", ".json"}
    )
    kustomization = yaml.safe_load((K8S / "Kustomization").read_text(encoding="utf-8"))
    assert kustomization["kind"] == "Kustomization"
    assert sorted(kustomization["resources"]) == applied
    assert set(kustomization) == {"apiVersion", "kind", "resources"}, "the base changes nothing"
    for manifest in MANIFESTS:
        assert not manifest.doc["apiVersion"].startswith("kustomize."), manifest.path
    assert not list(K8S.glob("**/kustomization.y*ml")), "kubectl apply -f would read it"


def test_base_renders_the_production_manifests(base: list[Doc]) -> None:
    top_level = [m.doc for m in MANIFESTS if m.path.count("/") == 1]
    assert sorted(map(_key, base)) == sorted(map(_key, top_level))
    for doc in top_level:
        assert _one(base, doc["kind"], doc["metadata"]["name"]) == doc, _key(doc)
    assert _hosts(base) == {HOST}


# --- each environment -------------------------------------------------------------------------


def test_overlay_validates_strictly(rendered: list[Doc]) -> None:
    for doc in rendered:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{_key(doc)}: {where}: {exc.message}")


def test_overlay_is_in_its_namespace(rendered: list[Doc], env: Environment) -> None:
    for doc in rendered:
        namespace = doc["metadata"].get("namespace")
        if doc["kind"] in CLUSTER_SCOPED:
            assert namespace is None, _key(doc)
        else:
            assert namespace == env.namespace, _key(doc)
    assert _one(rendered, "Namespace", env.namespace)
    binding = _one(rendered, "ClusterRoleBinding", f"{NODE_READER}-{env.name}")
    (subject,) = binding["subjects"]
    deployment = _one(rendered, "Deployment", "sfu")
    service_account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    assert subject == {
        "kind": "ServiceAccount",
        "name": service_account,
        "namespace": env.namespace,
    }


def test_overlay_changes_only_what_differs(
    rendered: list[Doc], base: list[Doc], env: Environment
) -> None:
    """Same objects as production, the namespace and CHANGED aside: same replicas, strategy,
    grace period, probes, images."""
    renamed = {env.namespace: NAMESPACE, f"{NODE_READER}-{env.name}": NODE_READER}
    by_key = {
        f"{d['kind']}/{renamed.get(d['metadata']['name'], d['metadata']['name'])}": d
        for d in rendered
    }
    assert sorted(by_key) == sorted(map(_key, base))
    changed: dict[str, set[str]] = {}
    for original in base:
        paths = set(_diff(original, by_key[_key(original)])) - {"metadata.namespace"}
        if paths:
            changed[_key(original)] = paths
    assert changed == CHANGED


def test_every_host_is_the_environments(rendered: list[Doc], env: Environment) -> None:
    """No production host name anywhere: the Ingress, its certificate, what the nodes announce,
    the CORS origin are the environment's."""
    assert _hosts(rendered) == {env.host, env.front_end}
    ingress = _one(rendered, "Ingress", "sfu")
    (rule,) = ingress["spec"]["rules"]
    (tls,) = ingress["spec"]["tls"]
    assert rule["host"] == env.host and tls["hosts"] == [env.host]
    production_tls = _one([m.doc for m in MANIFESTS], "Ingress", "sfu")["spec"]["tls"][0]
    assert tls["secretName"] != production_tls["secretName"]


def test_overlay_pods_load_the_environments_settings(
    rendered: list[Doc], env: Environment, clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SFU pod, with the file its init container writes, and the VOD worker, as they would
    start in the environment: no setting names a production host or bucket."""
    maps = pods.config_maps(rendered)
    sfu_pod = _one(rendered, "Deployment", "sfu")["spec"]["template"]["spec"]
    with monkeypatch.context() as patch:
        sfu = pods.sfu_settings(sfu_pod, maps, patch, clean_env)
    assert settings_view.get(sfu, "SFU_PUBLIC_URL") == f"https://{env.host}"
    assert settings_view.get(sfu, "SFU_STUN_HOST") == pods.PUBLIC_ADDRESS
    assert settings_view.get(sfu, "SFU_CORS_ORIGINS") == (f"https://{env.front_end}",)
    worker_pod = _one(rendered, "Deployment", "vod-worker")["spec"]["template"]["spec"]
    (worker,) = worker_pod["containers"]
    with monkeypatch.context() as patch:
        vod = pods.load_settings(worker, maps, patch)
    for settings in (sfu, vod):
        assert settings_view.get(settings, "SFU_STORAGE_URL") == f"s3://cotept-vod-{env.name}"
    assert _hosts([str(v) for v in settings_view.all_values(sfu).values()]) == {
        env.host,
        env.front_end,
    }
    # The worker serves neither STUN nor ws_url: its stun_host is the code's default.
    worker_values = settings_view.all_values(vod)
    del worker_values["SFU_STUN_HOST"]
    assert _hosts([str(v) for v in worker_values.values()]) <= {env.front_end}


def test_environments_can_share_a_cluster(command: list[str]) -> None:
    """Cluster-scoped objects are either the environment's own (the node reader binding) or
    the same in every environment and in production (applying one does not undo another)."""
    docs = [m.doc for m in MANIFESTS if m.path.count("/") == 1]
    renders = {"production": docs} | {
        e.name: kustomize.build(command, e.path) for e in ENVIRONMENTS
    }
    shared: dict[str, Doc] = {}
    bindings = set()
    for docs in renders.values():
        for doc in docs:
            if doc["kind"] == "ClusterRoleBinding":
                bindings.add(doc["metadata"]["name"])
            elif doc["kind"] in CLUSTER_SCOPED - {"Namespace"}:
                assert shared.setdefault(_key(doc), doc) == doc, _key(doc)
    assert len(bindings) == len(renders)
