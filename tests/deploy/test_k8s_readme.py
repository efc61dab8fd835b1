"""k8s/README.md's examples: the manifests it shows validate like the ones in k8s/, and the
settings file it shows is what the SFU reads."""

from __future__ import annotations

import re

import kubernetes_validate
import pytest
import yaml

from tests.deploy import pods, settings_view
from tests.deploy.manifests import K8S, KUBERNETES_VERSION, NAMESPACE, Doc, _one

README = (K8S / "README.md").read_text(encoding="utf-8")
_BLOCK = re.compile(r"^```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def _blocks(language: str) -> list[str]:
    return [body for lang, body in _BLOCK.findall(README) if lang == language]


def _examples() -> list[Doc]:
    docs: list[Doc] = []
    for block in _blocks("yaml"):
        docs += [doc for doc in yaml.safe_load_all(block) if doc is not None]
    return docs


EXAMPLES = _examples()


@pytest.mark.parametrize(
    "doc", EXAMPLES, ids=[f"{d['kind']}/{d['metadata']['name']}" for d in EXAMPLES]
)
def test_readme_manifests_validate_strictly(doc: Doc) -> None:
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        # A custom resource (External Secrets Operator's): no schema ships for it.
        assert "." in doc["apiVersion"].split("/")[0] and "k8s.io" not in doc["apiVersion"]
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(p) for p in exc.path)
        pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {where}: {exc.message}")
    assert doc["metadata"]["namespace"] == NAMESPACE


def test_per_node_host_name_example_reaches_one_node() -> None:
    """The Ingress sends the node's own name to a Service whose only endpoint is that node's
    address, on the SFU's HTTP port, like sfu-ingress.yaml does for the shared name."""
    ingress = next(d for d in EXAMPLES if d["kind"] == "Ingress")
    service = next(d for d in EXAMPLES if d["kind"] == "Service")
    endpoints = next(d for d in EXAMPLES if d["kind"] == "EndpointSlice")
    shared = _one("Ingress", "sfu")
    assert ingress["metadata"]["name"] != shared["metadata"]["name"], "would replace sfu"
    assert ingress["metadata"]["annotations"] == shared["metadata"]["annotations"]
    (rule,) = ingress["spec"]["rules"]
    (tls,) = ingress["spec"]["tls"]
    assert tls["hosts"] == [rule["host"]] and rule["host"].endswith(".cotept.com")
    assert f"sfu.cotept.com/public-host={rule['host']}" in README
    (path,) = rule["http"]["paths"]
    backend = path["backend"]["service"]
    assert backend["name"] == service["metadata"]["name"]
    assert "selector" not in service["spec"], "a selector would pick every SFU pod"
    assert endpoints["metadata"]["labels"]["kubernetes.io/service-name"] == backend["name"]
    (port,) = service["spec"]["ports"]
    assert backend["port"] == {"name": port["name"]}
    (endpoint_port,) = endpoints["ports"]
    assert endpoint_port["name"] == port["name"]
    http_port = settings_view.default_of("SFU_HTTP_PORT")
    assert endpoint_port["port"] == port["targetPort"] == http_port
    (endpoint,) = endpoints["endpoints"]
    assert endpoint["addresses"] == [pods.NODE_ADDRESS]


def test_readme_settings_file_is_what_the_init_container_writes(
    maps: dict[str, dict[str, str]],
) -> None:
    (toml,) = _blocks("toml")
    script = pods.public_ip_script(maps)
    shown = {line.split("#")[0].strip() for line in toml.splitlines()} - {""}
    written = script["settings_text"](pods.PUBLIC_ADDRESS, maps["sfu-public-ip"]["public_url"])
    assert shown == set(written.splitlines())
