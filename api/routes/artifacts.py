"""``/v1/artifacts``: upload (raw body or multipart ``file``; size-limited; never empty; media type sniffed) and
download, both scoped to the caller: an artifact is its uploader's, or the owner's of the job that wrote it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from starlette.datastructures import UploadFile

from api.deps import CallerDep, ServiceDep, SettingsDep
from api.schemas import CALLER_ERRORS, ArtifactPublic, errors
from workers.artifacts import ArtifactNotFound, ArtifactTooLarge

router = APIRouter(prefix="/v1/artifacts", tags=["artifacts"], responses=CALLER_ERRORS)

_CHUNK = 1 << 20
_MAX_FIELDS = 4
"""Form fields Starlette parses before it answers 400; any field but ``file`` answers 422."""
_FILE = {"type": "string", "format": "binary", "minLength": 1}
UPLOAD_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/octet-stream": {"schema": _FILE},
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {"file": _FILE},
                                       "additionalProperties": False}},
}}}
"""The body the route reads itself (streamed, never whole in memory): declared so that clients and ``/docs``
can upload; any media type but ``multipart/form-data`` is taken as the raw file."""


def _too_large(limit: int) -> HTTPException:
    return HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"upload is larger than the limit of {limit} bytes")


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ArtifactPublic, openapi_extra=UPLOAD_BODY,
             responses=errors(400, 413, 422, e400="a malformed multipart form, or one with more than one file or "
                              f"more than {_MAX_FIELDS} other fields",
                              e422="the upload is empty, or a multipart form with no 'file' field or another"))
async def create_artifact(*, request: Request, service: ServiceDep, settings: SettingsDep, owner: CallerDep,
                          filename: str | None = None) -> ArtifactPublic:
    """Send the file as the raw body (``?filename=`` optional) or as a multipart form with one field, ``file``."""
    limit = settings.max_upload_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit + 64 * 1024:  # slack for multipart framing
        raise _too_large(limit)
    try:
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            form = await request.form(max_files=1, max_fields=_MAX_FIELDS)
            upload, others = form.get("file"), sorted(set(form.keys()) - {"file"})
            if not isinstance(upload, UploadFile) or others:  # a field this route ignored would be lost silently
                raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "a multipart upload is one field, "
                                    f"'file'{f'; got also {others}' if others else ''}")
            chunks = iter(lambda: upload.file.read(_CHUNK), b"")
            artifact = await run_in_threadpool(service.put_artifact, chunks, upload.filename, owner)
        else:
            body, size = [], 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                body.append(chunk)
            artifact = await run_in_threadpool(service.put_artifact, body, filename, owner)
    except ArtifactTooLarge as err:
        raise _too_large(limit) from err
    return ArtifactPublic.of(artifact)


@router.get("/{artifact_id}", response_class=FileResponse, responses={
    200: {"description": "the file, with the media type sniffed at upload",
          "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
          "headers": {"X-Artifact-Sha256": {"description": "the file's sha256", "schema": {"type": "string"}}}},
    **errors(404)})
def read_artifact(*, artifact_id: str, service: ServiceDep, owner: CallerDep) -> FileResponse:
    try:
        artifact = service.owned_artifact(artifact_id, owner)
        path = service.artifacts.path(artifact_id)
    except ArtifactNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"artifact {artifact_id} not found") from None
    return FileResponse(path, media_type=artifact.media_type, filename=artifact.filename,
                        headers={"X-Artifact-Sha256": artifact.sha256})
