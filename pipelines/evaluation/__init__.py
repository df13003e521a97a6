"""Metrics shared by the families' evaluations: image metrics, speech metrics, audio quality, the shape detector."""
