"""The orders in which each seed's trainings visit their examples, epoch by
epoch, drawn on the host with numpy, so the compiled program holds no random
shuffle."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def orders(
    seeds: Sequence[int], train_table: np.ndarray, epochs: Sequence[int], length: int, capacity: int
) -> np.ndarray:
  """Each seed's and training set's order of visit in each of ``epochs``.

  An int32 array of shape ``(seeds, folds, length, capacity)``: row ``[s, k,
  j]`` lists the training examples of ``train_table[k]`` by increasing
  ``np.random.default_rng([seeds[s], epochs[j]]).random(n)``, then the rest
  (never trained on), then zeros to ``capacity``. Rows past ``len(epochs)``
  are unused. The compiled program only reads them, so it holds no random
  number generator for shuffling.
  """
  n = train_table.shape[1]
  out = np.zeros((len(seeds), len(train_table), length, capacity), np.int32)
  for s, seed in enumerate(seeds):
    for j, e in enumerate(epochs):
      noise = np.random.default_rng([seed, e]).random(n)
      for k, row in enumerate(train_table):
        out[s, k, j, :n] = np.argsort(np.where(row > 0, noise, 2.0), kind='stable')
  return out

