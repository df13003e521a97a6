"""The phoneme CTC intelligibility judge of ``mediaforge eval flow-omni``: its training. The model is
``tokenizers_media/speech/recognizer.py``.
"""
