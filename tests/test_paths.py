"""Tests for wdax.paths: the path format and the glob rules."""

import jax.numpy as jnp
import pytest
from flax import nnx
from flax.core import FrozenDict

import wdax
from wdax import paths


@pytest.mark.parametrize(
    'pattern, path, expected',
    [
        ('bias', 'params/Dense_0/bias', True),
        ('bias', 'params/Dense_0/bias_extra', False),
        ('Dense_0', 'params/Dense_0/kernel', True),
        ('Dense_*', 'params/Dense_12/kernel', True),
        ('*/kernel', 'params/Dense_0/kernel', False),
        ('*/*/kernel', 'params/Dense_0/kernel', True),
        ('**/kernel', 'params/Dense_0/kernel', True),
        ('**/kernel', 'kernel', True),
        ('params/Dense_0', 'params/Dense_0/bias', True),
        ('params/Dense_0', 'other/params/Dense_0/bias', False),
        ('params/Dense_0', 'params/Dense_01/bias', False),
        ('layers/*/attn', 'layers/3/attn/query/kernel', True),
        ('Dense_[01]', 'p/Dense_1/kernel', True),
        ('Dense_[!01]', 'p/Dense_1/kernel', False),
        ('Dense_?', 'p/Dense_10/kernel', False),
    ],
)
def test_matches(pattern, path, expected):
  assert paths.matches(pattern, path) is expected


@pytest.mark.parametrize('bad', ['', '/', 3])
def test_bad_pattern_raises(bad):
  with pytest.raises(ValueError, match='pattern'):
    paths.compile_pattern(bad)


def test_paths_of_dict_frozendict_and_sequences():
  tree = {'a': [jnp.zeros(1), {'kernel': jnp.zeros(1)}], 'b': (jnp.zeros(1),)}
  expected = ['a/0', 'a/1/kernel', 'b/0']
  assert wdax.leaf_paths(tree) == expected
  assert wdax.leaf_paths(FrozenDict(tree)) == expected


def test_nnx_state_paths_drop_variable_value():
  model = nnx.Linear(2, 3, rngs=nnx.Rngs(0))
  state = nnx.state(model, nnx.Param)
  assert wdax.leaf_paths(state) == ['bias', 'kernel']
  assert wdax.leaf_paths(nnx.as_pure(state)) == ['bias', 'kernel']


def test_listing_truncates_to_ten():
  text = paths.listing([f'p{i}' for i in range(13)])
  assert "'p9'" in text and "'p10'" not in text and '(3 more)' in text
