"""Stable Diffusion on diffusers: the offline shapes-world text-to-image model, its training and its job
(which runs ``pipelines/tome``).
"""
