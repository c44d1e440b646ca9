"""The seam between the command line and the sweep's memory model: the one
module of :mod:`wdax.cli` that imports :mod:`wdax.sweep`'s internal
modules (the checks of the entry points and the planning of chunks).

The command line refuses, before anything compiles, a sweep whose smallest
chunk cannot fit on a device; it asks the sweep's own estimate, the one
that sizes the chunks, instead of keeping a second memory model.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any

import jax
import optax

from wdax.sweep import _memory
from wdax.sweep import _validation
from wdax.sweep.settings import Settings
from wdax.sweep.tasks import Task


def smallest_chunk(
    task: Task,
    data: Any,
    space: Mapping[str, Sequence[float]],
    optimizer: Callable[..., optax.GradientTransformation],
    *,
    seeds: int,
    batch_size: int,
    folds: int,
    fold_seed: int,
    device: Any,
) -> int:
  """The bytes a device needs for the smallest chunk of a sweep: one
  configuration (:func:`wdax.sweep._memory.bytes_per_configuration`) and the
  initial parameters and model state of every seed, which every device
  holds at once."""
  settings = Settings(folds=folds, fold_seed=fold_seed, batch_size=batch_size, epochs=1, devices=[device])
  prepared = _validation.prepare('grid', task, data, space, optimizer, settings)
  first = jax.tree.map(lambda a: jax.ShapeDtypeStruct((1, *a.shape[1:]), a.dtype), prepared.data)
  variables = jax.eval_shape(prepared.job.init, jax.random.key(0), first)
  return prepared.per_configuration + seeds * _memory.nbytes(variables)
