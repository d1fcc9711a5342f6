"""One module per task. Each registers what it offers (training, inference cells, evaluation, inference on one
input) with `src.tasks.registry`; the entry points list and run what is registered."""
