"""Seeded data order and per-sample randomness, shared by every task that trains.

Three pieces make a run reproducible across process counts and interruptions:

* :class:`SeededSamples`: sample ``i`` of epoch ``e`` augments with ``numpy.random.default_rng((seed, e, i))``;
* :class:`SeededOrder`: the epoch's order is a permutation of ``(seed, e)`` alone, dealt to the ranks
  like cards, so ``W`` processes at batch ``b`` see step by step the samples one process sees at ``W * b``;
* :class:`ResumableLoader`: the training loader Lightning checkpoints mid-epoch; resumed, it hands out the
  rest of the epoch the uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
from torch.utils.data import DataLoader, Dataset, DistributedSampler


class SeededSamples:
    """Mixin for a ``Dataset``: with ``self.seed`` set, sample ``i`` of epoch ``e`` draws from
    ``numpy.random.default_rng((seed, e, i))``, so augmentation does not depend on worker count, rank or order
    and a resumed run draws what the uninterrupted run would have; ``seed=None`` draws fresh OS entropy.
    :class:`ResumableLoader` calls :meth:`set_epoch` before each pass."""

    seed: int | None = None
    epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def rng_for(self, index: int) -> np.random.Generator:
        if self.seed is None:
            return np.random.default_rng()
        return np.random.default_rng((int(self.seed), self.epoch, int(index)))


class SeededOrder(DistributedSampler):
    """The training order (on one process too): torch's ``DistributedSampler`` with ``shuffle=True``, i.e.
    ``randperm(n)`` seeded by ``seed + epoch``, cut to a multiple of ``num_replicas``, rank ``r`` taking
    positions ``r, r + W, ...``. Being a ``DistributedSampler``, Lightning keeps it under DDP instead of
    wrapping it. ``skip`` drops that many leading indices from the next pass (mid-epoch resume)."""

    def __init__(self, dataset: Dataset, seed: int, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=int(seed), drop_last=True)
        self.skip = 0

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        skip, self.skip = self.skip, 0
        return iter(indices[skip:])


class EvaluationShard(DistributedSampler):
    """Evaluation order: rank ``r`` of ``W`` takes samples ``r, r + W, ...`` with no padding, so the ranks
    together see every sample exactly once (torch's sampler repeats samples to even out the ranks, which
    would count them twice in a metric). One process sees ``0 .. n-1``."""

    def __init__(self, dataset: Dataset, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, len(self.dataset), self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, len(self.dataset), self.num_replicas))


class ResumableLoader(DataLoader):
    """The training ``DataLoader`` over a :class:`SeededOrder`, with the ``state_dict`` / ``load_state_dict``
    Lightning saves in mid-epoch checkpoints: the epoch and the batches handed out in it. Each pass first gives
    the dataset the sampler's epoch (Lightning sets it before the first batch is drawn, also when resuming
    mid-epoch, where it skips ``on_train_epoch_start``); after :meth:`load_state_dict` the pass of that epoch
    starts after the batches already trained on."""

    sampler: SeededOrder

    def __init__(self, dataset: Dataset, sampler: SeededOrder, batch_size: int, **kwargs: Any) -> None:
        super().__init__(dataset, batch_size=batch_size, sampler=sampler, drop_last=True, **kwargs)
        self._epoch = 0
        self._handed_out = 0
        self._resume: dict[str, int] | None = None

    def __iter__(self) -> Iterator[Any]:
        self._epoch = self.sampler.epoch
        if isinstance(self.dataset, SeededSamples):
            self.dataset.set_epoch(self._epoch)
        resume, self._resume = self._resume, None
        self._handed_out = resume["batches"] if resume and resume["epoch"] == self._epoch else 0
        self.sampler.skip = self._handed_out * self.batch_size
        for batch in super().__iter__():
            self._handed_out += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self._epoch, "batches": self._handed_out}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume = {"epoch": int(state["epoch"]), "batches": int(state["batches"])}
