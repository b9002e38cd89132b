"""What a run leaves on disk: checkpoints, run dirs, exported models, predictions."""
