"""Study: the Optuna layer. Search modes, the objective, the recipe, worker processes, and pure
readers of a study's results."""
