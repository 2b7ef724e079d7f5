"""Object stores: one contract for local disk and S3 (moto on a real port), then each one's own
guarantees. Uploads go through the URLs the store hands out, as a client's would."""

from __future__ import annotations

import asyncio
import base64
import calendar
import hashlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import pytest
from botocore.exceptions import ClientError
from pydantic import SecretStr

from realtimechat.blobs.base import StoreUnavailable
from realtimechat.blobs.factory import build_store
from realtimechat.blobs.local import (
    BadSignature,
    DigestMismatch,
    Expired,
    LinkError,
    LocalDiskStore,
    TooLarge,
)
from realtimechat.blobs.s3 import S3Store, content_disposition
from realtimechat.settings import FileSettings, Settings
from tests.moto_server import MotoServer, s3_server, s3_server_sync

SECRET = b"test-secret-0123456789abcdef"
BASE_URL = "http://node.test:8000"
MiB = 1024 * 1024


class Clock:
    """A settable clock for LocalDiskStore, so expiry is tested without waiting."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


Store = LocalDiskStore | S3Store


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    # Synchronous, so that the async `store` fixture can ask for it by name.
    with s3_server_sync() as server:
        yield server


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["local", "s3"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: Clock
) -> AsyncIterator[Store]:
    if request.param == "local":
        local = LocalDiskStore(tmp_path / "blobs", SECRET, clock=clock)
        yield local
        await local.close()
    else:
        server: MotoServer = request.getfixturevalue("moto")
        s3 = S3Store(server.settings())
        await s3.ensure_bucket()
        yield s3
        await s3.close()


@pytest.fixture
def prefix() -> str:
    """A fresh key prefix, so tests sharing the moto bucket never see each other's keys."""
    return f"teams/{uuid.uuid4().hex}/"


def s3_settings(**overrides: object) -> FileSettings:
    """Settings for an S3 endpoint nothing listens on (fine for calls that make no request)."""
    values: dict[str, object] = {
        "backend": "s3",
        "s3_endpoint_url": "http://127.0.0.1:9",
        "s3_bucket": "rtc-test",
        "s3_access_key_id": "testing",
        "s3_secret_access_key": SecretStr("testing"),
        **overrides,
    }
    return FileSettings.model_validate(values)


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}


def local_key(url: str) -> str:
    """The key a local blob URL names, as the route will take it from the path."""
    path = urlsplit(url).path
    assert path.startswith("/api/v1/blobs/")
    return unquote(path.removeprefix("/api/v1/blobs/"))


async def chunks_of(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def upload(store: Store, key: str, data: bytes, content_type: str = "text/plain") -> None:
    """Upload as a client would: ask for a target, then send the bytes to it."""
    digest = hashlib.sha256(data).hexdigest()
    target = store.upload_target(key, len(data), content_type, digest, BASE_URL, 60)
    assert target.method == "PUT"
    assert target.headers["Content-Type"] == content_type
    if isinstance(store, LocalDiskStore):
        # The HTTP route is not here yet; this is what it does with the request.
        assert target.url.startswith(f"{BASE_URL}/api/v1/blobs/")
        url_key = local_key(target.url)
        params = store.verify(target.method, url_key, query(target.url))
        assert params["size"] == str(len(data))
        assert params["sha256"] == digest
        written = await store.write(
            url_key,
            chunks_of(data),
            max_bytes=int(params["size"]),
            expected_sha256=params["sha256"],
        )
        assert (written.size, written.sha256) == (len(data), digest)
    else:
        async with httpx.AsyncClient() as http:
            response = await http.put(target.url, content=data, headers=target.headers)
        assert response.status_code == 200, response.text


# -- the contract, on both stores --------------------------------------------------------------


async def test_upload_stat_hash_download(store: Store, prefix: str) -> None:
    key = f"{prefix}file1"
    data = os.urandom(300_000)
    digest = hashlib.sha256(data).hexdigest()
    filename = 'résumé "final" ✓.txt'

    assert await store.stat(key) is None
    await upload(store, key, data)

    found = await store.stat(key)
    assert found is not None
    assert found.size == len(data)
    assert found.sha256 in (None, digest)  # None: the caller must hash
    assert await store.sha256(key) == digest

    url = store.download_url(key, filename, "text/plain", BASE_URL, 60)
    if isinstance(store, LocalDiskStore):
        params = store.verify("GET", local_key(url), query(url))
        assert params["filename"] == filename
        assert params["ct"] == "text/plain"
        assert (await store.open(key)).read_bytes() == data
    else:
        async with httpx.AsyncClient() as http:
            response = await http.get(url)
        assert response.status_code == 200
        assert response.content == data
        assert response.headers["content-type"] == "text/plain"
        disposition = response.headers["content-disposition"]
        assert disposition == content_disposition(filename)
        assert disposition.startswith('attachment; filename="r_sum_ _final_ _.txt"; ')
        assert disposition.endswith(
            "filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22%20%E2%9C%93.txt"
        )


async def test_keys_and_delete(store: Store, prefix: str) -> None:
    for name in ("a/1", "a/2", "b/1", "ab"):
        await upload(store, f"{prefix}{name}", name.encode())

    assert sorted(await store.keys(prefix)) == [f"{prefix}{n}" for n in ("a/1", "a/2", "ab", "b/1")]
    assert sorted(await store.keys(f"{prefix}a/")) == [f"{prefix}a/1", f"{prefix}a/2"]
    # A prefix is a string prefix, as in S3, not a directory.
    assert sorted(await store.keys(f"{prefix}a")) == [f"{prefix}{n}" for n in ("a/1", "a/2", "ab")]
    assert await store.keys(f"{prefix}zzz") == []

    await store.delete(f"{prefix}a/1")
    await store.delete(f"{prefix}a/1")  # absent is fine
    assert await store.stat(f"{prefix}a/1") is None
    with pytest.raises(FileNotFoundError):
        await store.sha256(f"{prefix}a/1")
    assert sorted(await store.keys(prefix)) == [f"{prefix}{n}" for n in ("a/2", "ab", "b/1")]


async def test_overwrite_replaces(store: Store, prefix: str) -> None:
    key = f"{prefix}again"
    await upload(store, key, b"first version")
    await upload(store, key, b"second")
    found = await store.stat(key)
    assert found is not None
    assert found.size == len(b"second")
    assert await store.sha256(key) == hashlib.sha256(b"second").hexdigest()


async def test_ping(store: Store) -> None:
    await store.ping()


async def test_upload_target_rejects_a_malformed_digest(store: Store, prefix: str) -> None:
    with pytest.raises(ValueError, match="sha256"):
        store.upload_target(f"{prefix}x", 3, "text/plain", "not-hex", BASE_URL, 60)


# -- S3 (moto) -----------------------------------------------------------------------------------


async def test_s3_presigned_put_signs_size_type_and_checksum(moto: MotoServer) -> None:
    store = S3Store(moto.settings())
    data = b"signed bytes"
    digest = hashlib.sha256(data).hexdigest()
    target = store.upload_target("teams/t/f", len(data), "image/png", digest, BASE_URL, 120)
    params = query(target.url)
    assert params["X-Amz-Expires"] == "120"
    # Real S3 refuses a request whose signed headers differ from these: another size,
    # type or checksum, and (for the checksum) bytes that do not match it.
    signed = params["X-Amz-SignedHeaders"].split(";")
    assert {"content-length", "content-type", "host", "x-amz-checksum-sha256"} <= set(signed)
    assert target.headers == {
        "Content-Type": "image/png",
        "x-amz-checksum-sha256": base64.b64encode(hashlib.sha256(data).digest()).decode(),
    }
    assert urlsplit(target.url).path == f"/{moto.settings().s3_bucket}/teams/t/f"
    await store.close()


async def test_s3_wrong_bytes_are_caught_by_hashing(moto: MotoServer, prefix: str) -> None:
    """moto 5.2 does NOT verify x-amz-checksum-sha256 (AWS does): it stores bytes that differ
    from the declared digest. stat() therefore never vouches for a digest on S3, and sha256()
    reads the object, so `complete` still refuses the upload."""
    store = S3Store(moto.settings())
    await store.ensure_bucket()
    key = f"{prefix}liar"
    declared = b"the bytes the client declared"
    sent = b"THE BYTES THE CLIENT DECLARED"
    digest = hashlib.sha256(declared).hexdigest()
    target = store.upload_target(key, len(declared), "text/plain", digest, BASE_URL, 60)
    async with httpx.AsyncClient() as http:
        response = await http.put(target.url, content=sent, headers=target.headers)
    assert response.status_code == 200, "moto now refuses a bad checksum: update this note"
    found = await store.stat(key)
    assert found is not None
    assert found.sha256 is None
    assert await store.sha256(key) == hashlib.sha256(sent).hexdigest() != digest
    await store.close()


async def test_s3_expired_and_tampered_urls_are_not_checked_by_moto(moto: MotoServer) -> None:
    """moto 5.2 checks neither the signature nor the expiry of presigned URLs (AWS and MinIO
    refuse both with 403). This records that, so nobody reads a pass here as proof that
    expiry works; what we can check is that the URL asks for the expiry we gave."""
    store = S3Store(moto.settings())
    await store.ensure_bucket()
    key = f"teams/{uuid.uuid4().hex}/old"
    await upload(store, key, b"old bytes")
    url = store.download_url(key, "old.txt", "text/plain", BASE_URL, 1)
    params = query(url)
    assert params["X-Amz-Expires"] == "1"
    signed_at = calendar.timegm(time.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ"))
    # No event marks an expiry: wait on the real clock until the URL has lapsed.
    await asyncio.sleep(max(0.0, signed_at + 1.5 - time.time()))
    assert time.time() > signed_at + 1
    tampered = url.replace(params["X-Amz-Signature"], "0" * 64)
    async with httpx.AsyncClient() as http:
        expired_response = await http.get(url)
        tampered_response = await http.get(tampered)
    assert expired_response.status_code == 200, "moto now refuses expired URLs: assert 403"
    assert tampered_response.status_code == 200, "moto now checks signatures: assert 403"
    await store.close()


async def test_s3_ensure_bucket_creates_once(moto: MotoServer) -> None:
    store = S3Store(moto.settings(s3_bucket=f"rtc-{uuid.uuid4().hex[:12]}"))
    with pytest.raises(ClientError) as missing:
        await store.ping()
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    await store.ensure_bucket()
    await store.ensure_bucket()
    await store.ping()
    assert await store.keys("") == []
    await store.close()


async def test_s3_keys_pages_past_a_thousand(moto: MotoServer) -> None:
    store = S3Store(moto.settings())
    await store.ensure_bucket()
    prefix = f"teams/{uuid.uuid4().hex}/"

    def put(i: int) -> None:
        store._client.put_object(Bucket=store.bucket, Key=f"{prefix}{i:04d}", Body=b"")

    def put_many() -> None:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(put, range(1005)))

    await asyncio.to_thread(put_many)
    keys = await store.keys(prefix)
    assert len(keys) == 1005
    assert len(set(keys)) == 1005
    await store.close()


async def test_s3_stopped_is_unavailable_within_the_timeout() -> None:
    async with s3_server() as server:
        store = S3Store(server.settings(timeout_s=1.0))
        await store.ensure_bucket()
        await upload(store, "teams/t/f", b"bytes")
        server.kill()
        calls: list[Callable[[], Awaitable[object]]] = [
            store.ping,
            lambda: store.stat("teams/t/f"),
            lambda: store.sha256("teams/t/f"),
            lambda: store.keys("teams/"),
            lambda: store.delete("teams/t/f"),
        ]
        for call in calls:
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await call()
            # Two attempts, each bounded by the timeout, and one backoff of at most ~1 s.
            assert time.monotonic() - started < 2 * 1.0 + 2.0
        await store.close()


async def test_s3_silent_endpoint_times_out_as_unavailable() -> None:
    """A server that accepts connections and never answers: the read timeout must fire."""
    accepted = 0

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        await reader.read()  # until the client gives up and closes
        writer.close()

    silent = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    store = S3Store(s3_settings(s3_endpoint_url=f"http://127.0.0.1:{port}", timeout_s=0.5))
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="Read timeout"):
        await store.stat("teams/t/f")
    elapsed = time.monotonic() - started
    assert 2 * 0.5 <= elapsed < 2 * 0.5 + 2.0
    assert accepted == 2  # the one retry, then give up
    await store.close()
    silent.close()
    await silent.wait_closed()


# -- local disk --------------------------------------------------------------------------------


@pytest.fixture
def local(tmp_path: Path, clock: Clock) -> LocalDiskStore:
    return LocalDiskStore(tmp_path / "blobs", SECRET, clock=clock)


def leftovers(store: LocalDiskStore) -> list[str]:
    """Every name on disk other than committed files and their sidecars."""
    return sorted(
        str(p.relative_to(store.root))
        for p in store.root.rglob("*")
        if p.is_file() and (p.name.endswith(".tmp") or p.name.count(".") > 1)
    )


def test_local_verify_accepts_its_own_links_until_they_expire(
    local: LocalDiskStore, clock: Clock
) -> None:
    digest = hashlib.sha256(b"x").hexdigest()
    target = local.upload_target("teams/t/f", 1, "text/plain", digest, BASE_URL + "/", 30)
    assert target.url.startswith(f"{BASE_URL}/api/v1/blobs/teams/t/f?")
    params = query(target.url)
    assert local.verify("PUT", "teams/t/f", params) == {
        "expires": str(int(clock.now) + 30),
        "size": "1",
        "sha256": digest,
    }
    clock.now += 29.9
    local.verify("PUT", "teams/t/f", params)
    clock.now += 0.1
    with pytest.raises(Expired, match="expired"):
        local.verify("PUT", "teams/t/f", params)


def test_local_verify_refuses_any_change(local: LocalDiskStore) -> None:
    digest = hashlib.sha256(b"x").hexdigest()
    put = query(local.upload_target("teams/t/f", 1, "text/plain", digest, BASE_URL, 30).url)
    get = query(local.download_url("teams/t/f", "a.txt", "text/plain", BASE_URL, 30))
    local.verify("GET", "teams/t/f", get)

    forgeries: list[tuple[str, str, dict[str, str]]] = [
        ("GET", "teams/t/f", put),  # an upload link used to download
        ("PUT", "teams/t/f", get),  # and the other way round
        ("PUT", "teams/t/g", put),  # another key
        ("PUT", "teams/t/f", {**put, "size": "2"}),
        ("PUT", "teams/t/f", {**put, "sha256": "0" * 64}),
        ("PUT", "teams/t/f", {**put, "expires": str(int(put["expires"]) + 3600)}),
        ("PUT", "teams/t/f", {**put, "extra": "1"}),
        ("PUT", "teams/t/f", {k: v for k, v in put.items() if k != "size"}),
        ("PUT", "teams/t/f", {k: v for k, v in put.items() if k != "sig"}),
        ("PUT", "teams/t/f", {**put, "sig": "0" * 64}),
        ("GET", "teams/t/f", {**get, "filename": "b.exe"}),
        ("GET", "teams/t/f", {**get, "ct": "text/html"}),
    ]
    for method, key, params in forgeries:
        with pytest.raises(BadSignature):
            local.verify(method, key, params)
    other = LocalDiskStore(local.root, b"another-secret-0123456789")
    with pytest.raises(BadSignature, match="altered or not ours"):
        other.verify("PUT", "teams/t/f", put)
    assert issubclass(BadSignature, LinkError)
    assert issubclass(Expired, LinkError)


async def test_local_refuses_unsafe_keys(local: LocalDiskStore) -> None:
    digest = hashlib.sha256(b"x").hexdigest()
    for key in ("../etc/passwd", "/etc/passwd", "a/../b", "a/./b", "a//b", "a/", "", "a b",
                "a.b", "a\\b", "a\nb", "é"):  # fmt: skip
        with pytest.raises(ValueError, match="invalid blob key"):
            local.upload_target(key, 1, "text/plain", digest, BASE_URL, 30)
        with pytest.raises(ValueError, match="invalid blob key"):
            local.download_url(key, "a", "text/plain", BASE_URL, 30)
        with pytest.raises(ValueError, match="invalid blob key"):
            await local.write(key, chunks_of(b"x"), 10)
        with pytest.raises(ValueError, match="invalid blob key"):
            await local.stat(key)
        with pytest.raises(BadSignature, match="not a blob key"):
            local.verify("GET", key, {})
    for prefix in ("../", "/etc", "a.b"):
        with pytest.raises(ValueError, match="invalid key prefix"):
            await local.keys(prefix)


async def test_local_too_large_stops_and_keeps_the_old_file(local: LocalDiskStore) -> None:
    key = "teams/t/f"
    await local.write(key, chunks_of(b"old"), 10)
    received = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal received
        while True:
            received += 1
            yield b"x" * 1000

    with pytest.raises(TooLarge, match="more than 4500 bytes"):
        await local.write(key, endless(), 4500)
    assert received == 5  # stopped at the first chunk past the limit, not at the end
    assert leftovers(local) == []
    assert (await local.open(key)).read_bytes() == b"old"
    assert await local.sha256(key) == hashlib.sha256(b"old").hexdigest()


async def test_local_digest_mismatch_keeps_the_old_file(local: LocalDiskStore) -> None:
    key = "teams/t/f"
    await local.write(key, chunks_of(b"old"), 10)
    with pytest.raises(DigestMismatch):
        await local.write(key, chunks_of(b"new"), 10, expected_sha256="0" * 64)
    assert leftovers(local) == []
    assert (await local.open(key)).read_bytes() == b"old"


async def test_local_failed_or_cancelled_write_leaves_nothing(local: LocalDiskStore) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"a" * 300_000
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await local.write("teams/t/broken", broken(), MiB)
    assert leftovers(local) == []
    assert await local.stat("teams/t/broken") is None

    started = asyncio.Event()
    never = asyncio.Event()

    async def stalled() -> AsyncIterator[bytes]:
        yield b"a" * 300_000
        started.set()
        await never.wait()
        yield b""

    task = asyncio.create_task(local.write("teams/t/stalled", stalled(), MiB))
    await started.wait()
    assert len(leftovers(local)) == 1  # the temp file, mid-upload
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert leftovers(local) == []
    assert await local.keys("") == []


async def test_local_stale_record_is_not_believed(local: LocalDiskStore) -> None:
    key = "teams/t/f"
    await local.write(key, chunks_of(b"recorded"), 100)
    path = await local.open(key)
    # Replace the file behind the store's back (a restore, a crash mid-overwrite).
    replacement = path.with_name("elsewhere")
    replacement.write_bytes(b"swapped!")
    replacement.replace(path)
    found = await local.stat(key)
    assert found is not None
    assert found.size == 8
    assert found.sha256 is None
    assert await local.sha256(key) == hashlib.sha256(b"swapped!").hexdigest()

    await local.write(key, chunks_of(b"fresh"), 100)
    path.with_name(path.name + ".sha256").unlink()
    found = await local.stat(key)
    assert found is not None
    assert found.sha256 is None
    assert await local.sha256(key) == hashlib.sha256(b"fresh").hexdigest()


async def test_local_keys_skip_temp_files_and_sidecars(local: LocalDiskStore) -> None:
    await local.write("teams/t/f", chunks_of(b"x"), 10)
    (local.root / "teams/t/g.0123456789abcdef.tmp").write_bytes(b"left by a crash")
    assert await local.keys("") == ["teams/t/f"]
    assert await local.keys("teams/t/") == ["teams/t/f"]
    assert await local.keys("teams/u/") == []
    with pytest.raises(FileNotFoundError):
        await local.open("teams/t/g")


async def test_local_streams_20mb_with_flat_memory(local: LocalDiskStore) -> None:
    size = 20 * MiB
    chunk = 64 * 1024
    hasher = hashlib.sha256()

    def rss() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS in /proc/self/status")

    baseline = rss()
    peak = baseline

    async def generate() -> AsyncIterator[bytes]:
        nonlocal peak
        for i in range(size // chunk):
            block = i.to_bytes(4, "big") * (chunk // 4)
            hasher.update(block)
            peak = max(peak, rss())
            yield block

    written = await local.write("teams/t/big", generate(), size)
    peak = max(peak, rss())
    assert written.size == size
    assert written.sha256 == hasher.hexdigest()
    assert (await local.open("teams/t/big")).stat().st_size == size
    assert peak - baseline < 4 * MiB, f"RSS grew by {(peak - baseline) / MiB:.1f} MiB"


async def test_local_ping_fails_when_the_root_cannot_be_written(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_bytes(b"")
    store = LocalDiskStore(tmp_path / "a-file" / "blobs", SECRET)
    with pytest.raises(StoreUnavailable):
        await store.ping()
    with pytest.raises(StoreUnavailable):
        await store.write("teams/t/f", chunks_of(b"x"), 10)


def test_local_needs_a_real_secret(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        LocalDiskStore(tmp_path, b"short")


# -- factory -----------------------------------------------------------------------------------


def test_build_store(tmp_path: Path) -> None:
    default = build_store(Settings(data_dir=tmp_path), SECRET)
    assert isinstance(default, LocalDiskStore)
    assert default.root == tmp_path / "files"

    chosen = build_store(Settings(files=FileSettings(local_dir=tmp_path / "x")), SECRET)
    assert isinstance(chosen, LocalDiskStore)
    assert chosen.root == tmp_path / "x"

    s3 = build_store(Settings(files=s3_settings()), SECRET)
    assert isinstance(s3, S3Store)
    assert s3.name == "s3"

    ambient = s3_settings(s3_access_key_id=None, s3_secret_access_key=None)
    assert isinstance(build_store(Settings(files=ambient), SECRET), S3Store)

    with pytest.raises(ValueError, match="S3_BUCKET"):
        build_store(Settings(files=s3_settings(s3_bucket="")), SECRET)
    with pytest.raises(ValueError, match="both"):
        build_store(Settings(files=s3_settings(s3_secret_access_key=None)), SECRET)
    with pytest.raises(ValueError, match="both"):
        build_store(Settings(files=s3_settings(s3_access_key_id=None)), SECRET)
