"""Tests of wdax.sweep.errors: running out of memory becomes OutOfMemory, at
the sweep's entry points too, and nothing else does."""

import jax
import numpy as np
import pytest

from wdax import sweep
from wdax.sweep import errors
from wdax.sweep import search

XLA = 'RESOURCE_EXHAUSTED: Out of memory allocating 11880002440 bytes.\nmore detail'


@pytest.mark.parametrize(
    ('raised', 'shown'),
    [
        (jax.errors.JaxRuntimeError(XLA), 'RESOURCE_EXHAUSTED: Out of memory allocating 11880002440 bytes.'),
        (MemoryError('Unable to allocate 3 GiB'), 'Unable to allocate 3 GiB'),
        (MemoryError(), 'MemoryError'),
    ],
)
def test_running_out_of_memory_becomes_out_of_memory_with_its_first_line(raised, shown):
  with pytest.raises(errors.OutOfMemory) as caught:
    with errors.out_of_memory():
      raise raised
  assert str(caught.value) == shown
  assert caught.value.__cause__ is raised
  assert isinstance(caught.value, MemoryError)


@pytest.mark.parametrize(
    'raised', [jax.errors.JaxRuntimeError('INTERNAL: something else'), ValueError('x')]
)
def test_other_errors_pass_unchanged(raised):
  with pytest.raises(type(raised)) as caught:
    with errors.out_of_memory():
      raise raised
  assert caught.value is raised


def test_the_entry_points_raise_out_of_memory_when_xla_runs_out(monkeypatch):
  def train(*args, **kwargs):
    raise jax.errors.JaxRuntimeError(XLA)

  # The one function that runs the compiled programs (an internal name).
  monkeypatch.setattr(search._runner, 'train', train)
  x = np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32)
  data = {'x': x, 'y': (x[:, 0] > 0).astype(np.int32)}
  task = sweep.classifier(sweep.MLP(hidden=(4,), outputs=2))
  optimizer = sweep.kind('adamw', lr=1e-2)
  with pytest.raises(errors.OutOfMemory, match='^RESOURCE_EXHAUSTED: Out of memory'):
    sweep.grid(task, data, {'rate': [0.0, 1.0]}, optimizer=optimizer, folds=2, epochs=1, batch_size=5)
  with pytest.raises(errors.OutOfMemory):
    sweep.fit(task, data, {'rate': 1.0}, optimizer=optimizer, epochs=1, batch_size=5)
