"""KARL jobs, serving, training and evaluation: "Single-pass Adaptive Image Tokenization for Minimum Program
Search" (arXiv 2507.07995). The model is ``tokenizers_media/image/karl.py``.
"""
