"""Robust latent perturbation and pscore: "Robust Latent Matters: Boosting Image Generation with Sampling Error"
(RobustTok; code github.com/lxa9867/ImageFolder). The perturbation is ``tokenizers_media/nn/vq.py``; KARL and
TexTok train with it.
"""
