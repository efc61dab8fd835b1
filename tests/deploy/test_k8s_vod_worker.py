"""The VOD worker's k8s/ manifests, cross-checked against the SFU's."""

from __future__ import annotations

from pathlib import Path

import pytest

from sfu.cli import main as sfu_main
from tests.deploy import pods, settings_view
from tests.deploy.dockerfile_stages import Stage
from tests.deploy.manifests import REGISTRY, Doc, _env_names, _one

SESSION_S = 3600
"""The longest session the worker's grace period is sized for."""
RENDER_SPEED = 2.4
"""The worker's measured speed, times real time (docs/benchmarks.md, `bench/vod`)."""


@pytest.fixture(scope="module")
def worker_deployment() -> Doc:
    return _one("Deployment", "vod-worker")


@pytest.fixture(scope="module")
def worker_pod(worker_deployment: Doc) -> Doc:
    spec: Doc = worker_deployment["spec"]["template"]["spec"]
    return spec


@pytest.fixture(scope="module")
def worker(worker_pod: Doc) -> Doc:
    found: Doc
    (found,) = worker_pod["containers"]
    assert found["name"] == "vod-worker"
    return found


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
    maps: dict[str, dict[str, str]],
    clean_env: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Both pods resolve SFU_RECORDINGS_DIR to the same path, and mount the same ReadWriteMany
    claim exactly there; the worker's scratch folder is on a pod-local emptyDir."""
    with monkeypatch.context() as env:
        sfu = pods.sfu_settings(pod, maps, env, clean_env)
    with monkeypatch.context() as env:
        vod = pods.load_settings(worker, maps, env)
    recordings = settings_view.recordings_root(sfu)
    assert recordings == settings_view.recordings_root(vod)
    assert recordings.is_absolute()
    claims = set()
    for c, p in ((container, pod), (worker, worker_pod)):
        volume = _mounts(c, p).get(str(recordings))
        assert volume is not None, f"{c['name']}: nothing mounted at {recordings}"
        claims.add(volume["persistentVolumeClaim"]["claimName"])
        mount = next(m for m in c["volumeMounts"] if m["mountPath"] == str(recordings))
        assert not mount.get("readOnly"), c["name"]
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
    (claim_name,) = claims
    claim = _one("PersistentVolumeClaim", claim_name)
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    storage_class = _one("StorageClass", claim["spec"]["storageClassName"])
    assert storage_class["provisioner"] == "fss.csi.oraclecloud.com"
    assert storage_class["reclaimPolicy"] == "Retain"
    # What each process writes outside the recordings is on a writable pod-local volume.
    scratch = _on_volume(settings_view.get(vod, "SFU_DATA_DIR") / "vod-work", worker, worker_pod)
    assert "emptyDir" in scratch
    for c, p in ((container, pod), (worker, worker_pod)):
        assert "emptyDir" in _on_volume(Path("/tmp"), c, p)


async def test_vod_worker_shares_settings_and_queue(
    worker: Doc,
    container: Doc,
    pod: Doc,
    config: dict[str, str],
    maps: dict[str, dict[str, str]],
    clean_env: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Same ConfigMap, same Redis stream and consumer group, same webhook secret; the storage
    key comes from a Secret; the worker's own env names are settings or boto3's."""
    from sfu.recording.queue_factory import open_job_queue
    from sfu.storage import StorageError, open_store, store_from_settings
    from sfu.storage.s3 import S3Store

    assert worker["envFrom"] == container["envFrom"]
    assert config["REDIS_URL"].startswith("redis://")
    aws = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"}
    names = settings_view.env_names()
    assert _env_names(worker) <= names | aws, _env_names(worker) - names
    assert not set(config) & _env_names(worker), "set twice"
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in worker["env"] if "valueFrom" in e}
    sfu_ref = next(e for e in container["env"] if e["name"] == "SFU_JWT_SECRET")
    assert refs["SFU_JWT_SECRET"] == sfu_ref["valueFrom"]["secretKeyRef"]
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        secret = _one("Secret", refs[name]["name"])
        assert refs[name]["key"] in secret["stringData"]
        assert secret["stringData"][refs[name]["key"]] == "", "a real key is committed"
    with monkeypatch.context() as env:
        sfu = pods.sfu_settings(pod, maps, env, clean_env)
    with monkeypatch.context() as env:
        vod = pods.load_settings(worker, maps, env)
        queues = [open_job_queue(s.redis_url, s.vod) for s in (vod, sfu)]
        try:
            assert {type(q).__name__ for q in queues} == {"RedisJobQueue"}
            assert repr(queues[0]) == repr(queues[1])  # stream and group
            assert queues[0].max_attempts == queues[1].max_attempts
        finally:
            for queue in queues:
                await queue.close()
        # The endpoint names the tenancy's namespace: the placeholder stops the worker at
        # start instead of failing every upload; filled in, it is an S3 store on the bucket.
        storage_url = settings_view.get(vod, "SFU_STORAGE_URL")
        s3_endpoint = settings_view.get(vod, "SFU_S3_ENDPOINT")
        assert storage_url and s3_endpoint and "<namespace>" in s3_endpoint
        with pytest.raises(StorageError):
            store_from_settings(vod)
        store = open_store(storage_url, endpoint=s3_endpoint.replace("<namespace>", "axaxnpcrorw5"))
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
    poll = float(config.get("SFU_VOD_POLL_S", settings_view.default_of("SFU_VOD_POLL_S")))
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
