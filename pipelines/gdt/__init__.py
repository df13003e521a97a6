"""GDT: group generation with a diffusion transformer (arXiv 2410.15027) on diffusers components."""
