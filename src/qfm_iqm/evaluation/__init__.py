"""Evaluation: metrics and sensitivity of trained models, the claims table, the paper comparison, figures."""
