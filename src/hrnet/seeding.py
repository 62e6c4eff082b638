"""Seeded per-sample randomness, shared by every dataset that augments (top-down keypoints, segmentation)."""

from __future__ import annotations

import numpy as np


class SeededSamples:
    """Mixin for a ``Dataset``: with ``self.seed`` set, sample ``i`` of epoch ``e`` draws from
    ``numpy.random.default_rng((seed, e, i))``, so augmentation does not depend on worker count or order and
    a resumed run draws what the uninterrupted run would have; ``seed=None`` draws fresh OS entropy. The
    training loop calls :meth:`set_epoch` at each epoch start."""

    seed: int | None = None
    epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def rng_for(self, index: int) -> np.random.Generator:
        if self.seed is None:
            return np.random.default_rng()
        return np.random.default_rng((int(self.seed), self.epoch, int(index)))
