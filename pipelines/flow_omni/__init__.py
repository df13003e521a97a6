"""Flow-Omni (Yuan et al., arXiv 2412.04917): an LLM that listens and speaks in continuous log-mel frames."""
