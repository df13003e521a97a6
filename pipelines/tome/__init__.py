"""ToMe: token merging for training-free semantic binding in diffusers text-to-image pipelines."""
