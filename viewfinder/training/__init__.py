"""Fine-tuning, evaluation and export for the three tasks (PaddleX's recipes on PyTorch).

    from viewfinder.training import TrainConfig, train, evaluate
    result = train(TrainConfig(model="MobileNetV2_x1_0", dataset_dir="data", dataset_type="ClsDataset",
                               output="out", epochs=5))
    metrics = evaluate("data", "ClsDataset", model_dir="out/best_model")
"""
from ..errors import TrainingError, TrainingInterrupted
from .config import TrainConfig
from .evaluate import evaluate
from .export import export_onnx_from_model_dir
from .trainer import Trainer, train

__all__ = [
    "TrainConfig",
    "Trainer",
    "TrainingError",
    "TrainingInterrupted",
    "evaluate",
    "export_onnx_from_model_dir",
    "train",
]
