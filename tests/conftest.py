"""Strict numerics for every test, the tests' own compilation cache, and the
fixtures the command-line tests share.

Rank promotion raises everywhere. Strict dtype promotion cannot be global:
optax's own Adam mixes its int32 step count with Python floats, which strict
mode rejects. Tests of wdax's own code use the ``strict_dtypes`` fixture, which
turns it on around the test body.
"""

import os
import shutil

import jax
import numpy as np
import pytest
from support import examples

jax.config.update('jax_numpy_rank_promotion', 'raise')
# `wdax sweep` keeps compiled programs in the user's cache folder by
# default; the command lines the tests start keep none unless a test asks for
# a folder of its own (tests/test_cli_cache.py), and those run in process use
# the tests' own (pytest_configure below).
os.environ['WDAX_CACHE'] = ''


@pytest.fixture
def strict_dtypes():
  with jax.numpy_dtype_promotion('strict'):
    yield


@pytest.fixture
def keep_xla_flags(monkeypatch):
  """For tests of ``wdax sweep`` in process.

  ``wdax sweep`` may ask XLA for host devices through XLA_FLAGS; keep the
  environment of later tests as it was.
  """
  monkeypatch.setenv('XLA_FLAGS', os.environ.get('XLA_FLAGS', ''))


@pytest.fixture(scope='module')
def devices_started():
  """For the fuzz of the command line (tests/support/cli_fuzzing.py), a module at a time.

  With JAX's backend started, `wdax sweep` cannot ask XLA for host devices:
  no run changes the devices or XLA_FLAGS of later tests. The checks in
  ``cli_fuzzing.invoke`` make sure of it.
  """
  jax.devices()


@pytest.fixture(scope='module')
def data_file(tmp_path_factory):
  """A .npz of 24 rows, 3 features and 3 classes: what the fuzz of the
  command line sweeps with its CHEAP options (tests/support/cli_fuzzing.py)."""
  rng = np.random.default_rng(0)
  y = np.arange(24) % 3
  x = rng.normal(size=(24, 3)) + y[:, None]
  path = tmp_path_factory.mktemp('data') / 'blobs.npz'
  np.savez(path, x=x, y=y)
  return str(path)


# The tests' compiled programs, kept between runs: the fast loop writes about
# 25 MB of them. Past this size the folder is emptied at the start of a run.
JAX_CACHE_BYTES = 512 * 2**20


def pytest_configure(config):
  """The fast loop (a marker expression that deselects ``slow``) draws fewer
  hypothesis examples (tests/support/examples.py); the full suite draws each
  test's full count.

  Programs compiled in process go to JAX's persistent compilation cache in
  pytest's cache folder (``.pytest_cache``; ``--cache-clear`` empties it,
  ``-p no:cacheprovider`` turns it off): the same program is compiled once per
  checkout and JAX version, then loaded. XLA's compilation is about half of
  the fast loop's time on a CPU. A cached program computes the same numbers
  bit for bit; tracing and lowering still run, so the tests of retracing see
  what they would see without it. Subprocesses and the command line's own
  cache (``WDAX_CACHE`` above) are untouched.

  JAX's own size limit is left off: it rescans the folder at every write
  (quadratic in the programs written) and takes a lock at every read.
  """
  examples.fast_loop = 'not slow' in (config.option.markexpr or '')
  cache = getattr(config, 'cache', None)
  if cache is None or jax.config.values['jax_compilation_cache_dir']:
    return
  folder = cache.mkdir('jax')
  if not hasattr(config, 'workerinput'):  # pytest-xdist's controller, or no xdist
    if sum(f.stat().st_size for f in folder.iterdir()) > JAX_CACHE_BYTES:
      shutil.rmtree(folder)
      folder.mkdir()
  jax.config.update('jax_compilation_cache_dir', str(folder))
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)


def pytest_collection_modifyitems(config, items):
  """The eager half of each ``chex.variants`` pair runs in the full suite only.

  Its jitted twin, checked against the same expected values, stays in the
  fast loop (``pytest -m 'not slow'``).
  """
  del config
  for item in items:
    if item.name.endswith('__without_jit'):
      item.add_marker(pytest.mark.slow)
