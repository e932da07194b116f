"""Training: the fine-tuning configuration and the accelerate loop that runs it."""

from .config import ConfigError, FinetuneConfig
from .trainer import train

__all__ = ["ConfigError", "FinetuneConfig", "train"]
