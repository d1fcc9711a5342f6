"""One module per task. Each registers what it offers (its config section, training, inference cells, evaluation,
inference on one input) with `src.tasks.registry`; the entry points list and run what is registered. Importing this
package (any task module) registers every task, so that wherever a run's config is read, its task's section is known."""
from src.tasks.registry import registered

registered()
