"""Workflows: one JSON document of jobs whose inputs may be earlier steps' outputs, checked before anything runs.

``{"steps": {NAME: JOB, ...}}``: each JOB is an ordinary job (workers/jobspec.py) whose inputs may also be
``{"from": STEP, "output": NAME}``. ``check_workflow`` resolves every step as ``resolve_job`` does and then checks
the graph: unknown step names, cycles, an output name the producing kind does not write, a media type the
consuming kind does not read there, and tokens made by one model given to another (a tokens file says which model
made it; only a kind that declares ``translates_tokens`` reads another model's tokens). Every refusal is an
``InputError`` (a 422) naming the step and the field. Running a checked workflow is workers/dependencies.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pipelines.base import InputError
from workers.jobspec import JobSpec, Priority, ResolvedJob, resolve_job

MAX_STEPS = 32
STEP_NAME = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"
GROUP_OUTPUT = re.compile(r"^image_(\d{3})$")
"""Kinds that write a group of images name them ``image_000``, ``image_001``, ..."""

OUTPUTS: dict[str, dict[str, str]] = {
    "audio.tokenize": {"tokens": "tokens"},
    "audio.detokenize": {"audio": "audio"},
    "image.tokenize": {"tokens": "tokens"},
    "image.detokenize": {"image": "image"},
    "image.generate": {"image": "image"},
    "image.generate_group": {"image_NNN": "image"},
    "speech.generate": {"audio": "audio"},
    "speech.chat": {"text": "text", "audio": "audio"},
}
"""Job kind -> output name -> media type, as the kind's pipelines write their results (workers/codecs.py).
A pipeline class that declares ``outputs`` itself is read instead (``image.generate`` on xAR writes a group)."""
GROUP_PIPELINES = {"pipelines.xar.image_generate:GenerateXARPipeline"}
"""Pipelines of a single-image kind that write ``image_NNN`` outputs (``num_images`` of them)."""


class StepOutput(BaseModel):
    """An input that is another step's output."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    step: str = Field(alias="from", max_length=64, description="the producing step's name")
    output: str = Field(max_length=64, description="the producing step's output name (tokens, audio, image...)")


class StepSpec(BaseModel):
    """One step: a job whose inputs are artifact ids (file paths in batch files and the CLI) or step outputs."""

    model_config = ConfigDict(extra="forbid")

    kind: str = Field(max_length=100)
    model: str = Field(min_length=1, max_length=4096)
    inputs: dict[str, str | StepOutput] = Field(default_factory=dict, max_length=16)
    params: dict[str, Any] = Field(default_factory=dict)
    priority: Priority = "interactive"

    def job(self, inputs: dict[str, str]) -> JobSpec:
        """The step as an ordinary job, once its step-output inputs are artifact ids."""
        return JobSpec(kind=self.kind, model=self.model, inputs=inputs, params=self.params, priority=self.priority)

    def needs(self) -> dict[str, StepOutput]:
        return {name: ref for name, ref in self.inputs.items() if isinstance(ref, StepOutput)}

    def files(self) -> dict[str, str]:
        return {name: ref for name, ref in self.inputs.items() if isinstance(ref, str)}


class WorkflowSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    steps: dict[str, StepSpec] = Field(min_length=1, max_length=MAX_STEPS, description="step name -> job")


@dataclass(frozen=True)
class CheckedStep:
    name: str
    spec: StepSpec
    resolved: ResolvedJob
    """Resolved with placeholder ids for step-output inputs: target, family and validated params are final."""
    outputs: dict[str, str]
    """Output name -> media type this step writes."""


@dataclass(frozen=True)
class CheckedWorkflow:
    spec: WorkflowSpec
    steps: dict[str, CheckedStep]
    order: list[str]
    """Every producer before its consumers."""

    def sinks(self) -> list[str]:
        """Steps no other step reads: their outputs are the workflow's outputs."""
        read = {ref.step for s in self.spec.steps.values() for ref in s.needs().values()}
        return [name for name in self.order if name not in read]


def check_workflow(spec: WorkflowSpec, *, zoo_only: bool = True) -> CheckedWorkflow:
    """Resolve every step and check the graph; ``InputError`` naming the step and field of the first problem."""
    steps: dict[str, CheckedStep] = {}
    for name, step in spec.steps.items():
        if not re.match(STEP_NAME, name):
            raise InputError(f"step {name[:64]!r}: a step name is a letter then up to 63 letters, digits, _ or -")
        placeholders = {key: ref if isinstance(ref, str) else f"<{ref.step}.{ref.output}>"
                        for key, ref in step.inputs.items()}
        try:
            resolved = resolve_job(step.job(placeholders), zoo_only=zoo_only)
        except InputError as err:
            raise InputError(f"step {name!r}: {err}") from None
        steps[name] = CheckedStep(name, step, resolved, _outputs(resolved))
    for name, step in steps.items():
        for field, ref in step.spec.needs().items():
            _check_edge(steps, name, step, field, ref)
    return CheckedWorkflow(spec, steps, _order(spec))


def _outputs(resolved: ResolvedJob) -> dict[str, str]:
    declared = getattr(resolved.pipeline_class, "outputs", None)
    if isinstance(declared, dict):
        return dict(declared)
    if resolved.pipeline in GROUP_PIPELINES:
        count = getattr(resolved.params, "num_images", 1)
        return {f"image_{i:03d}": "image" for i in range(count)}
    return dict(OUTPUTS.get(resolved.spec.kind, {}))


def _has_output(outputs: dict[str, str], name: str) -> str | None:
    """The media type of output ``name`` (``image_NNN`` declares any three-digit index), or None."""
    if name in outputs:
        return outputs[name]
    return outputs.get("image_NNN") if GROUP_OUTPUT.match(name) else None


def _check_edge(steps: dict[str, CheckedStep], name: str, step: CheckedStep, field: str, ref: StepOutput) -> None:
    where = f"step {name!r} inputs.{field}"
    producer = steps.get(ref.step)
    if producer is None:
        raise InputError(f"{where}: no step named {ref.step!r}; steps are {sorted(steps)}")
    media = _has_output(producer.outputs, ref.output)
    if media is None:
        raise InputError(f"{where}: step {ref.step!r} ({producer.spec.kind}) has no output {ref.output!r}; "
                         f"it writes {sorted(producer.outputs)}")
    wanted = step.resolved.pipeline_class.inputs[field]
    if media != wanted:
        raise InputError(f"{where}: {step.spec.kind} reads {wanted} there, but {ref.step}.{ref.output} is {media}")
    if media == "tokens" and producer.resolved.model.name != step.resolved.model.name and not getattr(
            step.resolved.pipeline_class, "translates_tokens", False):
        raise InputError(f"{where}: {ref.step}.{ref.output} are tokens of model {producer.resolved.model.name!r} "
                         f"({producer.resolved.model.model_class}); {step.spec.kind} on "
                         f"{step.resolved.model.name!r} reads only its own tokens (it does not translate)")


def _order(spec: WorkflowSpec) -> list[str]:
    """Kahn's topological order; a cycle is refused naming the steps on it."""
    needs = {name: {ref.step for ref in step.needs().values()} for name, step in spec.steps.items()}
    order: list[str] = []
    ready = [name for name, deps in needs.items() if not deps]
    while ready:
        name = ready.pop(0)
        order.append(name)
        for other, deps in needs.items():
            if name in deps:
                deps.discard(name)
                if not deps and other not in order:
                    ready.append(other)
    if len(order) != len(needs):
        cycle = sorted(set(needs) - set(order))
        raise InputError(f"steps {cycle}: their inputs form a cycle (a step needs its own output, directly or "
                         f"through other steps)")
    return order
