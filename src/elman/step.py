"""elman.train_step, which lives beside ElmanRNN in elman.model: this module keeps the
name it was first imported from (``from elman.step import train_step``)."""
from .model import train_step

__all__ = ["train_step"]
