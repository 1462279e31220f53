import base64
import hashlib

from vault_pipeline.replication.checksums import ExpectedChecksum
from vault_pipeline.replication.copier import CopyOptions

MiB = 1024 * 1024


def test_full_object_checksum_matches_only_the_same_bytes() -> None:
    expected = ExpectedChecksum.full(hashlib.sha256(b"abc").digest())
    assert expected.mismatch(base64.b64encode(hashlib.sha256(b"abc").digest()).decode()) is None
    assert "!=" in expected.mismatch(base64.b64encode(hashlib.sha256(b"abd").digest()).decode())
    assert "no SHA-256" in expected.mismatch(None)


def test_composite_checksum_is_sha256_of_part_digests_with_or_without_suffix() -> None:
    parts = [b"a" * 10, b"b" * 3]
    digests = [hashlib.sha256(p).digest() for p in parts]
    expected = ExpectedChecksum.composite(digests)
    value = base64.b64encode(hashlib.sha256(b"".join(digests)).digest()).decode()
    assert expected.render() == f"{value}-2"
    assert expected.mismatch(f"{value}-2") is None
    assert expected.mismatch(value) is None  # some servers (moto) omit the part count
    assert "parts" in expected.mismatch(f"{value}-3")


def test_part_size_grows_to_stay_under_10000_parts() -> None:
    options = CopyOptions(part_size=8 * MiB)
    assert options.part_size_for(100 * MiB) == 8 * MiB
    big = 200 * 1024 * MiB  # 200 GiB
    size = options.part_size_for(big)
    assert size % MiB == 0 and -(-big // size) <= 10_000
