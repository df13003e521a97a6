"""The training harness every trainer shares: ``run_dir`` (run directory, ``train_config.json``, the resume rule),
``checkpoint`` (one atomic format), ``schedule`` (warm-up + cosine), ``progress`` (one bar), plus the GAN audio
loop (``gan``), the one KL-autoencoder trainer with its presets (``vae``) and sample grids (``image_grid``)."""
