"""Every k8s/ manifest: present, valid in strict mode, in the namespace."""

from __future__ import annotations

import copy

import kubernetes_validate
import pytest

from tests.deploy.manifests import KUBERNETES_VERSION, MANIFESTS, NAMESPACE, Doc, Manifest


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
