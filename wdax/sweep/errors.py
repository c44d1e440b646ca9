"""The errors :mod:`wdax.sweep` raises that a caller may want to handle.

Each is a subclass of the built-in error it used to be, so that code which
caught that keeps working, and new code catches the type instead of reading
the message:

- :class:`NoChoice` (a :class:`ValueError`): no point can be chosen, because
  every one that could be had a diverged training (or was pruned);
- :class:`OutOfMemory` (a :class:`MemoryError`): a sweep ran out of memory,
  on the device (XLA) or on the host (NumPy).

Examples:
  >>> from wdax.sweep import errors
  >>> try:
  ...   raise errors.NoChoice('every point diverged')
  ... except ValueError as e:
  ...   type(e).__name__
  'NoChoice'
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import jax


class NoChoice(ValueError):
  """No point of a sweep can be chosen: every point that finished had a
  diverged training (NaN or infinite loss), or was pruned.

  Raised by :meth:`wdax.sweep.Result.choose`, hence by
  :func:`wdax.sweep.select`.
  """


class OutOfMemory(MemoryError):
  """A sweep ran out of memory: on a device, as XLA reports it, or on the
  host. The message is the first line of the original error, which is
  chained as ``__cause__``.

  Raised by :func:`wdax.sweep.grid`, :func:`wdax.sweep.fit` and
  :func:`wdax.sweep.select` while they train.
  """


# XLA reports an allocation that fails with this status; JAX's runtime error
# carries it only in its message.
_XLA_STATUS = 'RESOURCE_EXHAUSTED'


def _first_line(e: BaseException) -> str:
  text = str(e)
  return text.splitlines()[0] if text else type(e).__name__


@contextlib.contextmanager
def out_of_memory() -> Iterator[None]:
  """Turns running out of memory inside the block into :class:`OutOfMemory`.

  A :class:`MemoryError` (NumPy on the host) or a
  :class:`jax.errors.JaxRuntimeError` with XLA's ``RESOURCE_EXHAUSTED``
  status becomes :class:`OutOfMemory`; any other error passes unchanged. It
  is the one place where the sweep reads an error's message: JAX gives the
  status no other way.

  Examples:
    >>> from wdax.sweep import errors
    >>> try:
    ...   with errors.out_of_memory():
    ...     raise MemoryError('Unable to allocate 3 GiB')
    ... except errors.OutOfMemory as e:
    ...   print(e)
    Unable to allocate 3 GiB
  """
  try:
    yield
  except OutOfMemory:
    raise
  except MemoryError as e:
    raise OutOfMemory(_first_line(e)) from e
  except jax.errors.JaxRuntimeError as e:
    if _XLA_STATUS not in str(e):
      raise
    raise OutOfMemory(_first_line(e)) from e


__all__ = ['NoChoice', 'OutOfMemory', 'out_of_memory']
