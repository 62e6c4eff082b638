"""Datasets, transforms and synthetic data generators."""
