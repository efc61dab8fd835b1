"""The storage lifecycle's k8s/ manifests: the nightly CronJob, the analytics service and the
alert rules (checked and unit-tested with promtool)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from sfu.cli import main as sfu_main
from tests.deploy import REPO, pods, settings_view
from tests.deploy.manifests import MANIFESTS, REGISTRY, Doc, _env_names, _one

AWS = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"}
OCI_ENV = {"OCI_RESOURCE_PRINCIPAL_VERSION", "OCI_RESOURCE_PRINCIPAL_REGION"}
"""What the oci SDK's OKE workload-identity signer reads (besides SFU_OCI_AUTH)."""
METRICS = {
    "sfu_storage_bytes",
    "sfu_storage_objects",
    "sfu_storage_cost_usd_month",
    "sfu_storage_budget_usd_month",
    "sfu_storage_forecast_usd_month",
    "sfu_vod_plays_total",
    "sfu_storage_restores_pending",
    "sfu_storage_restores_failed_total",
    "sfu_storage_restores_total",
    "sfu_storage_hot_unread_objects",
    "sfu_storage_upload_bytes",
    "sfu_cdn_hit_ratio",
}
"""The analytics exporter's metrics, as docs/lifecycle-costs.md defines them."""
RULES_KEY = "storage-alerts.rules.yml"
RULES_TEST = REPO / "tests" / "deploy" / "prometheus" / "storage-alerts.test.yml"


def _only_container(pod_spec: Doc) -> Doc:
    found: Doc
    (found,) = pod_spec["containers"]
    return found


@pytest.fixture(scope="module")
def cronjob() -> Doc:
    return _one("CronJob", "vod-lifecycle-manager")


@pytest.fixture(scope="module")
def job_pod(cronjob: Doc) -> Doc:
    spec: Doc = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return spec


@pytest.fixture(scope="module")
def analytics_deployment() -> Doc:
    return _one("Deployment", "storage-analytics")


@pytest.fixture(scope="module")
def analytics_pod(analytics_deployment: Doc) -> Doc:
    spec: Doc = analytics_deployment["spec"]["template"]["spec"]
    return spec


@pytest.fixture(scope="module")
def worker() -> Doc:
    return _only_container(_one("Deployment", "vod-worker")["spec"]["template"]["spec"])


def _runs(container: Doc, expected: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert container["image"].startswith(REGISTRY) and "command" not in container
    assert container["args"][: len(expected)] == expected
    with pytest.raises(SystemExit) as exited:
        sfu_main([*container["args"], "--help"])
    assert exited.value.code == 0
    assert f"usage: sfu {' '.join(expected)}" in capsys.readouterr().out


def test_lifecycle_cronjob(
    cronjob: Doc, job_pod: Doc, worker: Doc, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = cronjob["spec"]
    assert spec["schedule"] == "0 2 * * *"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert job_pod["restartPolicy"] == "OnFailure"
    container = _only_container(job_pod)
    _runs(container, ["lifecycle", "run"], capsys)
    # The design's requests and limits.
    assert container["resources"] == {
        "requests": {"cpu": "250m", "memory": "256Mi"},
        "limits": {"cpu": "500m", "memory": "512Mi"},
    }
    assert container["image"] == worker["image"]


@pytest.mark.parametrize("which", ["job", "analytics"])
def test_same_config_as_the_worker_and_oci_as_the_pods_identity(
    which: str,
    job_pod: Doc,
    analytics_pod: Doc,
    worker: Doc,
    maps: dict[str, dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Tiers and restores need OCI's native API (the S3 compatibility API has neither): these
    two pods use oci:// as their own workload identity, with no static key in sight."""
    pod = job_pod if which == "job" else analytics_pod
    container = _only_container(pod)
    assert container["envFrom"] == worker["envFrom"]
    names = settings_view.env_names()
    assert _env_names(container) <= names | OCI_ENV, _env_names(container) - names
    assert not _env_names(container) & AWS, "no S3 key: the pod signs as its identity"
    with monkeypatch.context() as env:
        settings = pods.load_settings(container, maps, env)
    assert settings.storage.url == "oci://<namespace>/cotept-vod"
    assert settings.storage.oci_auth == "oke_workload_identity"
    values = {e["name"]: e.get("value") for e in container["env"]}
    assert values["OCI_RESOURCE_PRINCIPAL_VERSION"] == "2.2"
    assert values["OCI_RESOURCE_PRINCIPAL_REGION"] == "ap-seoul-1"
    # The token OKE exchanges is the service account's, which has no Kubernetes rights.
    assert pod["serviceAccountName"] == "vod-storage-manager"
    assert pod["automountServiceAccountToken"] is True
    account = _one("ServiceAccount", "vod-storage-manager")
    assert account["automountServiceAccountToken"] is False  # only these pods opt in
    for kind in ("RoleBinding", "ClusterRoleBinding"):
        for binding in (m.doc for m in MANIFESTS if m.doc["kind"] == kind):
            subjects = binding.get("subjects") or []
            assert all(s.get("name") != "vod-storage-manager" for s in subjects), binding
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/var/lib/sfu", "/tmp"} <= mounts


def test_analytics_service_port_probes_and_scrape(
    analytics_deployment: Doc,
    analytics_pod: Doc,
    maps: dict[str, dict[str, str]],
    clean_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    container = _only_container(analytics_pod)
    _runs(container, ["analytics", "serve"], capsys)
    with monkeypatch.context() as env:
        settings = pods.load_settings(container, maps, env)
    port = settings.lifecycle.analytics_port
    assert port == 8090
    assert settings.lifecycle.metrics_interval_s == 300
    (declared,) = container["ports"]
    assert declared["containerPort"] == port
    for probe in ("livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"] == "/health" and get["port"] in (port, declared["name"])
    annotations = analytics_deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"
    assert container["resources"] == {
        "requests": {"cpu": "250m", "memory": "512Mi"},
        "limits": {"cpu": "500m", "memory": "1Gi"},
    }
    service = _one("Service", "storage-analytics")
    labels = analytics_deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    (service_port,) = service["spec"]["ports"]
    assert service_port["port"] == port and service_port["targetPort"] in (port, "http")


def _rules_text() -> str:
    text: str = _one("ConfigMap", "storage-alerts")["data"][RULES_KEY]
    return text


def test_alert_rules_use_only_the_defined_metrics() -> None:
    groups = yaml.safe_load(_rules_text())["groups"]
    alerts = {r["alert"]: r for g in groups for r in g["rules"]}
    assert set(alerts) == {
        "StorageBudget80Percent",
        "StorageForecastOverBudget",
        "ArchiveRestoreFailures",
        "HotObjectsUnread",
        "UnexpectedLargeUpload",
    }
    used = set()
    for rule in alerts.values():
        for name in re.findall(r"\bsfu_[a-z_]+", rule["expr"]):
            used.add(re.sub(r"_(bucket|count|sum)$", "", name))
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}
    assert used <= METRICS, used - METRICS
    doc = (REPO / "docs" / "lifecycle-costs.md").read_text(encoding="utf-8")
    for name in METRICS:
        assert f"`{name}" in doc, f"{name} is not documented"


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        message = "promtool not found (Debian's prometheus package; scripts/test.sh installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def test_promtool_checks_and_tests_the_rules(tmp_path: Path) -> None:
    promtool = _promtool()
    (tmp_path / RULES_KEY).write_text(_rules_text(), encoding="utf-8")
    shutil.copy(RULES_TEST, tmp_path / RULES_TEST.name)
    for command in (["check", "rules", RULES_KEY], ["test", "rules", RULES_TEST.name]):
        done = subprocess.run(
            [promtool, *command], cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stdout + done.stderr
