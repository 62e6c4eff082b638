"""``hrnet demo --task X``: generate a synthetic dataset, train a small model, evaluate on held-out data."""
