"""Hub upload of checkpoints."""
