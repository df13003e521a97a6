"""WavTokenizer jobs, serving and training: "WavTokenizer: an Efficient Acoustic Discrete Codec Tokenizer
for Audio Language Modeling" (Ji et al., arXiv 2408.16532). The model is ``tokenizers_media/audio/wavtokenizer.py``.
"""
