"""Text encoders that condition image tokenizers and generators on captions."""
