"""Per-entity flow samplers of xAR (official ``models/sampler.py`` behaviour, written from the spec).

Convention: ``x_t = (1 - t) x + t eps`` (t = 1 is noise), velocity ``v = eps - x``. Integrating from t = 1
down to 0 generates an entity.

- ``sde``: Euler-Maruyama on the reverse SDE with diffusion ``d(t) = 2 t`` (SiT's convention: drift
  ``-v + d(t) * score``, noise ``sqrt(2 d(t) dt)``), times linear from 1 to 0.04, then one noiseless
  ("mean") step to 0. With ``score = -eps / t`` and ``eps = x_t + (1 - t) v`` the score term is
  ``-2 (x_t + (1 - t) v)``, finite at small t.
- ``ode``: plain Euler on ``dx/dt = v``, times linear from 1 to 0.
"""

from __future__ import annotations

import torch

SAMPLERS = ("sde", "ode")
SDE_LAST_TIME = 0.04


def sampling_times(num_steps: int, sampler: str) -> torch.Tensor:
    """``(num_steps + 1,)`` decreasing times; each consecutive pair is one model evaluation."""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; allowed: {SAMPLERS}")
    if num_steps < 1:
        raise ValueError(f"num_inference_steps must be >= 1, got {num_steps}")
    if sampler == "ode":
        return torch.linspace(1.0, 0.0, num_steps + 1)
    if num_steps == 1:
        return torch.tensor([1.0, 0.0])
    return torch.cat([torch.linspace(1.0, SDE_LAST_TIME, num_steps), torch.zeros(1)])


def flow_step(
    x: torch.Tensor,
    velocity: torch.Tensor,
    t: float,
    t_next: float,
    sampler: str,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One step from ``t`` to ``t_next < t``; the SDE's step to 0 is its noiseless mean step."""
    dt = t - t_next
    if sampler == "ode":
        return x - dt * velocity
    score_term = -2.0 * (x + (1.0 - t) * velocity)  # d(t) * score with d(t) = 2t
    mean = x + dt * (-velocity + score_term)
    if t_next == 0.0:
        return mean
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    return mean + (4.0 * t * dt) ** 0.5 * noise  # sqrt(2 d(t) dt)


def guidance_ramp(entity: int, num_entities: int, guidance_scale: float) -> float:
    """Classifier-free guidance grows linearly over AR steps: 1 (unguided) for the first entity, full last."""
    if num_entities == 1:
        return guidance_scale
    return 1.0 + (guidance_scale - 1.0) * entity / (num_entities - 1)
