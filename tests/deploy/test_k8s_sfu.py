"""The SFU's k8s/ manifests, cross-checked against the settings and the Dockerfile."""

from __future__ import annotations

from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.deploy import pods, settings_view
from tests.deploy.dockerfile_stages import Stage
from tests.deploy.manifests import HOST, NAMESPACE, REGISTRY, Doc, _env_names, _one
from tests.deploy.settings_view import CONFIG_FILE_ENV


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
    container: Doc, pod: Doc, config: dict[str, str], defaults: settings_view.Settings
) -> None:
    http_port, stun_port, rtc_port_min, rtc_port_max = (
        settings_view.get(defaults, name)
        for name in ("SFU_HTTP_PORT", "SFU_STUN_PORT", "SFU_RTC_PORT_MIN", "SFU_RTC_PORT_MAX")
    )
    ports = _ports(container)
    expected = {(http_port, "TCP"), (stun_port, "UDP")} | {
        (port, "UDP") for port in range(rtc_port_min, rtc_port_max + 1)
    }
    assert set(ports) == expected
    assert len(container["ports"]) == len(expected)
    assert ports[(http_port, "TCP")] == "http"
    assert int(config["SFU_HTTP_PORT"]) == http_port
    assert int(config["SFU_STUN_PORT"]) == stun_port
    assert int(config["SFU_RTC_PORT_MIN"]) == rtc_port_min
    assert int(config["SFU_RTC_PORT_MAX"]) == rtc_port_max
    # hostNetwork: the ports are the node's; a hostPort, if written, must equal containerPort.
    assert pod["hostNetwork"] is True
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    for port in container["ports"]:
        assert port.get("hostPort", port["containerPort"]) == port["containerPort"]


def test_probes_hit_health_and_ready_on_the_http_port(
    container: Doc, defaults: settings_view.Settings
) -> None:
    liveness = container["livenessProbe"]["httpGet"]
    readiness = container["readinessProbe"]["httpGet"]
    assert liveness["path"] == "/health"
    assert readiness["path"] == "/ready"
    for probe in (liveness, readiness):
        assert _named_port(container, probe["port"]) == settings_view.get(defaults, "SFU_HTTP_PORT")


PER_NODE = ("SFU_PUBLIC_IP", "SFU_STUN_HOST", "SFU_PUBLIC_URL")
"""Settings the init container writes to the pod's settings file: as environment variables
they would beat that file (README.md, "The public IP")."""
NOT_SETTINGS = {CONFIG_FILE_ENV, "POD_IP"}
"""The SFU container's environment variables that are not settings."""


def test_env_names_are_settings(container: Doc, pod: Doc, config: dict[str, str]) -> None:
    names = settings_view.env_names()
    allowed = names | NOT_SETTINGS
    assert set(config) <= names, set(config) - names
    assert _env_names(container) <= allowed, _env_names(container) - allowed
    assert [s["configMapRef"]["name"] for s in container["envFrom"]] == ["sfu-config"]
    for name in PER_NODE:
        assert name not in set(config) | _env_names(container), f"{name} would hide the file's"
    assert not set(config) & _env_names(container), "set twice"
    for init in pod["initContainers"]:
        assert _env_names(init) <= {"NODE_NAME", "PUBLIC_URL"}, init["name"]


def _field_ref(container: Doc, name: str) -> str:
    entry = next(e for e in container["env"] if e["name"] == name)
    path: str = entry["valueFrom"]["fieldRef"]["fieldPath"]
    return path


def test_per_pod_values(container: Doc, pod: Doc) -> None:
    assert _field_ref(container, "SFU_NODE_ID") == "metadata.name"
    assert _field_ref(container, "SFU_RTC_ADDRESSES") == "status.hostIP"
    assert _field_ref(container, "POD_IP") == "status.podIP"
    init = next(c for c in pod["initContainers"] if c["name"] == "public-ip")
    assert _field_ref(init, "NODE_NAME") == "spec.nodeName"
    shared = next(e for e in init["env"] if e["name"] == "PUBLIC_URL")
    assert shared["valueFrom"]["configMapKeyRef"] == {"name": "sfu-public-ip", "key": "public_url"}
    assert _one("ConfigMap", "sfu-public-ip")["data"]["public_url"] == f"https://{HOST}"
    # The init container writes the file the SFU reads as its settings file.
    config_file = next(e["value"] for e in container["env"] if e["name"] == CONFIG_FILE_ENV)
    assert init["command"][-1] == config_file
    shared_volumes = {m["name"] for m in init["volumeMounts"]} & {
        m["name"] for m in container["volumeMounts"]
    }
    mount = next(m for m in container["volumeMounts"] if m["name"] in shared_volumes)
    assert config_file.startswith(mount["mountPath"] + "/")


def test_node_url_is_the_pod_ip_on_the_http_port(
    container: Doc, pod: Doc, maps: Maps, clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SFU_NODE_URL, made by the kubelet from the pod IP, is how the other nodes reach this
    one: an http URL the settings accept, on this node's address (hostNetwork: the pod IP is
    the node's) and on the port the SFU listens on, which is the container's `http` port."""
    names = [e["name"] for e in container["env"]]
    assert names.index("POD_IP") < names.index("SFU_NODE_URL"), "$(POD_IP) must come first"
    assert pod["hostNetwork"] is True
    settings = pods.sfu_settings(pod, maps, monkeypatch, clean_env)
    node_url = settings_view.get(settings, "SFU_NODE_URL")
    http_port = settings_view.get(settings, "SFU_HTTP_PORT")
    parts = urlsplit(node_url)
    assert (parts.scheme, parts.hostname, parts.port) == ("http", pods.NODE_ADDRESS, http_port)
    assert parts.path in ("", "/")
    assert http_port == _named_port(container, "http")
    # The listener is on every address of the node, so the other nodes reach it.
    assert settings_view.get(settings, "SFU_HTTP_HOST") == "0.0.0.0"
    # A request another node forwards (or the ingress controller sends from another node,
    # masqueraded to that node's address) comes from a node address: its X-Forwarded-For holds.
    trusted = [ip_network(n) for n in settings_view.get(settings, "SFU_TRUSTED_PROXIES")]
    for peer in (pods.NODE_ADDRESS, "10.244.1.17"):  # a node, an ingress controller pod
        assert any(ip_address(peer) in network for network in trusted), peer


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


Maps = dict[str, dict[str, str]]


@pytest.fixture(scope="module")
def public_ip_script(maps: Maps) -> dict[str, Any]:
    return pods.public_ip_script(maps)


def test_public_ip_from_external_ip_or_label(public_ip_script: dict[str, Any]) -> None:
    public_ip = public_ip_script["public_ip"]
    assert public_ip(pods.node()) == pods.PUBLIC_ADDRESS
    label = {"sfu.cotept.com/public-ip": "198.51.100.4"}
    assert public_ip(pods.node(label)) == "198.51.100.4"
    assert public_ip(pods.node(label, external_ip=None)) == "198.51.100.4"
    with pytest.raises(SystemExit, match=r"kubectl label node 10\.0\.10\.5"):
        public_ip(pods.node(external_ip=None))
    with pytest.raises(ValueError):
        public_ip(pods.node({"sfu.cotept.com/public-ip": "not-an-ip"}, external_ip=None))


def test_public_url_is_shared_unless_the_node_has_its_own(
    public_ip_script: dict[str, Any],
) -> None:
    """README.md, "Per-node host names": a node labelled with a host name announces it."""
    public_url = public_ip_script["public_url"]
    shared = f"https://{HOST}"
    assert public_url(pods.node(), shared) == shared
    own = {"sfu.cotept.com/public-host": "sfu-a.cotept.com"}
    assert public_url(pods.node(own), shared) == "https://sfu-a.cotept.com"
    for bad in ("sfu-a", "https://sfu-a.cotept.com", "-a.cotept.com", "sfu_a.cotept.com"):
        with pytest.raises(SystemExit, match="is not a host name"):
            public_url(pods.node({"sfu.cotept.com/public-host": bad}), shared)
    with pytest.raises(SystemExit, match="PUBLIC_URL"):
        public_url(pods.node(), "sfu.cotept.com")


def test_public_ip_file_is_read_by_settings(
    pod: Doc,
    container: Doc,
    config: dict[str, str],
    maps: Maps,
    clean_env: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The init container, run as the pod runs it on a node, writes the file; with it, the
    pod's whole configuration loads: candidates announce the node's public address, browsers
    are told STUN on that address (not the ingress load balancer's, which carries HTTP only),
    and ws_url is built on the shared host name."""
    settings = pods.sfu_settings(pod, maps, monkeypatch, clean_env)
    assert settings_view.get(settings, "SFU_PUBLIC_IP") == pods.PUBLIC_ADDRESS
    assert settings_view.get(settings, "SFU_STUN_HOST") == pods.PUBLIC_ADDRESS
    stun_port = settings_view.get(settings, "SFU_STUN_PORT")
    assert stun_port == _named_port(container, "stun")
    assert settings_view.ice_servers(settings) == [
        {"urls": [f"stun:{pods.PUBLIC_ADDRESS}:{stun_port}"]}
    ]
    # The responder listens on every address of the node (hostNetwork), so the public IP's
    # 1:1 NAT onto the node's private address reaches it.
    assert settings_view.get(settings, "SFU_STUN_ENABLED") is True
    assert settings_view.get(settings, "SFU_STUN_BIND") == "0.0.0.0"
    assert settings_view.get(settings, "SFU_PUBLIC_URL") == f"https://{HOST}"
    assert settings_view.get(settings, "SFU_RTC_ADDRESSES") == (pods.NODE_ADDRESS,)
    assert settings_view.get(settings, "REDIS_URL") == config["REDIS_URL"]
    assert settings_view.get(settings, "SFU_HTTP_PORT") == _named_port(container, "http")
    assert settings_view.get(settings, "SFU_NODE_ID") == pods.FIELDS["metadata.name"]


def test_a_node_with_its_own_host_name_announces_it(
    pod: Doc, container: Doc, maps: Maps, clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    labelled = pods.node({"sfu.cotept.com/public-host": "sfu-a.cotept.com"})
    settings = pods.sfu_settings(pod, maps, monkeypatch, clean_env, labelled)
    assert settings_view.get(settings, "SFU_PUBLIC_URL") == "https://sfu-a.cotept.com"
    assert settings_view.get(settings, "SFU_STUN_HOST") == pods.PUBLIC_ADDRESS


def test_the_pods_share_redis_and_outlive_a_missed_heartbeat(
    pod: Doc, maps: Maps, clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With REDIS_URL the pods are one service; a live node's registry entry must survive a
    missed heartbeat."""
    settings = pods.sfu_settings(pod, maps, monkeypatch, clean_env)
    assert settings_view.get(settings, "REDIS_URL"), "without Redis: two separate SFUs"
    heartbeat = settings_view.get(settings, "SFU_CLUSTER_HEARTBEAT_S")
    assert settings_view.get(settings, "SFU_CLUSTER_NODE_TTL_S") >= 2 * heartbeat


def test_secret_placeholder_is_refused(
    container: Doc, clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No usable secret is committed: the placeholder stops `sfu serve` at start."""
    ref = next(e for e in container["env"] if e["name"] == "SFU_JWT_SECRET")
    ref = ref["valueFrom"]["secretKeyRef"]
    secret = _one("Secret", ref["name"])
    value = secret["stringData"][ref["key"]]
    monkeypatch.setenv("SFU_JWT_SECRET", value)
    with pytest.raises(settings_view.SettingsError, match="SFU_JWT_SECRET"):
        settings_view.load()


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
    assert _named_port(container, port["targetPort"]) == settings_view.default_of("SFU_HTTP_PORT")
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
        config.get("SFU_DRAIN_TIMEOUT_S", settings_view.default_of("SFU_DRAIN_TIMEOUT_S"))
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
