"""The k8s/ manifests, loaded once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from tests.deploy import REPO

K8S = REPO / "k8s"
KUBERNETES_VERSION = "1.30"
"""The oldest Kubernetes minor OKE still supports that kubernetes-validate bundles."""

NAMESPACE = "cotept"
HOST = "sfu.cotept.com"
REGISTRY = "ocir.ap-seoul-1.oci.oraclecloud.com/cotept/"

Doc = dict[str, Any]


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


def _env_names(container: Doc) -> set[str]:
    return {entry["name"] for entry in container.get("env", [])}
