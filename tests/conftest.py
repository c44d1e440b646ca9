"""Strict numerics for every test, no compilation cache, and the fixtures the
command-line tests share.

Rank promotion raises everywhere. Strict dtype promotion cannot be global:
optax's own Adam mixes its int32 step count with Python floats, which strict
mode rejects. Tests of wdax's own code use the ``strict_dtypes`` fixture, which
turns it on around the test body.
"""

import os

import jax
import numpy as np
import pytest
from support import examples

jax.config.update('jax_numpy_rank_promotion', 'raise')
# `wdax sweep` keeps compiled programs in the user's cache folder by
# default; the tests, and the command lines they start, keep none unless a
# test asks for a folder of its own (tests/test_cli_cache.py).
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


def pytest_configure(config):
  """The fast loop (a marker expression that deselects ``slow``) draws fewer
  hypothesis examples (tests/support/examples.py); the full suite draws each
  test's full count."""
  examples.fast_loop = 'not slow' in (config.option.markexpr or '')


def pytest_collection_modifyitems(config, items):
  """The eager half of each ``chex.variants`` pair runs in the full suite only.

  Its jitted twin, checked against the same expected values, stays in the
  fast loop (``pytest -m 'not slow'``).
  """
  del config
  for item in items:
    if item.name.endswith('__without_jit'):
      item.add_marker(pytest.mark.slow)
