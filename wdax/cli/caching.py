"""The persistent compilation cache of ``wdax sweep``.

On a CPU, XLA's compilation is most of a small sweep's time: about 0.9 s of
the pruned default job's 1.6 s (``benchmarks/RESULTS.md``). JAX can keep
compiled programs on disk, keyed by the program, the devices, the flags and
the versions, and load them instead of compiling again. ``wdax sweep`` turns
that on, so a second run of a job of the same shapes (other rates, seeds,
folds assignments, data of the same size) loads its programs. A cached
program computes the same numbers bit for bit.

The folder, first given wins:

1. ``--no-cache``: none;
2. ``--cache DIR``;
3. a folder JAX was already given (``JAX_COMPILATION_CACHE_DIR``), left as
   it is, thresholds included;
4. ``$WDAX_CACHE``; set but empty, none;
5. ``$XDG_CACHE_HOME/wdax``, by default ``~/.cache/wdax``.

JAX trusts what it loads from the folder, so it is made readable by its
owner only, and should not be shared with others. It is turned on only
after the options and the data have been checked: bad input creates no
folder. A default folder that cannot be made is reported on stderr, and the
sweep runs without a cache; a folder given with ``--cache`` that cannot be
made is bad input.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import jax

from wdax.cli import folders

# Least-recently-used entries are evicted past this size.
MAX_BYTES = 512 * 2**20


def folder(cache: str | None, no_cache: bool) -> str | None:
  """Where compiled programs go for ``--cache`` and ``--no-cache``, or None
  for no cache."""
  if no_cache:
    return None
  if cache is not None:
    return cache
  if jax.config.values['jax_compilation_cache_dir']:
    return jax.config.values['jax_compilation_cache_dir']
  if 'WDAX_CACHE' in os.environ:
    return os.environ['WDAX_CACHE'] or None
  home = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return os.path.join(home, 'wdax')


def check(cache: str | None) -> None:
  """Refuses a ``--cache`` that cannot become a folder; creates nothing."""
  if cache is not None:
    folders.check('--cache', cache)


def enable(cache: str | None, no_cache: bool) -> str | None:
  """Turns JAX's persistent compilation cache on for ``--cache`` and
  ``--no-cache``, before the first compilation; returns its folder, or
  None."""
  path = folder(cache, no_cache)
  if path is None or path == jax.config.values['jax_compilation_cache_dir']:
    return path
  try:
    os.makedirs(path, mode=0o700, exist_ok=True)
  except OSError as e:
    print(
        f'wdax: note: no compilation cache, {path} cannot be made '
        f'({e.strerror or e}); set --cache DIR or --no-cache',
        file=sys.stderr,
    )
    return None
  jax.config.update('jax_compilation_cache_dir', path)
  # JAX caches only programs that took a second to compile by default; a
  # sweep's take less on their own, and add up.
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  jax.config.update('jax_compilation_cache_max_size', MAX_BYTES)
  return path


# Programs loaded from the persistent cache, and compiled and written to it,
# in this process.
_EVENTS = {'/jax/compilation_cache/cache_hits': 0, '/jax/compilation_cache/cache_misses': 0}
_listening = False


def _count(event: str, **kwargs: Any) -> None:
  del kwargs
  if event in _EVENTS:
    _EVENTS[event] += 1


class Loaded:
  """Counts the programs loaded from the cache, and those compiled into it,
  from its making on."""

  def __init__(self):
    global _listening
    if not _listening:
      jax.monitoring.register_event_listener(_count)
      _listening = True
    self._start = dict(_EVENTS)

  def counts(self) -> tuple[int, int]:
    """``(loaded, compiled)`` since this was made."""
    hits, misses = (_EVENTS[e] - self._start[e] for e in _EVENTS)
    return hits, misses

  def describe(self, path: str | None) -> str:
    """A few words on where the programs came from, for the summary line."""
    if path is None:
      return 'compilation included, no cache'
    loaded, compiled = self.counts()
    return f'{loaded} programs loaded from and {compiled} compiled into the cache {path}'
