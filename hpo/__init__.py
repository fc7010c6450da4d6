"""hpo: hyperparameter optimisation for YOLO object detection, built on Optuna."""

__version__ = "0.1.0"
