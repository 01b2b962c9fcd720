"""Metrics for reward models and generators."""

from .metrics import binary_metrics, score_summary

__all__ = ["binary_metrics", "score_summary"]
