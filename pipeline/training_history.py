"""The columns of a training's history (``history.csv``, the manifest, the site's curves): in a
module of their own so that readers need not import torch."""

HISTORY_FIELDS = (
    "epoch",
    "attempt",
    "train_loss",
    "val_loss",
    "val_f1",
    "val_precision",
    "val_recall",
    "val_objects",
    "val_seed_nm",  # the seed threshold of the best validation F1
    "train_distance_p99_nm",
    "train_probability_gap",
    "val_distance_p99_nm",
    "val_probability_gap",
    "healthy",  # 1 or 0 at the epoch the health check ran, else NaN
    "seconds",
)
