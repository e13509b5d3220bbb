"""Train a tiny model on exported ground truth through the pipeline's own entry point, as a run
configured with ``data.image``, ``data.labels`` and ``data.boxes`` does (its readers and checks
included): what the label exports are tested against, in pipeline and webapp tests alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.config import DataConfig, ModelConfig, PipelineConfig
from pipeline.run import RunResult, run_pipeline
from pipeline.unet import UNetConfig

# A few CPU steps: one epoch of one iteration, one validation patch.
TINY_TRAINING = {
    "patch_shape": (52, 52, 52),
    "batch_size": 1,
    "max_epochs": 1,
    "iterations_per_epoch": 1,
    "max_val_patches": 1,
    "num_threads": 2,
    "device": "cpu",
}


def train_tiny_model(image: Path, labels: Path, boxes: Path, out_dir: Path) -> RunResult:
    """Run the pipeline's ``train`` step on ``image`` with ground truth ``labels`` in ``boxes``;
    checks that a checkpoint and a finite validation loss came out, and returns the run."""
    config = PipelineConfig(
        data=DataConfig(image=Path(image), labels=Path(labels), boxes=Path(boxes)),
        model=ModelConfig(unet=UNetConfig(width=2)),
        training=dict(TINY_TRAINING),
    )
    result = run_pipeline(config, out_dir, steps=["train"])
    assert result.ran == ["train"]
    assert Path(result.outputs["train.best_checkpoint"]).is_file()
    assert np.isfinite(result.metrics["train.best_val_loss"])
    return result
