"""Tests of wdax.sweep.space: points and the names' uses."""

import numpy as np
import optax
import pytest

from wdax import sweep
from wdax.sweep import space as _space


def test_points_are_the_product_last_name_fastest():
  space = sweep.Space.of({'rate': [0.0, 1e-2, 1e-1], 'lr': [1e-3, 3e-3]})
  points = space.points()
  assert len(space) == 6 and len(points) == 6
  assert points[0] == {'rate': 0.0, 'lr': 1e-3}
  assert points[1] == {'rate': 0.0, 'lr': 3e-3}
  assert points[5] == {'rate': 1e-1, 'lr': 3e-3}
  columns = space.columns()
  np.testing.assert_array_equal(columns['lr'], np.float32([1e-3, 3e-3] * 3))
  np.testing.assert_array_equal(columns['rate'], np.float32([0, 0, 1e-2, 1e-2, 1e-1, 1e-1]))


@pytest.mark.parametrize(
    ('given', 'match'),
    [
        ({}, 'space is empty'),
        ({'rate': []}, r"space\['rate'\] is empty"),
        ({'rate': ['a']}, r"space\['rate'\]: 'a' is not a real number"),
        ({'rate': [True]}, 'not a real number'),
        ({'lr': [-1.0]}, 'is negative'),
        ({'dropout': [1.0]}, r'outside \[0, 1\)'),
        ({'rate': [np.inf]}, 'not finite'),
        ({'not a name': [1.0]}, 'not a Python identifier'),
        ([0.1, 0.2], 'must be a dict'),
        ({'rate': [[0.1]]}, 'list of numbers'),
    ],
)
def test_bad_spaces(given, match):
  with pytest.raises(ValueError, match=match):
    sweep.Space.of(given)


def test_uses():
  space = sweep.Space.of({'rate': [0.1], 'lr': [0.1], 'dropout': [0.0]})

  def optimizer(rate, lr, b1=0.9):
    return optax.adam(lr, b1=b1)

  assert _space.uses(space, optimizer, ('dropout',)) == ('rate', 'lr')
  assert _space.uses(space, lambda **kw: optax.sgd(0.1), ()) == ('rate', 'lr', 'dropout')
  with pytest.raises(ValueError, match="space name 'dropout' is used by neither"):
    _space.uses(space, optimizer, ())
  with pytest.raises(ValueError, match="optimizer requires 'momentum'"):
    _space.uses(space, lambda rate, lr, momentum: None, ('dropout',))
