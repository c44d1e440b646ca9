"""The devices a sweep's configurations are sharded over."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np


def devices(given: int | Sequence[Any] | None) -> list[Any]:
  """The devices to shard over: every device of every process for ``None``
  (after ``jax.distributed.initialize``, all processes'), the first
  ``given`` of them for a count, else the list given.

  Examples:
    >>> import jax
    >>> from wdax.sweep import _devices
    >>> _devices.devices(1) == jax.devices()[:1]
    True
  """
  available = jax.devices()
  if given is None:
    return available
  if isinstance(given, (int, np.integer)):
    if isinstance(given, bool) or not 1 <= given <= len(available):
      raise ValueError(
          f'devices={given}, but {len(available)} {available[0].platform} '
          'device(s) are available.'
      )
    return available[: int(given)]
  for device in given:
    if not isinstance(device, jax.Device):
      raise ValueError(
          f'devices must list jax devices (e.g. jax.devices()[:2]); got {device!r}.'
      )
  return list(given)
