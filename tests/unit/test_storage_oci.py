"""OCIStore: the HTTP requests the oci SDK would send (captured by a requests transport
adapter on the SDK's own session; nothing leaves the process)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

oci = pytest.importorskip("oci")
requests = pytest.importorskip("requests")

from requests import PreparedRequest, Response  # noqa: E402
from requests.adapters import BaseAdapter  # noqa: E402

from sfu.storage import StorageError, open_store  # noqa: E402
from sfu.storage.base import ObjectNotFound, RestoreState, Tier  # noqa: E402
from sfu.storage.oci import OCIStore  # noqa: E402

HOST = "https://objectstorage.ap-seoul-1.oraclecloud.com"
Answer = Callable[[Any], tuple[int, dict[str, str], bytes]]


class Capture(BaseAdapter):
    """Records every request and answers with `answer(request)`."""

    def __init__(self, answer: Answer) -> None:
        super().__init__()
        self.seen: list[Any] = []
        self.answer = answer

    def send(
        self,
        request: PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float | None, float | None] | None = None,
        verify: bool | str = True,
        cert: str | tuple[str, str] | None = None,
        proxies: dict[str, str] | None = None,
    ) -> Response:
        self.seen.append(request)
        status, headers, body = self.answer(request)
        response = Response()
        response.status_code = status
        response.headers.update({"content-type": "application/json", **headers})
        response._content = body
        response.request = request
        response.url = request.url or ""
        return response

    def close(self) -> None:
        return None


def _key_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem: bytes = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    return pem.decode()


@pytest.fixture(scope="module")
def pem() -> str:
    return _key_pem()


def _store(pem: str, answer: Answer, prefix: str = "") -> tuple[OCIStore, Capture]:
    config = {
        "user": "ocid1.user.oc1..aaaa",
        "tenancy": "ocid1.tenancy.oc1..aaaa",
        "fingerprint": "11:22:33:44:55:66:77:88:99:00:aa:bb:cc:dd:ee:ff",
        "key_content": pem,
        "region": "ap-seoul-1",
    }
    client = oci.object_storage.ObjectStorageClient(
        config, retry_strategy=oci.retry.NoneRetryStrategy()
    )
    capture = Capture(answer)
    client.base_client.session.mount("https://", capture)
    return OCIStore("ns", "cotept-vod", prefix, client=client), capture


def _head(tier: str, archival: str | None = None) -> Answer:
    headers = {
        "content-length": "1024",
        "etag": "abc",
        "last-modified": "Wed, 01 Apr 2026 00:00:00 GMT",
        "content-type": "video/mp2t",
        "storage-tier": tier,
    }
    if archival:
        headers["archival-state"] = archival

    def answer(request: Any) -> tuple[int, dict[str, str], bytes]:
        if request.method == "HEAD":
            return 200, headers, b""
        return 200, {}, b""

    return answer


async def test_set_tier_sends_update_object_storage_tier(pem: str) -> None:
    store, capture = _store(pem, _head("Standard"), prefix="media")
    await store.set_tier("vod/sessions/s1/seg-1.ts", Tier.INFREQUENT_ACCESS)
    head, update = capture.seen
    assert head.method == "HEAD"
    assert head.url == f"{HOST}/n/ns/b/cotept-vod/o/media%2Fvod%2Fsessions%2Fs1%2Fseg-1.ts"
    assert update.method == "POST"
    assert update.url == f"{HOST}/n/ns/b/cotept-vod/actions/updateObjectStorageTier"
    assert json.loads(update.body) == {
        "objectName": "media/vod/sessions/s1/seg-1.ts",
        "storageTier": "InfrequentAccess",
    }
    assert update.headers["authorization"].startswith("Signature ")


async def test_set_tier_refuses_to_leave_archive(pem: str) -> None:
    store, capture = _store(pem, _head("Archive", "Archived"))
    with pytest.raises(StorageError, match="Archive"):
        await store.set_tier("vod/sessions/s1/a.ts", Tier.STANDARD)
    assert [r.method for r in capture.seen] == ["HEAD"]


async def test_restore_sends_restore_objects(pem: str) -> None:
    store, capture = _store(pem, _head("Archive", "Archived"))
    await store.restore("vod/sessions/s1/a.ts", hours=48)
    (restore,) = capture.seen
    assert restore.method == "POST"
    assert restore.url == f"{HOST}/n/ns/b/cotept-vod/actions/restoreObjects"
    assert json.loads(restore.body) == {"objectName": "vod/sessions/s1/a.ts", "hours": 48}


@pytest.mark.parametrize(
    ("tier", "archival", "state"),
    [
        ("Standard", None, RestoreState.NOT_ARCHIVED),
        ("InfrequentAccess", None, RestoreState.NOT_ARCHIVED),
        ("Archive", "Archived", RestoreState.ARCHIVED),
        ("Archive", "Restoring", RestoreState.PENDING),
        ("Archive", "Restored", RestoreState.RESTORED),
    ],
)
async def test_restore_state_from_head(
    pem: str, tier: str, archival: str | None, state: RestoreState
) -> None:
    store, _ = _store(pem, _head(tier, archival))
    assert await store.restore_state("vod/sessions/s1/a.ts") is state


async def test_missing_object(pem: str) -> None:
    def answer(request: Any) -> tuple[int, dict[str, str], bytes]:
        return 404, {}, json.dumps({"code": "ObjectNotFound", "message": "no"}).encode()

    store, _ = _store(pem, answer)
    with pytest.raises(ObjectNotFound):
        await store.restore("vod/sessions/s1/a.ts")
    assert not await store.exists("vod/sessions/s1/a.ts")
    await store.delete("vod/sessions/s1/a.ts")  # not an error


async def test_list_pages_with_fields_and_strips_the_prefix(pem: str) -> None:
    pages = {
        None: {
            "objects": [
                {
                    "name": "p/vod/sessions/a/1.ts",
                    "size": 10,
                    "storageTier": "Archive",
                    "timeModified": "2026-04-01T00:00:00.000Z",
                    "etag": "e1",
                }
            ],
            "nextStartWith": "p/vod/sessions/b",
        },
        "p/vod/sessions/b": {
            "objects": [
                {
                    "name": "p/vod/sessions/b/1.ts",
                    "size": 20,
                    "timeModified": "2026-04-02T00:00:00.000Z",
                    "etag": "e2",
                }
            ],
        },
    }

    def answer(request: Any) -> tuple[int, dict[str, str], bytes]:
        from urllib.parse import parse_qs, urlsplit

        query = parse_qs(urlsplit(request.url).query)
        assert query["fields"] == ["name,size,etag,timeModified,storageTier"]
        assert query["prefix"] == ["p/vod/sessions/"]
        start = query.get("start", [None])[0]
        return 200, {}, json.dumps(pages[start]).encode()

    store, capture = _store(pem, answer, prefix="p")
    found = [info async for info in store.list("vod/sessions/")]
    assert [(i.key, i.size, i.tier) for i in found] == [
        ("vod/sessions/a/1.ts", 10, Tier.ARCHIVE),
        ("vod/sessions/b/1.ts", 20, Tier.STANDARD),
    ]
    assert len(capture.seen) == 2


def test_oci_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    import sfu.storage.oci as module

    made: list[tuple[str, str, str]] = []

    class Fake:
        def __init__(self, namespace: str, bucket: str, prefix: str = "", **_: Any) -> None:
            made.append((namespace, bucket, prefix))

    monkeypatch.setattr(module, "OCIStore", Fake)
    monkeypatch.setattr(module, "default_client", lambda auth: object())
    open_store("oci://ns/cotept-vod")
    open_store("oci://ns/cotept-vod/media/x")
    assert made == [("ns", "cotept-vod", ""), ("ns", "cotept-vod", "media/x")]
    for bad in ("oci://ns", "oci:///bucket", "oci://ns/b?x=1"):
        with pytest.raises(StorageError):
            open_store(bad)


def test_settings_accept_oci_urls() -> None:
    from sfu.config.settings import load_settings

    assert load_settings(storage_url="oci://ns/b/p").storage.url == "oci://ns/b/p"


def test_oke_workload_identity_signs_as_the_pod(pem: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """SFU_OCI_AUTH=oke_workload_identity (what k8s/ sets): the client signs with the OKE
    workload-identity signer, in the signer's region; nothing is asked of a config file."""
    # What the OKE signer is: a security-token signer (a token for the pod, a session key).
    signer = oci.auth.signers.SecurityTokenSigner(
        "pod-token", oci.signer.load_private_key(pem, None)
    )
    signer.region = "ap-seoul-1"
    asked: list[str] = []

    def oke_signer() -> Any:
        asked.append("oke")
        return signer

    monkeypatch.setattr(
        oci.auth.signers, "get_oke_workload_identity_resource_principal_signer", oke_signer
    )
    monkeypatch.setenv("OCI_CONFIG_FILE", "/nonexistent/oci-config")
    store = open_store("oci://ns/cotept-vod", oci_auth="oke_workload_identity")
    assert isinstance(store, OCIStore) and asked == ["oke"]
    client = store._client.base_client
    assert client.signer is signer
    assert "ap-seoul-1" in client.endpoint


def test_oci_auth_without_its_credentials_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sfu.config.loading import SettingsError
    from sfu.config.settings import load_settings

    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(StorageError, match="OCI auth oke_workload_identity: no credentials"):
        open_store("oci://ns/b", oci_auth="oke_workload_identity")
    monkeypatch.setenv("OCI_CONFIG_FILE", "/nonexistent/oci-config")
    monkeypatch.delenv("OCI_RESOURCE_PRINCIPAL_VERSION", raising=False)
    with pytest.raises(StorageError, match="OCI auth config_file"):
        open_store("oci://ns/b")  # auto, outside a resource-principal environment
    with pytest.raises(SettingsError, match="SFU_OCI_AUTH: Input should be 'auto'"):
        load_settings(oci_auth="kerberos")
