"""A pause of Python's cyclic garbage collector while programs are traced."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
  """Pauses Python's cyclic garbage collector while programs are traced.

  Tracing allocates many short-lived objects, and the full collections they
  trigger walk every object JAX, Flax and optax hold: about a third of the
  tracing time. All tracing happens in the calling thread; the pool threads
  only compile.
  """
  enabled = gc.isenabled()
  gc.disable()
  try:
    yield
  finally:
    if enabled:
      gc.enable()
