"""Hypothesis strategies for bad and edge-case input to wdax, shared by the fuzz tests.

Each strategy draws a value together with what a correct error must name, so
a test can assert that the message points at the culprit. They know nothing of
any one entry point: the API fuzz (tests/test_api_fuzz.py) builds transforms
and optimisers with them, and a fuzz of ``wdax.sweep.grid`` can draw its rates
and hyperparameters from the same pools (``bad_rates``, ``bad_numbers``,
``bad_booleans``, ``params_trees``).

Examples stay small (a few leaves of a few elements), so that a test runs in
well under a second per example on a CPU. ``FUZZ`` is the settings every fuzz
test uses: 40 examples in the full suite, fewer in the fast loop
(tests/support/examples.py); ``WDAX_FUZZ_EXAMPLES=1000 pytest
tests/test_api_fuzz*.py`` searches deeper than either.
"""

from __future__ import annotations

import math
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import settings
from hypothesis import strategies as st

import wdax
from support.examples import examples

FUZZ = settings(max_examples=examples(40), deadline=None)

# Leaf dtypes a params tree may hold, and which of them wdax decays.
FLOAT_DTYPES = (jnp.float32, jnp.bfloat16, jnp.float16)
OTHER_DTYPES = (jnp.int32, jnp.bool_, jnp.complex64)
NAMES = ('kernel', 'bias', 'scale', 'embedding', 'w', 'b')


class Bad(NamedTuple):
  """A bad value and what describes it (for test ids and failure messages)."""

  value: Any
  what: str


# Scalars that are not a valid rate, learning rate or other non-negative
# number. Each draw is a Bad, so a failing example reads clearly.
def bad_numbers() -> st.SearchStrategy[Bad]:
  negative = st.floats(max_value=-1e-30, allow_nan=False, allow_infinity=False)
  return st.one_of(
      negative.map(lambda v: Bad(v, 'negative float')),
      st.integers(max_value=-1).map(lambda v: Bad(v, 'negative int')),
      st.sampled_from([math.nan, -math.nan]).map(lambda v: Bad(v, 'NaN')),
      st.sampled_from([math.inf, -math.inf]).map(lambda v: Bad(v, 'inf')),
      st.sampled_from([np.float32('nan'), np.float16('inf')]).map(
          lambda v: Bad(v, 'NumPy NaN or inf')
      ),
      st.sampled_from(['abc', '', '0.1', b'0.1']).map(lambda v: Bad(v, 'string')),
      st.sampled_from([True, False, np.bool_(True)]).map(lambda v: Bad(v, 'bool')),
      st.sampled_from([1j, complex(0.1, 0.0), np.complex64(0.1)]).map(
          lambda v: Bad(v, 'complex')
      ),
      st.sampled_from([[0.1], (0.1,), object()]).map(
          lambda v: Bad(v, 'not a number')
      ),
      _wrong_shape().map(lambda v: Bad(v, 'array of the wrong shape')),
      st.sampled_from(
          [jnp.array(-1.0), jnp.array(jnp.nan), np.array(np.inf, np.float32)]
      ).map(lambda v: Bad(v, 'scalar array out of range')),
      st.just(Bad(jnp.array(1, jnp.complex64), 'complex scalar array')),
  )


def _wrong_shape() -> st.SearchStrategy[Any]:
  # Wrong wherever a rate goes: empty, or 2-D. A non-empty 1-D array is a
  # per-layer rate inside rates(), right or wrong only against the leaves it
  # reaches (tests/test_layerwise.py, tests/test_learning_rates.py), and
  # refused anywhere else as not a scalar.
  shapes = st.one_of(
      st.just((0,)),
      st.tuples(st.integers(1, 2), st.integers(1, 2)),
  )
  return st.tuples(shapes, st.booleans()).map(
      lambda a: np.full(a[0], 0.1, np.float32) if a[1] else jnp.full(a[0], 0.1)
  )


def bad_rates() -> st.SearchStrategy[Bad]:
  """What no ``rate=``/``weight_decay=`` accepts, caught at construction."""
  return st.one_of(
      bad_numbers(),
      st.just(Bad(None, 'None')),
      st.just(Bad({}, 'empty tree')),
      bad_numbers().map(lambda b: Bad({'w': 0.1, 'b': b.value}, f'tree holding {b.what}')),
      bad_numbers().map(
          lambda b: Bad(('rates', {'w': b.value}), f'rates() holding {b.what}')
      ),
      bad_numbers().map(
          lambda b: Bad(('rates_default', b.value), f'rates() default {b.what}')
      ),
  )


def build_rate(value: Any) -> Any:
  """Turns a drawn rate into what is passed: ``('rates', spec)`` calls wdax.rates."""
  if isinstance(value, tuple) and len(value) == 2 and value[0] == 'rates':
    return wdax.rates(value[1])
  if isinstance(value, tuple) and len(value) == 2 and value[0] == 'rates_default':
    return wdax.rates({'w': 0.1}, default=value[1])
  return value


def good_rates() -> st.SearchStrategy[Any]:
  """Valid static rates: non-negative finite numbers and scalar arrays."""
  return st.one_of(
      st.floats(0, 0.9, allow_nan=False),
      st.sampled_from([0, 1]),
      st.floats(0, 0.9).map(lambda v: jnp.asarray(v, jnp.float32)),
      st.floats(0, 0.9).map(np.float32),
  )


def nan_schedules() -> st.SearchStrategy[tuple[int, Any]]:
  """``(k, schedule)``: a schedule of 0.1 that returns NaN from step ``k`` on.

  Valid at construction and init: its values are known only as it runs.
  """
  return st.integers(0, 2).map(
      lambda k: (k, lambda count: jnp.where(count >= k, jnp.nan, 0.1))
  )


def bad_booleans() -> st.SearchStrategy[Bad]:
  """What an argument that must be a bool refuses (truthy is not enough)."""
  return st.sampled_from(
      [Bad(1, 'int'), Bad(0.0, 'float'), Bad('yes', 'string'), Bad(None, 'None'),
       Bad(jnp.array([True, False]), 'bool array'), Bad(-1.0, 'negative float')]
  )


# Params trees.


class Leaf(NamedTuple):
  dtype: Any
  shape: tuple[int, ...]


def _leaf_specs(dtypes) -> st.SearchStrategy[Leaf]:
  shapes = st.lists(st.integers(0, 3), min_size=0, max_size=2).map(tuple)
  return st.builds(Leaf, st.sampled_from(dtypes), shapes)


def make_leaf(spec: Leaf, seed: int = 0) -> jnp.ndarray:
  """A leaf of ``spec`` with varied, exactly representable values."""
  n = int(np.prod(spec.shape))
  base = (np.arange(n, dtype=np.float64) - n / 3 + 0.5 + seed) / 2
  if spec.dtype == jnp.bool_:
    return jnp.asarray(base.reshape(spec.shape) > 0)
  if spec.dtype == jnp.int32:
    return jnp.asarray(np.round(base).reshape(spec.shape), jnp.int32)
  if spec.dtype == jnp.complex64:
    return jnp.asarray((base + 0.5j * base[::-1]).reshape(spec.shape), jnp.complex64)
  return jnp.asarray(base.reshape(spec.shape), spec.dtype)


def params_trees(
    *,
    min_float: int = 0,
    none: bool = True,
    others: bool = True,
    numbers: bool = False,
) -> st.SearchStrategy[dict]:
  """Small params trees: nested dicts of float, int, bool, complex, zero-size leaves.

  ``min_float`` floating leaves at least (of non-zero size); ``none`` allows
  ``None`` entries (empty subtrees to JAX); ``others`` allows non-float leaves;
  ``numbers`` allows Python numbers as leaves.
  """
  dtypes = FLOAT_DTYPES + (OTHER_DTYPES if others else ())
  specs = _leaf_specs(dtypes)
  entry = specs.map(make_leaf)
  if numbers:
    entry = st.one_of(entry, st.sampled_from([1.5, -2.0, 3, True, 0.25 + 1j]))
  if none:
    entry = st.one_of(entry, st.none())
  inner = st.dictionaries(st.sampled_from(NAMES), entry, max_size=3)
  tree = st.dictionaries(
      st.sampled_from(['Dense_0', 'Dense_1', 'LayerNorm_0']),
      st.one_of(inner, entry),
      max_size=3,
  )
  if not min_float:
    return tree
  floats = st.lists(
      st.tuples(
          st.sampled_from(FLOAT_DTYPES),
          st.lists(st.integers(1, 3), min_size=0, max_size=2).map(tuple),
      ),
      min_size=min_float,
      max_size=min_float,
  )

  def add_floats(args):
    tree, extra = args
    out = dict(tree)
    for i, (dtype, shape) in enumerate(extra):
      out[f'Float_{i}'] = {'w': make_leaf(Leaf(dtype, shape), seed=i)}
    return out

  return st.tuples(tree, floats).map(add_floats)


def is_float(x: Any) -> bool:
  return x is not None and jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)


def float_paths(params: Any) -> list[str]:
  paths, leaves, _ = wdax.paths.leaves_with_paths(params)
  return [p for p, x in zip(paths, leaves) if is_float(x) and jnp.size(x)]


def grads_like(params: Any, seed: int = 1) -> Any:
  """Updates shaped like ``params``: the same dtype for floats, zeros elsewhere.

  ``None`` stays ``None``, as ``jax.grad`` gives for an empty subtree.
  """

  def leaf(x):
    if x is None:
      return None
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.inexact):
      return (0.25 * x + 0.125 * seed).astype(x.dtype)
    return jnp.zeros_like(x)

  return jax.tree.map(leaf, params, is_leaf=lambda x: x is None)


# Updates that do not fit the params, each with the path a correct error names.


class Mismatch(NamedTuple):
  updates: Any
  path: str  # the path the error must name: the updates' extra one, else the params'
  what: str


def mismatched_updates(params: dict, data: st.DataObject) -> Mismatch:
  """Updates that differ from ``params`` at one drawn leaf (params need one float)."""
  paths, leaves, treedef = wdax.paths.leaves_with_paths(params)
  floats = [i for i, x in enumerate(leaves) if is_float(x)]
  i = data.draw(st.sampled_from(floats), label='leaf')
  path = paths[i]
  x = leaves[i]
  kind = data.draw(
      st.sampled_from(
          ['shape', 'broadcastable', 'scalar', 'int', 'string', 'extra', 'missing',
           'renamed', 'complex_for_real']
      ),
      label='mismatch',
  )
  grads = jax.tree.leaves(grads_like(params))
  new = list(grads)
  if kind == 'shape':
    new[i] = jnp.zeros(tuple(s + 1 for s in x.shape) or (2,), x.dtype)
  elif kind == 'broadcastable':
    ones = (1,) * x.ndim
    new[i] = jnp.zeros((2,) if not x.ndim else ones if ones != x.shape else (2, *x.shape), x.dtype)
  elif kind == 'scalar':
    new[i] = jnp.zeros((), x.dtype) if x.shape != () else jnp.zeros((1,), x.dtype)
  elif kind == 'int':
    new[i] = jnp.zeros(x.shape, jnp.int32)
  elif kind == 'string':
    new[i] = 'g'
  elif kind == 'complex_for_real':
    if jnp.issubdtype(x.dtype, jnp.complexfloating):
      new[i] = jnp.zeros(x.shape, jnp.int32)
      kind = 'int'
    else:
      new[i] = jnp.zeros(x.shape, jnp.complex64)
  updates = jax.tree.unflatten(treedef, new)
  if kind in ('extra', 'missing', 'renamed'):
    parts = path.split('/')
    container = updates
    for key in parts[:-1]:
      container = container[key]
    last = parts[-1]
    if kind == 'extra':
      container[last + '_extra'] = jnp.zeros(1)
      path = '/'.join([*parts[:-1], last + '_extra'])
    elif kind == 'missing':
      del container[last]
    else:
      container['zz_' + last] = container.pop(last)
  return Mismatch(updates, path, kind)


# Masks that do not fit the params.


def bad_masks(params: dict, data: st.DataObject) -> Bad:
  """A mask that does not fit ``params`` (which need a leaf); ``what`` is the
  token a correct error names (a path or pattern, quoted as errors quote it)."""
  paths = wdax.leaf_paths(params)
  first = paths[0]
  kind = data.draw(
      st.sampled_from(
          ['extra_key', 'missing_key', 'int_leaf', 'float_leaf', 'string_leaf',
           'array_leaf', 'string_mask', 'callable_wrong', 'typo_include',
           'typo_exclude', 'combined_typo', 'flax_default']
      ),
      label='mask',
  )
  tree = jax.tree.map(lambda _: True, params)
  if kind == 'extra_key':
    return Bad(dict(tree, Nowhere_9=True), "'Nowhere_9'")
  if kind == 'missing_key':
    tree = dict(tree)
    del tree[first.split('/')[0]]
    return Bad(tree, repr(first))
  if kind in ('int_leaf', 'float_leaf', 'string_leaf', 'array_leaf'):
    value = {'int_leaf': 1, 'float_leaf': 0.5, 'string_leaf': 'yes',
             'array_leaf': jnp.array([True, False])}[kind]
    parts = first.split('/')
    container = tree
    for key in parts[:-1]:
      container = container[key]
    container[parts[-1]] = value
    return Bad(tree, repr(first))
  if kind == 'string_mask':
    return Bad('kernel', "include('kernel')")
  if kind == 'callable_wrong':
    return Bad(lambda p: {'Nowhere_9': True}, repr(first))
  if kind == 'typo_include':
    return Bad(wdax.masks.include('kernal'), "'kernal'")
  if kind == 'typo_exclude':
    return Bad(wdax.masks.exclude('bais'), "'bais'")
  if kind == 'combined_typo':
    return Bad(wdax.masks.min_ndim(1) & ~wdax.masks.include('kernal'), "'kernal'")
  # flax_default(embeddings=True) names the first of kernel, embedding missing.
  last = {p.rsplit('/', 1)[-1] for p in paths}
  if 'kernel' not in last:
    return Bad(wdax.masks.flax_default(embeddings=True), "'kernel'")
  if 'embedding' not in last:
    return Bad(wdax.masks.flax_default(embeddings=True), "'embedding'")
  return Bad(wdax.masks.include('kernal'), "'kernal'")
