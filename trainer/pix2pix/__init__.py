"""pix2pix for pose-map -> person: networks, training loop, checkpoints, evaluation, pictures."""

from trainer.pix2pix.checkpoint import CheckpointStore, LocalCheckpointStore, load_generator
from trainer.pix2pix.data import PairDataset
from trainer.pix2pix.networks import NetConfig
from trainer.pix2pix.run import fine_tune, train_base
from trainer.pix2pix.train import TrainConfig, Trainer, TrainResult

__all__ = [
    "CheckpointStore",
    "LocalCheckpointStore",
    "NetConfig",
    "PairDataset",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "fine_tune",
    "load_generator",
    "train_base",
]
