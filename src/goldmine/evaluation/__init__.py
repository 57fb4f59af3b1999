"""Evaluation stage: scores, calibration and plots computed from saved predictions."""
