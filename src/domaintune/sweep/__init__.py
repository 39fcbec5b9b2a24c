"""Optuna sweeps: search space syntax, study set-up and resume, pruning inside a trial, reports."""
