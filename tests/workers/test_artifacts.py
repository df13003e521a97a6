"""The content-addressed artifact store: ids are sha256, names never become paths, limits leave nothing behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.base import InputError
from tests.service_fixtures import wav_bytes
from workers.artifacts import ArtifactNotFound, ArtifactStore, sniff_media_type


def test_same_bytes_same_id_and_path(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    a, b = store.put(b"hello", "a.txt"), store.put(b"hello", "b.txt")
    assert a.id == b.id == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    assert store.read(a.id) == b"hello" and store.path(a.id).is_relative_to(tmp_path)


@pytest.mark.parametrize("bad", ["../../etc/passwd", "/etc/passwd", "A" * 64, "0" * 63, "", "0" * 64 + "/.."])
def test_ids_are_checked_before_touching_the_disk(tmp_path: Path, bad: str) -> None:
    store = ArtifactStore(tmp_path)
    with pytest.raises(ArtifactNotFound):
        store.path(bad)
    with pytest.raises(ArtifactNotFound):
        store.get(bad)


def test_filenames_are_sanitised(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "store")
    artifact = store.put(b"x", "../../../outside.txt")
    assert artifact.filename == "outside.txt" and not (tmp_path / "outside.txt").exists()
    assert store.put(b"y", "..").filename == "file"


def test_stream_over_the_limit_keeps_nothing(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    with pytest.raises(InputError, match="limit of 10 bytes"):
        store.put_stream([b"123456", b"789012"], "big.bin", max_bytes=10)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    ok = store.put_stream([b"12345", b"67890"], "ok.bin", max_bytes=10)
    assert ok.size == 10 and store.read(ok.id) == b"1234567890"


@pytest.mark.parametrize(("data", "kind"), [
    (wav_bytes(0.01), "audio/wav"), (b"fLaC\x00\x00", "audio/flac"), (b"\x89PNG\r\n\x1a\n....", "image/png"),
    (b"\xff\xd8\xff\xe0", "image/jpeg"), (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"),
    (b"plain words", "text/plain"), (b"\x00\x01\x02", "application/octet-stream"),
    (len(b'{"a":1}').to_bytes(8, "little") + b'{"a":1}', "application/x-safetensors"),
])
def test_media_type_is_sniffed_from_content(data: bytes, kind: str) -> None:
    assert sniff_media_type(data) == kind
