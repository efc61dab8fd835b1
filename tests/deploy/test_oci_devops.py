"""deploy/oci-devops/: the OCI DevOps build spec and the deployment pipeline's command spec.

Both are checked against OCI's documented syntax (Build Specification, Command Specification:
`version: 0.1`, `component`, the sections and step fields they allow), then run: each spec's
steps in one bash session, as the build runner and the shell stage run them, with `docker`,
`oci` and `kubectl` stood in for by stubs that record their arguments. What they were asked to
do is checked against the manifests: the image built is the one every container names, every
container that runs it gets the new tag, and the rollout is given the time the Deployment's
strategy and grace period need.
"""

from __future__ import annotations

import math
import os
import shlex
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy import REPO, settings_view
from tests.deploy.dockerfile_stages import Stage
from tests.deploy.manifests import MANIFESTS, NAMESPACE, REGISTRY, Doc, _one

SPECS = REPO / "deploy" / "oci-devops"
BUILD_SPEC = SPECS / "build_spec.yaml"
DEPLOY_SPEC = SPECS / "deploy_spec.yaml"

STARTUP_S = 120
"""What a pod needs from being scheduled to ready: pulling the image on a node that has an
older one, the init container, the first readiness probe."""

_TOP = {"version", "component", "timeoutInSeconds", "shell", "failImmediatelyOnError", "env"}
ALLOWED = {
    "build": _TOP | {"runAs", "inputArtifacts", "steps", "outputArtifacts"},
    "command": _TOP | {"inputArtifacts", "steps"},
}
"""Top-level sections by component (OCI docs: Build Specification, Command Specification)."""
ENV_SECTIONS = {
    "build": {"variables", "vaultVariables", "exportedVariables"},
    "command": {"variables", "vaultVariables"},
}
STEP_FIELDS = {"type", "name", "shell", "timeoutInSeconds", "failImmediatelyOnError", "command"}
STEP_FIELDS |= {"onFailure", "runAs"}
OUTPUT_TYPES = {"BINARY", "DOCKER_IMAGE"}


def _spec(path: Path) -> Doc:
    doc: Doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    return doc


def _image_deployments() -> dict[str, Doc]:
    """The Deployments whose containers run the project's image, by name."""
    found = {}
    for manifest in MANIFESTS:
        doc = manifest.doc
        if doc["kind"] != "Deployment":
            continue
        spec = doc["spec"]["template"]["spec"]
        if any(
            c["image"].startswith(REGISTRY)
            for c in spec["containers"] + spec.get("initContainers", [])
        ):
            found[doc["metadata"]["name"]] = doc
    return found


def _containers(deployment: Doc) -> dict[str, str]:
    """Container name → image, init containers included."""
    spec = deployment["spec"]["template"]["spec"]
    return {c["name"]: c["image"] for c in spec["containers"] + spec.get("initContainers", [])}


# --- syntax --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "component"),
    [(BUILD_SPEC, "build"), (DEPLOY_SPEC, "command")],
    ids=["build", "deploy"],
)
def test_spec_follows_ocis_syntax(path: Path, component: str) -> None:
    spec = _spec(path)
    assert spec["version"] == 0.1, "OCI DevOps fails the stage on any other version"
    assert spec["component"] == component
    assert set(spec) <= ALLOWED[component], set(spec) - ALLOWED[component]
    assert spec["shell"] == "bash" and spec["failImmediatelyOnError"] is True
    assert set(spec.get("env", {})) <= ENV_SECTIONS[component]
    for name, value in spec["env"].get("variables", {}).items():
        assert isinstance(name, str) and isinstance(value, str), name
    assert spec["steps"], "a spec with no step does nothing"
    total = 0
    for step in spec["steps"]:
        assert set(step) <= STEP_FIELDS, set(step) - STEP_FIELDS
        assert step["type"] == "Command" and step["name"] and isinstance(step["command"], str)
        assert isinstance(step["timeoutInSeconds"], int) and step["timeoutInSeconds"] > 0
        total += step["timeoutInSeconds"]
        for handler in step.get("onFailure", []):
            assert set(handler) <= {"type", "command", "timeoutInSeconds", "runAs"}
            assert handler["type"] == "Command" and isinstance(handler["command"], str)
            total += handler["timeoutInSeconds"]
        for script in [step["command"]] + [h["command"] for h in step.get("onFailure", [])]:
            checked = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
            assert checked.returncode == 0, f"{step['name']}: {checked.stderr}"
    assert isinstance(spec["timeoutInSeconds"], int)
    assert spec["timeoutInSeconds"] >= total, "the spec would time out before its steps do"
    names = [s["name"] for s in spec["steps"]]
    assert len(set(names)) == len(names)


def test_build_spec_outputs() -> None:
    spec = _spec(BUILD_SPEC)
    outputs = spec["outputArtifacts"]
    for output in outputs:
        assert set(output) == {"name", "type", "location"}, output
        assert output["type"] in OUTPUT_TYPES
    assert len({o["name"] for o in outputs}) == len(outputs)
    assert [o["type"] for o in outputs].count("DOCKER_IMAGE") == 1, "one image for every pod"
    exported = spec["env"]["exportedVariables"]
    assert "IMAGE_TAG" in exported
    # The deployment pipeline's spec travels with the image it deploys.
    (binary,) = [o for o in outputs if o["type"] == "BINARY"]
    location = binary["location"].replace("${OCI_PRIMARY_SOURCE_DIR}", str(REPO))
    assert Path(location) == DEPLOY_SPEC


def test_specs_name_the_manifests_image() -> None:
    """The repository both specs use is the one every container of the manifests runs."""
    images = {
        image.rpartition(":")[0] if ":" in image.rpartition("/")[2] else image
        for deployment in _image_deployments().values()
        for image in _containers(deployment).values()
    }
    assert set(_image_deployments()) == {"sfu", "vod-worker", "storage-analytics"}
    (repository,) = images
    assert repository == REGISTRY + "sfu"
    for path in (BUILD_SPEC, DEPLOY_SPEC):
        assert _spec(path)["env"]["variables"]["SFU_IMAGE"] == repository, path.name


# --- the specs, run with stubs -------------------------------------------------------------------


STUB = """#!/bin/sh
{ printf '%s\\n' "$(basename "$0")" "$@"; printf '\\036\\n'; } >> "$STUB_LOG"
case "$(basename "$0") $1 $2" in
  "docker image inspect") echo "10001:10001" ;;
esac
exit 0
"""


def _run(spec: Doc, tmp_path: Path, **env: str) -> list[list[str]]:
    """Run the spec's steps in order in one bash session (exported variables carry over, as
    in OCI's runners); return each stubbed command's argv."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("docker", "oci", "kubectl"):
        stub = bin_dir / tool
        stub.write_text(STUB, encoding="utf-8")
        stub.chmod(stub.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "calls.log"
    script = "set -e\n" + "".join(
        f"echo '== {step['name']}'\n{step['command']}\n" for step in spec["steps"]
    )
    environment = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "STUB_LOG": str(log),
        **spec["env"].get("variables", {}),
        **env,
    }
    done = subprocess.run(
        ["bash", "-c", script], env=environment, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    calls = log.read_text(encoding="utf-8").split("\036\n") if log.exists() else []
    return [call.splitlines() for call in calls if call.strip()]


RUN_ID = "ocid1.devopsbuildrun.oc1.ap-seoul-1.amaaaaexample7x3q9"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _image_tag(tmp_path: Path, **env: str) -> str:
    """IMAGE_TAG as the build spec's first step exports it."""
    tmp_path.mkdir()
    spec = _spec(BUILD_SPEC)
    echo = {"name": "echo", "command": 'echo "${IMAGE_TAG}" > "${HOME}/tag"'}
    _run({**spec, "steps": [spec["steps"][0], echo]}, tmp_path, OCI_BUILD_RUN_ID=RUN_ID, **env)
    return (tmp_path / "tag").read_text(encoding="utf-8").strip()


def test_image_tag_is_a_docker_tag_naming_the_commit(tmp_path: Path) -> None:
    """<commit>-<run>, or run-<run> for a run without a commit: unique per run."""
    run = RUN_ID[::-1][:7]
    assert _image_tag(tmp_path / "pushed", OCI_TRIGGER_COMMIT_HASH=COMMIT) == f"{COMMIT[:12]}-{run}"
    assert _image_tag(tmp_path / "by-hand") == f"run-{run}"
    for tag in (f"{COMMIT[:12]}-{run}", f"run-{run}"):
        assert len(tag) <= 128 and all(c.isalnum() or c in "_.-" for c in tag), tag


def test_build_spec_builds_the_image_every_container_runs(tmp_path: Path, final: Stage) -> None:
    """One docker build of the repository's Dockerfile, tagged as the DOCKER_IMAGE output;
    then each container's own command line is tried on it."""
    spec = _spec(BUILD_SPEC)
    calls = _run(
        spec,
        tmp_path,
        OCI_BUILD_RUN_ID=RUN_ID,
        OCI_TRIGGER_COMMIT_HASH=COMMIT,
        OCI_PRIMARY_SOURCE_DIR=str(REPO),
    )
    (image,) = [o["location"] for o in spec["outputArtifacts"] if o["type"] == "DOCKER_IMAGE"]
    builds = [c for c in calls if c[:2] == ["docker", "build"]]
    (build,) = builds
    assert build[-1] == "." and "--file" not in build and "-f" not in build  # ./Dockerfile
    assert (REPO / "Dockerfile").is_file()
    assert build[build.index("--tag") + 1] == image
    runs = [c[2:] for c in calls if c[:2] == ["docker", "run"]]
    tried = {run[run.index(image) + 1] for run in runs if image in run}
    for deployment in _image_deployments().values():
        pod = deployment["spec"]["template"]["spec"]
        for container in pod["containers"]:
            assert container["args"][0] in tried, container["name"]
        for init in pod.get("initContainers", []):
            entrypoints = [r[r.index("--entrypoint") + 1] for r in runs if "--entrypoint" in r]
            assert init["command"][0] in entrypoints, init["name"]
    # `docker run IMAGE serve` runs what the pod runs: the image's ENTRYPOINT with its args.
    assert final.last("ENTRYPOINT").exec_form == ["sfu"]


def _deploy_calls(tmp_path: Path) -> list[list[str]]:
    return _run(
        _spec(DEPLOY_SPEC),
        tmp_path,
        IMAGE_TAG="0123456789ab-9q3x7ea",
        OKE_CLUSTER_ID="ocid1.cluster.oc1.ap-seoul-1.aaaaexample",
    )


def test_deploy_spec_sets_every_container_that_runs_the_image(tmp_path: Path) -> None:
    calls = _deploy_calls(tmp_path)
    kubectl = [c[1:] for c in calls if c[0] == "kubectl"]
    image = f"{_spec(DEPLOY_SPEC)['env']['variables']['SFU_IMAGE']}:0123456789ab-9q3x7ea"
    set_image: dict[str, dict[str, str]] = {}
    cronjobs: dict[str, dict[str, str]] = {}
    for args in kubectl:
        assert args[:2] == ["-n", NAMESPACE], args
        if args[2:4] == ["set", "image"]:
            kind, _, name = args[4].partition("/")
            assert kind in ("deployment", "cronjob")
            images = dict(a.split("=", 1) for a in args[5:])
            (cronjobs if kind == "cronjob" else set_image)[name] = images
    job = _one("CronJob", "vod-lifecycle-manager")["spec"]["jobTemplate"]["spec"]["template"]
    assert cronjobs == {
        "vod-lifecycle-manager": {c["name"]: image for c in job["spec"]["containers"]}
    }
    assert set(set_image) == set(_image_deployments())
    for name, deployment in _image_deployments().items():
        assert set(set_image[name]) == set(_containers(deployment)), name
        assert set(set_image[name].values()) == {image}, name
    # The cluster's credentials come from the pipeline's identity.
    (kubeconfig,) = [c[1:] for c in calls if c[0] == "oci"]
    assert kubeconfig[:3] == ["ce", "cluster", "create-kubeconfig"]


def _rollout_needs(deployment: Doc) -> float:
    """Seconds a rollout of the Deployment takes at worst: pods are replaced in batches of
    maxUnavailable + maxSurge; without a surge pod, a batch first waits for the old pods to
    stop (their grace period: the SFU drains that long) and their nodes to free up."""
    spec = deployment["spec"]
    rolling = spec["strategy"]["rollingUpdate"]
    surge, unavailable = int(rolling["maxSurge"]), int(rolling["maxUnavailable"])
    batches = math.ceil(spec["replicas"] / max(surge + unavailable, 1))
    grace = spec["template"]["spec"]["terminationGracePeriodSeconds"] if surge == 0 else 0
    return float(batches * (grace + spec.get("minReadySeconds", 0) + STARTUP_S))


def test_rollout_timeouts_cover_the_strategy(tmp_path: Path, config: dict[str, str]) -> None:
    spec = _spec(DEPLOY_SPEC)
    calls = _deploy_calls(tmp_path)
    waited = {}
    order = []
    for call in calls:
        args = call[1:]
        if call[0] == "kubectl" and args[2:4] in (["set", "image"], ["rollout", "status"]):
            order.append((args[3], args[4].partition("/")[2]))
        if call[0] == "kubectl" and args[2:4] == ["rollout", "status"]:
            (timeout,) = [a.removeprefix("--timeout=") for a in args if a.startswith("--timeout=")]
            assert timeout.endswith("s")
            waited[args[4].partition("/")[2]] = float(timeout[:-1])
    deployments = _image_deployments()
    assert set(waited) == set(deployments)
    for name, deployment in deployments.items():
        assert waited[name] >= _rollout_needs(deployment), name
        assert order.index(("image", name)) < order.index(("status", name))
        (step,) = [s for s in spec["steps"] if f"deployment/{name} --timeout" in s["command"]]
        assert step["timeoutInSeconds"] > waited[name], step["name"]
    # The SFU's need is its drain: 2 x (the 90 s grace over the 60 s drain + start-up).
    sfu = deployments["sfu"]
    drain = float(
        config.get("SFU_DRAIN_TIMEOUT_S", settings_view.default_of("SFU_DRAIN_TIMEOUT_S"))
    )
    assert _rollout_needs(sfu) >= sfu["spec"]["replicas"] * (drain + STARTUP_S)


def test_deploy_spec_targets_the_production_namespace() -> None:
    text = DEPLOY_SPEC.read_text(encoding="utf-8")
    for line in text.splitlines():
        if line.strip().startswith("kubectl "):
            words = shlex.split(line.strip().rstrip("\\"))
            assert words[1:3] == ["-n", NAMESPACE], line
    assert _one("Namespace", NAMESPACE)
