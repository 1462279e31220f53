"""Objects are copied byte for byte as stored, whatever their Content-Encoding says, with their content
headers; and a copy holds one version of the hot object, even when the object is overwritten mid-copy.

The hot objects carry a CRC32 checksum (as boto3 writes them by default), so a GET that decoded a gzip body
would fail its response checksum validation: the symptom of issue 12 (`FlexibleChecksumError ... expected
checksum ... did not match calculated checksum`), from the former urllib3 client, which decoded bodies.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import os
from typing import Any

import pytest

from vault_pipeline.replication.copier import CopyOptions, ObjectCopier, SourceObject, stored_encoding
from vault_pipeline.replication.errors import CopyError, VerificationError
from vault_pipeline.replication.policy import RetentionPolicy
from vault_pipeline.replication.verify import META_SHA256
from vault_pipeline_tests.conftest import Vault

MiB = 1024 * 1024
PART = 5 * MiB  # VAULT_PART_SIZE_MB and VAULT_MULTIPART_THRESHOLD_MB of the tests (conftest.TEST_ENV)
HEADERS = {"ContentType": "application/pdf", "ContentDisposition": 'attachment; filename="releve 2026.pdf"',
           "CacheControl": "private, max-age=0", "ContentLanguage": "fr-FR"}
# Not real brotli (the brotli package is not installed): the servers store the bytes and the label as given,
# which is exactly what is tested: nothing on the way interprets them.
BR_BYTES = b"\x8b\x03\x80fixed bytes labelled br, never decoded\x03"


def big_gzip() -> bytes:
    """A real gzip stream of just over two parts (three parts: 5 + 5 + the rest)."""
    body = gzip.compress(os.urandom(2 * PART + 300_000), compresslevel=1)
    assert 2 * PART < len(body) < 3 * PART
    return body


# key -> (stored bytes, Content-Encoding)
def documents() -> dict[str, tuple[bytes, str]]:
    return {
        "gzip/small.pdf.gz": (gzip.compress(b"%PDF-1.7 a real gzip document " * 500), "gzip"),
        "br/small.txt.br": (BR_BYTES, "br"),
        "lie/small.pdf": (b"%PDF-1.7 these bytes are not gzip, whatever the header says", "gzip"),
        "gzip/large.pdf.gz": (big_gzip(), "gzip"),
        "lie/large.bin": (os.urandom(2 * PART + 12345), "gzip"),  # gzip claimed, random bytes stored
    }


def put_hot(vault: Vault, key: str, body: bytes, encoding: str | None = None) -> dict[str, Any]:
    extra = {"ContentEncoding": encoding, **HEADERS} if encoding else {}
    return vault.hot.put_object(Bucket=vault.hot_bucket, Key=key, Body=body, ChecksumAlgorithm="CRC32",
                                Metadata={"document-type": "invoice"}, **extra)


def cold_checksum_of(body: bytes) -> str:
    """What the cold site must report for these bytes: full SHA-256, or composite over 5 MiB parts."""
    if len(body) <= PART:
        return base64.b64encode(hashlib.sha256(body).digest()).decode()
    digests = b"".join(hashlib.sha256(body[i:i + PART]).digest() for i in range(0, len(body), PART))
    return base64.b64encode(hashlib.sha256(digests).digest()).decode() + f"-{-(-len(body) // PART)}"


def assert_cold_copy_is(vault: Vault, key: str, version_id: str, body: bytes) -> dict[str, Any]:
    """The cold version holds exactly `body`: its checksum on both servers, its bytes where GET is served."""
    head = vault.cold.head_object(Bucket=vault.cold_bucket, Key=key, VersionId=version_id, ChecksumMode="ENABLED")
    assert head["ContentLength"] == len(body)
    assert head["ChecksumSHA256"].split("-")[0] == cold_checksum_of(body).split("-")[0]
    assert head["Metadata"][META_SHA256] == hashlib.sha256(body).hexdigest()
    if vault.flavour == "seaweedfs":  # the moto server refuses GET on DEEP_ARCHIVE, as AWS does
        cold = vault.cold.get_object(Bucket=vault.cold_bucket, Key=key, VersionId=version_id)
        assert cold["Body"].read() == body
    return head


@pytest.mark.parametrize("fast", [True, False], ids=["fast-path", "boto3"])
def test_every_object_is_copied_as_stored_with_its_content_headers(vault: Vault, fast: bool) -> None:
    switch = "true" if fast else "false"
    # No spool: the parts of large objects come from ranged GETs of the gzip bytes, the riskiest read.
    vault.configure(OVH_S3_FAST_PATH=switch, AWS_S3_FAST_PATH=switch, VAULT_SPOOL_MAX_MB="0")
    docs = documents()
    for key, (body, encoding) in docs.items():
        put_hot(vault, key, body, encoding)
        assert vault.hot.head_object(Bucket=vault.hot_bucket, Key=key, ChecksumMode="ENABLED")["ChecksumCRC32"]
    runs = vault.sensor_and_runs()
    assert runs and all(run.success for run in runs)
    for key, (body, encoding) in docs.items():
        row = vault.row(key)
        assert row["status"] == "replicated", (key, row["error_message"])
        assert row["sha256"] == hashlib.sha256(body).hexdigest()  # of the stored bytes
        assert row["ovh_size"] == len(body)
        assert (row["part_size"] == PART) == (len(body) > PART)
        head = assert_cold_copy_is(vault, key, row["aws_version_id"], body)
        assert head["ContentEncoding"] == encoding
        assert {name: head.get(name) for name in HEADERS} == HEADERS
        assert len(vault.cold_versions(key)) == 1
    assert vault.open_uploads() == []


def test_a_cold_copy_without_the_source_headers_fails_verification(vault: Vault,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    key, body = "gzip/dropped.pdf.gz", gzip.compress(b"%PDF-1.7 dropped header")
    put_hot(vault, key, body, "gzip")
    real_put = vault.cold.put_object

    def dropping(**kwargs: Any) -> Any:  # a cold site that loses Content-Encoding
        kwargs.pop("ContentEncoding", None)
        return real_put(**kwargs)

    monkeypatch.setattr(vault.cold, "put_object", dropping)
    with pytest.raises(VerificationError, match="ContentEncoding None != 'gzip'"):
        direct_copier(vault).replicate(key, listed_size=len(body))


def test_aws_chunked_is_a_way_of_uploading_not_an_encoding_of_the_stored_bytes() -> None:
    assert stored_encoding("gzip,aws-chunked") == "gzip"
    assert stored_encoding("aws-chunked") is None
    assert stored_encoding("br, aws-chunked , gzip") == "br, gzip"
    assert stored_encoding("GZIP ,  br") == "GZIP ,  br"  # anything else is carried exactly as it is
    assert stored_encoding(None) is None
    source = SourceObject(key="k", etag="e", size=1, last_modified=None, version_id=None,  # type: ignore[arg-type]
                          metadata={}, content_type="text/plain", content_encoding="gzip", content_language="fr")
    assert source.content_headers() == {"ContentType": "text/plain", "ContentEncoding": "gzip",
                                        "ContentLanguage": "fr"}


# -- 8b: an object overwritten during its copy ---------------------------------------------------------

def direct_copier(vault: Vault, *, spool: bool = False) -> ObjectCopier:
    return ObjectCopier(hot=vault.hot, hot_bucket=vault.hot_bucket, cold=vault.cold, cold_bucket=vault.cold_bucket,
                        policy=RetentionPolicy.default(), options=CopyOptions(
                            multipart_threshold=PART, part_size=PART, part_concurrency=2,
                            spool_max_bytes=64 * MiB if spool else 0))


def overwrite_before_parts(vault: Vault, monkeypatch: pytest.MonkeyPatch, key: str, new: bytes) -> list[str]:
    """Overwrite the hot object once, after the hash pass and before the first part is read. Returns a list
    holding the new object's ETag, then the ETag of the version each later upload of parts was hashed from."""
    real_upload = ObjectCopier._upload_parts
    done: list[str] = []

    def overwrite_first(self: ObjectCopier, source: SourceObject, *args: Any) -> Any:
        if not done:
            done.append(put_hot(vault, key, new, "gzip")["ETag"].strip('"'))
        else:
            done.append(source.etag)
        return real_upload(self, source, *args)

    monkeypatch.setattr(ObjectCopier, "_upload_parts", overwrite_first)
    return done


@pytest.mark.parametrize(("hot_versioned", "spool"), [(False, False), (True, False), (False, True)],
                         ids=["if-match-ranged-gets", "version-id-ranged-gets", "spooled-parts"])
def test_an_object_overwritten_during_its_multipart_copy_is_never_mixed(
        vault: Vault, monkeypatch: pytest.MonkeyPatch, hot_versioned: bool, spool: bool) -> None:
    if hot_versioned:
        vault.hot.put_bucket_versioning(Bucket=vault.hot_bucket, VersioningConfiguration={"Status": "Enabled"})
    vault.configure(VAULT_SPOOL_MAX_MB="64" if spool else "0")
    key, old, new = "overwritten/large.pdf.gz", big_gzip(), big_gzip()
    put_hot(vault, key, old, "gzip")
    overwritten = overwrite_before_parts(vault, monkeypatch, key, new)
    vault.sensor_and_runs()
    row = vault.row(key)
    assert row["status"] == "replicated", row["error_message"]
    assert vault.open_uploads() == []
    if hot_versioned or spool:
        # The version hashed is the version copied (pinned by VersionId, or read back from the spool)...
        assert len(overwritten) == 1  # one upload of parts, which went through
        assert row["sha256"] == hashlib.sha256(old).hexdigest()
        assert_cold_copy_is(vault, key, row["aws_version_id"], old)
        # ...and the next sweep sees the new content and copies it too.
        vault.sensor_and_runs()
        row = vault.row(key)
        assert row["status"] == "replicated" and row["ovh_etag"] == overwritten[0]
        assert len(vault.cold_versions(key)) == 2
    else:
        # If-Match refused the replaced object mid-copy (upload aborted); the retry copied the new content.
        assert overwritten == [overwritten[0], overwritten[0]]  # the second upload of parts was of the new one
        assert row["ovh_etag"] == overwritten[0] and len(vault.cold_versions(key)) == 1
    assert row["sha256"] == hashlib.sha256(new).hexdigest()
    assert_cold_copy_is(vault, key, row["aws_version_id"], new)


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_an_overwrite_between_head_and_hash_pass_is_a_clear_failure(vault: Vault,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    key = "overwritten/before-hash.bin"
    put_hot(vault, key, os.urandom(PART + 1), "gzip")
    copy = direct_copier(vault)
    real_head = ObjectCopier._head_source

    def head_then_overwrite(self: ObjectCopier, key_: str) -> SourceObject:
        source = real_head(self, key_)
        put_hot(vault, key, os.urandom(PART + 1), "gzip")
        return source

    monkeypatch.setattr(ObjectCopier, "_head_source", head_then_overwrite)
    with pytest.raises(CopyError, match=r"GET \(hash pass\) of hot object .* changed during its copy") as failed:
        copy.replicate(key, listed_size=PART + 1)
    assert failed.value.retryable
    assert vault.open_uploads() == [] and vault.cold_versions(key) == []


@pytest.mark.parametrize("cold_flavour", ["seaweedfs"], indirect=True)
def test_a_server_that_ignores_if_match_cannot_mix_versions(vault: Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    key, new = "overwritten/ignored-condition.bin", os.urandom(PART + 7)
    put_hot(vault, key, os.urandom(PART + 7), "gzip")
    monkeypatch.setattr(ObjectCopier, "_pinned", staticmethod(lambda source: {}))  # the condition is not applied
    overwrite_before_parts(vault, monkeypatch, key, new)
    with pytest.raises(CopyError, match=r"ranged GET .* answered ETag .* changed during its copy"):
        direct_copier(vault).replicate(key, listed_size=PART + 7)
    assert vault.open_uploads() == [] and vault.cold_versions(key) == []
