"""TexTok jobs, serving, training and evaluation: "Language-Guided Image Tokenization for Generation"
(Zha et al., arXiv 2412.05796). The model is ``tokenizers_media/image/textok.py``.
"""
