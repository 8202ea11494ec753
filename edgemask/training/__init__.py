"""Training, evaluation and run directories."""

from edgemask.training.evaluate import evaluate_run
from edgemask.training.metrics import classification_metrics
from edgemask.training.run import RunInfo, load_run, save_run_files
from edgemask.training.train import TrainResult, train

__all__ = ["RunInfo", "classification_metrics", "evaluate_run", "load_run", "save_run_files", "train", "TrainResult"]
