"""The mel vocoder of the speech jobs (Vocos-style, GAN-trained): training, and evaluation against Griffin-Lim.
The model is ``tokenizers_media/speech/vocoder.py``.
"""
