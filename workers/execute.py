"""The execution core shared by ``mediaforge run`` (in-process) and the service's model hosts.

Bytes in, bytes out: decode the job's input files into media, run the pipeline on a batch of requests, encode
each result into named output files. Everything stateful (Redis, artifacts, Ray) stays in the callers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipelines.base import InputError, Params, Pipeline, ProgressCallback, Request, Result
from workers.codecs import DEFAULT_MAX_AUDIO_SECONDS, decode_media, encode_media, output_file_name
from workers.jobspec import JobSpec, resolve_job


@dataclass(frozen=True)
class InputFile:
    name: str
    """The file's own name, used in error messages."""
    data: bytes


@dataclass(frozen=True)
class OutputFile:
    name: str
    """The output's name in the pipeline result (``tokens``, ``audio``, ``image_000``...)."""
    filename: str
    data: bytes


def build_request(pipeline_class: type[Pipeline], files: dict[str, InputFile], params: Params,
                  max_audio_seconds: float = DEFAULT_MAX_AUDIO_SECONDS) -> Request:
    inputs = {
        key: decode_media(f.data, f.name, pipeline_class.inputs[key], max_audio_seconds=max_audio_seconds)
        for key, f in files.items()
    }
    return Request(inputs=inputs, params=params)


def prepare_request(pipeline: Pipeline, files: dict[str, InputFile], params: Params,
                    max_audio_seconds: float = DEFAULT_MAX_AUDIO_SECONDS) -> Request:
    """Decode one job's files and check the request against the loaded model, alone, before any batch runs.

    The one caller of ``check_request`` for served and local jobs: every request a pipeline's ``run`` receives
    from here has passed it, so a bad file fails only its own job.
    """
    request = build_request(type(pipeline), files, params, max_audio_seconds)
    pipeline.check_request(request)
    return request


def encode_result(result: Result) -> list[OutputFile]:
    return [OutputFile(name, output_file_name(name, media), encode_media(media)) for name, media in result.items()]


def run_spec_locally(spec: JobSpec, outdir: Path, device: str = "cpu",
                     progress: ProgressCallback | None = None,
                     max_audio_seconds: float = DEFAULT_MAX_AUDIO_SECONDS) -> list[Path]:
    """One job in this process: inputs are file paths; outputs are written into ``outdir``."""
    job = resolve_job(spec)
    files = {key: InputFile(Path(path).name, _read_input(Path(path))) for key, path in spec.inputs.items()}
    pipeline = job.pipeline_class.load(job.model.path, device=device)
    request = prepare_request(pipeline, files, job.params, max_audio_seconds)
    (result,) = pipeline.run([request], progress=progress)
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    for out in encode_result(result):
        path = outdir / out.filename
        path.write_bytes(out.data)
        written.append(path)
    return written


def _read_input(path: Path) -> bytes:
    if not path.is_file():
        raise InputError(f"input file {path} does not exist")
    return path.read_bytes()
