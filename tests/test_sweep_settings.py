"""Tests of wdax.sweep.settings: one place where the settings are checked."""

import dataclasses
import inspect

import numpy as np
import pytest

from wdax import sweep
from wdax.sweep import settings


def test_defaults_and_normal_forms():
  s = sweep.Settings(seeds=3, folds=np.array([0, 1, 1]), devices=[object()])
  assert s.seeds == (0, 1, 2) and s.epochs == 20 and s.batch_size == 32
  assert s.folds.dtype == np.int64 and not s.folds.flags.writeable
  assert isinstance(s.devices, tuple)
  with pytest.raises(dataclasses.FrozenInstanceError):
    s.epochs = 3


@pytest.mark.parametrize(
    ('given', 'match'),
    [
        (dict(folds=1), 'folds must be an int >= 2'),
        (dict(folds=np.array([0.5, 1.0])), 'folds must be a count or a vector of int fold ids'),
        (dict(seeds=[1, 1]), 'repeated entries'),
        (dict(seeds=0), 'seeds must be an int >= 1'),
        (dict(seeds='0'), 'seeds must be a count or a list'),
        (dict(batch_size=True), 'batch_size must be an int'),
        (dict(evals=0), 'evals must be an int >= 1'),
        (dict(chunk_size=0), 'chunk_size must be an int >= 1'),
        (dict(memory=-5), 'memory must be an int >= 1'),
        (dict(devices=[]), 'devices is empty'),
        (dict(devices='cpu'), 'devices must be None, a count or a list'),
        (dict(fold_seed=-1), 'fold_seed must be an int >= 0'),
    ],
)
def test_bad_settings(given, match):
  with pytest.raises(ValueError, match=match):
    sweep.Settings(**given)


def test_make_names_unknown_settings():
  with pytest.raises(TypeError, match=r"grid\(\) got unknown setting\(s\) 'epoch'"):
    settings.make('grid', {'epoch': 3})
  with pytest.raises(TypeError, match=r"fit\(\) got unknown setting\(s\) 'fold_seed'"):
    settings.make('fit', {'fold_seed': 3}, exclude=settings.GRID_ONLY)


def test_the_fields_are_written_once():
  names = [f.name for f in dataclasses.fields(sweep.Settings)]
  grid = inspect.signature(sweep.grid).parameters
  assert [n for n in grid if n in names] == names
  assert all(grid[n].default == f.default for n, f in zip(names, dataclasses.fields(sweep.Settings)))
