"""Training: the method-agnostic loop, optimizer, schedules, checkpoints and guards."""

from advkit.training.run import train
from advkit.training.trainer import Trainer, TrainingInterrupted, TrainResult

__all__ = ["TrainResult", "Trainer", "TrainingInterrupted", "train"]
