"""A torch ``Dataset`` mixing the two training modes of paper §3.4, deterministic per ``(seed, index)``.

Sample ``i`` is synthesised from ``numpy.random.default_rng((seed, i))`` alone, so any worker count, process
count or resume point sees the same samples; the trainer walks indices in order from an offset
(:class:`ShardedBatchSampler`), which makes resuming exact.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from refalign.data.samples import MODES, ObjectPhoto, SampleSpec, alignment_sample, multiview_sample, refinement_sample


def to_tensors(sample: dict) -> dict[str, torch.Tensor]:
    """numpy sample → ``image`` (3, R, R) and ``reference`` (3, Rr, Rr) in ``[-1, 1]``, ``mask`` (1, R, R) and
    ``correspondence`` (1, Rr, Rr) float in {0, 1}, ``mode`` long, ``warped`` (3, R, R) in ``[-1, 1]`` and
    ``warp_valid`` (1, R, R) in {0, 1}; ``source`` (3, R, R) in ``[-1, 1]`` and ``source_valid`` (1, R, R): the
    transferred reference's pixels in the hole of an engine sample (:mod:`refalign.data.engine_pairs`), all zero
    (no source) for every other sample."""

    def img(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).float() / 127.5 - 1.0

    def msk(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None]

    return {
        "image": img(sample["image"]),
        "mask": msk(sample["mask"]),
        "reference": img(sample["reference"]),
        "correspondence": msk(sample["correspondence"]),
        "mode": torch.tensor(sample["mode"], dtype=torch.long),
        "warped": img(sample["warped"]),
        "warp_valid": msk(sample["warp_valid"]),
        "source": img(sample["source"]) if "source" in sample else torch.zeros(3, *sample["image"].shape[:2]),
        "source_valid": msk(sample["source_valid"]) if "source_valid" in sample else torch.zeros(1, *sample["mask"].shape),
    }


class SynthesisDataset(Dataset):
    """Synthesised training samples from pre-loaded :class:`ObjectPhoto`\\ s.

    Args:
        photos: the object photos (cached in memory, already resized).
        spec: sample geometry and perturbation ranges.
        alignment_ratio: probability of an alignment-mode sample; the rest are refinement mode.
        multiview_ratio: fraction of refinement samples built from two photos of one object (only objects with
            at least two photos qualify; ignored when there are none).
        length: number of distinct indices (the trainer never needs more than ``steps × batch``).
        seed: data seed.
        pool: ready-made samples (:func:`refalign.data.engine_pairs.engine_pool`), drawn with probability
            ``pool_ratio`` instead of a synthesised one (ignored when empty).
    """

    def __init__(
        self,
        photos: list[ObjectPhoto],
        spec: SampleSpec,
        *,
        alignment_ratio: float = 0.5,
        multiview_ratio: float = 0.2,
        length: int = 10**9,
        seed: int = 0,
        pool: list[dict] | None = None,
        pool_ratio: float = 0.0,
    ):
        if not photos:
            raise ValueError("no photos to synthesise samples from")
        self.photos = photos
        self.spec = spec
        self.alignment_ratio = float(alignment_ratio)
        self.multiview_ratio = float(multiview_ratio)
        self.length = int(length)
        self.seed = int(seed)
        self.pool = list(pool or [])
        self.pool_ratio = float(pool_ratio)
        groups: dict[str, list[int]] = {}
        for i, p in enumerate(photos):
            groups.setdefault(p.group, []).append(i)
        self.multiview_groups = [g for g in groups.values() if len(g) >= 2]

    def __len__(self) -> int:
        return self.length

    def sample(self, index: int) -> dict:
        """The numpy sample of ``index`` (see :mod:`refalign.data.samples`)."""
        rng = np.random.default_rng((self.seed, int(index)))
        if self.pool and rng.random() < self.pool_ratio:  # no draw without a pool: older runs resume identically
            return self.pool[int(rng.integers(len(self.pool)))]
        if rng.random() < self.alignment_ratio:
            return alignment_sample(self.photos[int(rng.integers(len(self.photos)))], rng, self.spec)
        if self.multiview_groups and rng.random() < self.multiview_ratio:
            group = self.multiview_groups[int(rng.integers(len(self.multiview_groups)))]
            a, b = rng.choice(group, 2, replace=False)
            return multiview_sample(self.photos[int(a)], self.photos[int(b)], rng, self.spec)
        return refinement_sample(self.photos[int(rng.integers(len(self.photos)))], rng, self.spec)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return to_tensors(self.sample(index))


class ShardedBatchSampler(Sampler[list[int]]):
    """Global micro-batch ``b`` holds indices ``[b·B, (b+1)·B)``; shard ``r`` of ``n`` takes micro-batches
    ``start + r, start + r + n, …`` below ``stop``. Resuming = a later ``start``; any process count sees the
    same global sequence of samples."""

    def __init__(self, start: int, stop: int, batch_size: int, num_shards: int = 1, shard: int = 0):
        self.start, self.stop, self.batch_size = int(start), int(stop), int(batch_size)
        self.num_shards, self.shard = int(num_shards), int(shard)

    def _batches(self) -> range:
        return range(self.start + self.shard, self.stop, self.num_shards)

    def __iter__(self):
        for b in self._batches():
            yield list(range(b * self.batch_size, (b + 1) * self.batch_size))

    def __len__(self) -> int:
        return len(self._batches())


def alignment_only(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """``(B,)`` float weights: 1 for samples whose correspondence is exact and whose reference is a whole object
    (alignment mode) — where the eq. 5 map has something to find."""
    return (batch["mode"] == MODES["alignment"]).float()
