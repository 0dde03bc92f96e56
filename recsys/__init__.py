"""Models, training, evaluation, export and the model registry."""
