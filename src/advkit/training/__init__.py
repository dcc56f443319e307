"""Training: the method-agnostic loop, optimizer, schedules, checkpoints and guards."""

from advkit.training.trainer import Trainer, TrainingInterrupted, TrainResult, train

__all__ = ["TrainResult", "Trainer", "TrainingInterrupted", "train"]
