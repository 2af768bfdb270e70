"""Training of the refiner R in both modes of paper §3.4 (accelerate): typed config, losses, loop, checkpoints.

Entry point: :func:`refalign.training.trainer.train` (``refalign train`` on the command line)."""
