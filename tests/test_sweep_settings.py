"""Tests of wdax.sweep.settings: one place where the settings are declared
and checked, taken by the entry points as keyword-only arguments."""

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


def _keywords(fn):
  return [p for p in inspect.signature(fn).parameters.values() if p.kind is p.KEYWORD_ONLY]


def test_the_entry_points_take_the_settings_as_settings_declares_them():
  declared = _keywords(sweep.Settings)
  assert [p.name for p in declared] == [f.name for f in dataclasses.fields(sweep.Settings)]
  for fn, exclude in ((sweep.grid, ()), (sweep.select, ()), (sweep.fit, settings.GRID_ONLY)):
    taken = {p.name: p for p in _keywords(fn)}
    expected = [p for p in declared if p.name not in exclude]
    # Each with the same default and annotation, in the same order, together
    # (the checkpoint's keywords, which change no number, follow them).
    names = list(taken)
    first = names.index(expected[0].name)
    assert names[first:first + len(expected)] == [p.name for p in expected], fn.__name__
    for p in expected:
      assert (taken[p.name].default, taken[p.name].annotation) == (p.default, p.annotation), (fn.__name__, p.name)
    assert not set(exclude) & set(taken), fn.__name__


def test_an_unknown_setting_is_a_type_error_naming_it():
  with pytest.raises(TypeError, match="unexpected keyword argument 'epoch'"):
    sweep.grid(None, None, None, optimizer=None, epoch=3)
  with pytest.raises(TypeError, match="unexpected keyword argument 'fold_seed'"):
    sweep.fit(None, None, None, optimizer=None, fold_seed=3)
  with pytest.raises(TypeError, match='takes 1 positional argument'):
    sweep.Settings(5)  # keyword-only, as in the entry points
