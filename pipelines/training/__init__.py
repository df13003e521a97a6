"""Training loops, one module per model; each writes a model directory loadable with ``from_pretrained``."""
