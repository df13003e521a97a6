"""The artifact store: a content-addressed local directory shared by the API, the workers and the model hosts.

An artifact's id is the sha256 of its bytes, so writing the same output twice (a re-delivered job) lands on the
same file, and ids are checked against ``[0-9a-f]{64}`` before they touch the filesystem: no request can name a
path outside the store. Each blob has a small JSON sidecar with its media type and original file name.

Who may read an artifact is the job service's business, not the directory's: ``ArtifactOwners`` keeps, per owner
(an API key's hash), the set of artifact ids it uploaded or got as a job's outputs in Redis (``<p>:owns:<owner>``).
Content addressing means two owners who upload the same bytes both own the one blob.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from pipelines.base import InputError
from workers.keyspace import Keyspace

_ID = re.compile(r"[0-9a-f]{64}")

# Content type -> the pipeline media type name it can be decoded as.
MEDIA_KINDS = {
    "audio/wav": "audio", "audio/flac": "audio", "audio/ogg": "audio",
    "application/x-safetensors": "tokens",
    "image/png": "image", "image/jpeg": "image", "image/webp": "image",
    "text/plain": "text",
}


class ArtifactNotFound(LookupError):
    """No artifact has this id (or the id is not a sha256 hex digest)."""


class ArtifactTooLarge(InputError):
    """An upload past the size limit (the API answers 413, not 422)."""


@dataclass(frozen=True)
class Artifact:
    id: str
    sha256: str
    media_type: str
    size: int
    filename: str

    @property
    def media_kind(self) -> str | None:
        """``audio``, ``tokens``, ``image``, ``text``, or None for bytes no pipeline reads."""
        return MEDIA_KINDS.get(self.media_type)


def sniff_media_type(data: bytes) -> str:
    """The content type from the file's own magic bytes (never from the name a client sent)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return "audio/wav"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:4] == b"fLaC":
        return "audio/flac"
    if data[:4] == b"OggS":
        return "audio/ogg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if _is_safetensors(data):
        return "application/x-safetensors"
    if data and b"\x00" not in data[:4096] and _is_utf8(data[:4096]):
        return "text/plain"
    return "application/octet-stream"


def _is_safetensors(data: bytes) -> bool:
    if len(data) < 10:
        return False
    header_len = int.from_bytes(data[:8], "little")
    return 2 <= header_len <= len(data) - 8 and data[8:9] == b"{"


def _is_utf8(data: bytes, complete: bool = False) -> bool:
    """A head cut in the middle of a multi-byte character still counts, unless ``complete``."""
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data, final=complete)
    except UnicodeDecodeError:
        return False
    return True


def _safe_filename(name: str | None) -> str:
    """Keep only the last path component and ordinary characters: the name is shown, never used as a path."""
    base = re.sub(r"[^A-Za-z0-9._-]", "_", Path(name or "").name)[:128].lstrip(".")
    return base or "file"


class ArtifactStore:
    """``root/ab/<sha256>`` blobs with ``root/ab/<sha256>.json`` metadata; writes are atomic renames."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def put(self, data: bytes, filename: str | None = None) -> Artifact:
        digest = hashlib.sha256(data).hexdigest()
        return self._commit_bytes(digest, data, filename)

    def put_stream(self, chunks: Iterable[bytes], filename: str | None, max_bytes: int) -> Artifact:
        """Write chunks to a temp file, hashing as they come; nothing is kept past ``max_bytes``
        (``ArtifactTooLarge``) or when no byte came (``InputError``: no pipeline reads an empty file)."""
        digest, size, head = hashlib.sha256(), 0, b""
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as fh:
                for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise ArtifactTooLarge(f"upload is larger than the limit of {max_bytes} bytes")
                    if len(head) < 4096:
                        head += chunk[: 4096 - len(head)]
                    digest.update(chunk)
                    fh.write(chunk)
            if size == 0:
                raise InputError("the upload is empty")
            sha = digest.hexdigest()
            blob = self._blob(sha)
            blob.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, blob)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return self._write_meta(Artifact(sha, sha, _media_type_of(blob, head), size, _safe_filename(filename)))

    def get(self, artifact_id: str) -> Artifact:
        meta = self._meta(self._checked(artifact_id))
        try:
            return Artifact(**json.loads(meta.read_text()))
        except FileNotFoundError:
            raise ArtifactNotFound(f"no artifact {artifact_id!r}") from None

    def path(self, artifact_id: str) -> Path:
        blob = self._blob(self._checked(artifact_id))
        if not blob.is_file():
            raise ArtifactNotFound(f"no artifact {artifact_id!r}")
        return blob

    def read(self, artifact_id: str) -> bytes:
        return self.path(artifact_id).read_bytes()

    def _commit_bytes(self, sha: str, data: bytes, filename: str | None) -> Artifact:
        blob = self._blob(sha)
        if not blob.is_file():
            blob.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=blob.parent, prefix=".put-")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, blob)
        return self._write_meta(Artifact(sha, sha, _media_type_of(blob, data[:4096]), len(data),
                                        _safe_filename(filename)))

    def _write_meta(self, artifact: Artifact) -> Artifact:
        meta = self._meta(artifact.id)
        if not meta.is_file():
            fd, tmp = tempfile.mkstemp(dir=meta.parent, prefix=".meta-")
            with os.fdopen(fd, "w") as fh:
                json.dump(asdict(artifact), fh)
            os.replace(tmp, meta)
        return artifact

    @staticmethod
    def _checked(artifact_id: str) -> str:
        if not isinstance(artifact_id, str) or not _ID.fullmatch(artifact_id):
            raise ArtifactNotFound(f"{artifact_id!r} is not an artifact id (64 hex digits)")
        return artifact_id

    def _blob(self, sha: str) -> Path:
        return self.root / sha[:2] / sha

    def _meta(self, sha: str) -> Path:
        return self.root / sha[:2] / f"{sha}.json"


class ArtifactOwners(Keyspace):
    """``<p>:owns:<owner>``: a Redis set of the artifact ids an owner may read (and give to its jobs)."""

    def add(self, owner: str, *artifact_ids: str) -> None:
        if artifact_ids:
            self.redis.sadd(self._k("owns", owner), *artifact_ids)

    def owns(self, owner: str, artifact_id: str) -> bool:
        return bool(self.redis.sismember(self._k("owns", owner), artifact_id))


def _media_type_of(blob: Path, head: bytes) -> str:
    kind = sniff_media_type(head)
    if kind == "text/plain" and not _is_utf8(blob.read_bytes(), complete=True):
        return "application/octet-stream"
    return kind
