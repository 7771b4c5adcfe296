"""fp8sim experiments: one script per result (``python -m experiments`` runs them)."""
