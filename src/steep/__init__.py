"""steep: continued pretraining of open LLMs."""

__version__ = "0.1.0"
