"""Pure torch models that map media <-> tokens, and the neural blocks they share."""

from tokenizers_media.modeling import ModelConfig, PretrainedModel, load_pretrained, register_model

__all__ = ["ModelConfig", "PretrainedModel", "load_pretrained", "register_model"]
