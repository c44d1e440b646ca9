"""Masks, ``wdax.rates``, ``wdax.describe`` and ``wdax.schedules``, fuzzed.

Bad arguments to the mask constructors, to ``rates`` and to ``describe`` are
refused with a message naming the argument, pattern or parameter path. Valid
ones, combined at random, select what an independent evaluation of their
documented meaning selects, and ``describe`` reports it leaf by leaf.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import assume
from hypothesis import given
from hypothesis import strategies as st
from support import strategies

import wdax
from wdax import masks

FUZZ = strategies.FUZZ

NOT_PATTERNS = st.one_of(
    st.sampled_from(['', '/', '//', None, 3, 0.5, True, b'kernel', ('kernel',)]),
    st.just(['kernel']),
    st.just({'kernel': True}),
    st.just(jnp.ones(2)),
)


@FUZZ
@given(
    which=st.sampled_from(['include', 'exclude']),
    good=st.lists(st.sampled_from(strategies.NAMES), max_size=2),
    bad=NOT_PATTERNS,
    where=st.integers(0, 2),
)
def test_a_bad_pattern_is_refused_naming_it(which, good, bad, where):
  patterns = [*good]
  patterns.insert(min(where, len(patterns)), bad)
  with pytest.raises(ValueError, match='pattern'):
    getattr(masks, which)(*patterns)


@pytest.mark.parametrize('which', ['include', 'exclude'])
def test_no_pattern_is_refused(which):
  with pytest.raises(ValueError, match=rf'{which}\(\) needs at least one pattern'):
    getattr(masks, which)()


@FUZZ
@given(n=st.one_of(
    st.integers(max_value=-1),
    st.floats(allow_nan=True),
    st.sampled_from(['2', None, True, False, jnp.array(2), [2]]),
))
def test_a_bad_min_ndim_is_refused_naming_it(n):
  with pytest.raises(ValueError, match=r'min_ndim\(n\): n must'):
    masks.min_ndim(n)


@FUZZ
@given(bad=strategies.bad_booleans())
def test_a_bad_flax_default_flag_is_refused_naming_it(bad):
  with pytest.raises(ValueError, match='embeddings'):
    masks.flax_default(bad.value)


@FUZZ
@given(
    operand=st.one_of(
        st.sampled_from(['kernel', 'bias']).map(lambda v: (v, 'include')),
        st.sampled_from([3, 0.5, 1.5]).map(lambda v: (v, 'mask must be a bool')),
        st.just(([1], "mask tree entry for '0'")),
    ),
    left=st.booleans(),
    op=st.sampled_from(['&', '|']),
)
def test_combining_a_mask_with_a_non_mask_names_the_mask(operand, left, op):
  value, token = operand
  mask = masks.include('kernel')
  with pytest.raises(ValueError) as err:
    if op == '&':
      _ = (mask & value) if left else (value & mask)
    else:
      _ = (mask | value) if left else (value | mask)
  assert token in str(err.value)


# Valid masks, combined at random, select what their meaning says.


def _mask_expressions(params):
  """A mask built from the constructors and &, |, ~, with its meaning."""
  paths = wdax.leaf_paths(params)
  segments = sorted({s for p in paths for s in p.split('/')})
  ndims = [len(np.shape(x)) for x in jax.tree.leaves(params)]

  def meaning_of(kind, arg):
    if kind == 'include':
      return [arg in p.split('/') for p in paths]
    if kind == 'exclude':
      return [arg not in p.split('/') for p in paths]
    if kind == 'min_ndim':
      return [d >= arg for d in ndims]
    if kind == 'tree':
      return list(arg)
    return [p.rsplit('/', 1)[-1] == 'kernel' for p in paths]  # flax_default

  def build(kind, arg):
    if kind == 'include':
      return masks.include(arg)
    if kind == 'exclude':
      return masks.exclude(arg)
    if kind == 'min_ndim':
      return masks.min_ndim(arg)
    if kind == 'tree':
      treedef = jax.tree.structure(params)
      return jax.tree.unflatten(treedef, list(arg))
    return masks.flax_default()

  kinds = [
      st.tuples(st.just('include'), st.sampled_from(segments)),
      st.tuples(st.just('exclude'), st.sampled_from(segments)),
      st.tuples(st.just('min_ndim'), st.integers(0, 3)),
      st.tuples(st.just('tree'), st.lists(st.booleans(), min_size=len(paths), max_size=len(paths))),
  ]
  if any(p.rsplit('/', 1)[-1] == 'kernel' for p in paths):
    kinds.append(st.tuples(st.just('flax_default'), st.none()))
  atom = st.one_of(kinds).map(lambda ka: (build(*ka), meaning_of(*ka)))

  def combine(children):
    return st.one_of(
        st.tuples(children, children).map(
            lambda ab: (masks.as_mask(ab[0][0]) & ab[1][0],
                        [x and y for x, y in zip(ab[0][1], ab[1][1])])
        ),
        st.tuples(children, children).map(
            lambda ab: (masks.as_mask(ab[0][0]) | ab[1][0],
                        [x or y for x, y in zip(ab[0][1], ab[1][1])])
        ),
        children.map(lambda a: (~masks.as_mask(a[0]), [not x for x in a[1]])),
    )

  return st.recursive(atom, combine, max_leaves=4)


@FUZZ
@given(params=strategies.params_trees(min_float=1), data=st.data())
def test_random_masks_select_what_they_mean_and_describe_reports_it(params, data):
  mask, meaning = data.draw(_mask_expressions(params), label='mask')
  leaves = jax.tree.leaves(params)
  # Only floating (and complex) leaves are ever selected.
  want = [m and strategies.is_float(x) for m, x in zip(meaning, leaves)]
  got = masks.as_mask(mask)(params)
  assert jax.tree.leaves(got) == want
  report = wdax.describe(params, rate=0.5, mask=mask)
  assert [r.path for r in report.rows] == wdax.leaf_paths(params)
  assert [r.decayed for r in report.rows] == want
  assert [r.rate for r in report.rows] == ['0.5' if w else '0' for w in want]
  assert [r.shape for r in report.rows] == [tuple(np.shape(x)) for x in leaves]
  assert [r.dtype for r in report.rows] == [str(np.dtype(x.dtype)) for x in leaves]
  decayed = sum(int(np.size(x)) for x, w in zip(leaves, want) if w)
  assert report.decayed == decayed
  assert report.total == sum(int(np.size(x)) for x in leaves)


# wdax.rates.


@FUZZ
@given(spec=st.one_of(
    st.sampled_from([None, [], 'kernel', 0.1, {}, [('kernel', 0.1)]]),
    st.dictionaries(
        st.sampled_from(['', '/', '//', None, 3, 0.5, True, b'kernel', ('kernel',)]),
        st.just(0.1),
        min_size=1,
    ),
))
def test_a_bad_rates_spec_is_refused(spec):
  with pytest.raises(ValueError) as err:
    wdax.rates(spec)
  assert 'rates()' in str(err.value) or 'pattern' in str(err.value)


@FUZZ
@given(bad=strategies.bad_numbers(), where=st.sampled_from(['value', 'default']))
def test_a_bad_rate_inside_rates_is_refused_naming_it(bad, where):
  # A non-empty 1-D array of valid rates is a per-layer value in rates().
  per_layer = isinstance(bad.value, (np.ndarray, jax.Array)) and np.ndim(bad.value) == 1
  assume(not (per_layer and np.size(bad.value) and np.all(np.asarray(bad.value) >= 0)))
  with pytest.raises(ValueError) as err:
    if where == 'value':
      wdax.rates({'kernel': bad.value})
    else:
      wdax.rates({'kernel': 0.1}, default=bad.value)
  message = str(err.value)
  assert "'kernel'" in message if where == 'value' else 'default' in message


@FUZZ
@given(params=strategies.params_trees(min_float=1), data=st.data())
def test_rates_resolve_to_the_first_match_or_refuse_a_dead_pattern(params, data):
  paths = wdax.leaf_paths(params)
  segments = sorted({s for p in paths for s in p.split('/')}) + ['kernal']
  patterns = data.draw(
      st.lists(st.sampled_from(segments), min_size=1, max_size=3, unique=True),
      label='patterns',
  )
  values = data.draw(
      st.lists(st.sampled_from([0.0, 0.125, 0.25, 0.5]), min_size=len(patterns),
               max_size=len(patterns)), label='values'
  )
  default = data.draw(st.sampled_from([0.0, 1.0]), label='default')
  spec = dict(zip(patterns, values))
  # Independently: the first pattern naming a segment of the path wins.
  chosen = []
  taken = {p: 0 for p in patterns}
  for path in paths:
    first = next((p for p in patterns if p in path.split('/')), None)
    chosen.append(default if first is None else spec[first])
    if first is not None:
      taken[first] += 1
  dead = [p for p in patterns if not taken[p]]
  rates = wdax.rates(spec, default=default)
  if dead:
    with pytest.raises(ValueError, match=repr(dead[0])):
      rates.resolve(paths)
    with pytest.raises(ValueError, match=repr(dead[0])):
      wdax.decoupled(rates).init(params)
    return
  assert rates.resolve(paths) == chosen
  report = wdax.describe(params, rate=rates)
  floats = [strategies.is_float(x) for x in jax.tree.leaves(params)]
  assert [r.decayed for r in report.rows] == [
      f and c != 0 for f, c in zip(floats, chosen)
  ]


# wdax.describe.


@FUZZ
@given(
    params=strategies.params_trees(),
    junk=st.sampled_from(['abc', object(), np.array(['a', 'b']), np.array([None])]),
    where=st.sampled_from(['Junk', 'Dense_0']),
)
def test_describe_refuses_a_leaf_that_is_not_an_array_naming_it(params, junk, where):
  params = dict(params)
  if where == 'Dense_0' and isinstance(params.get(where), dict):
    params[where] = dict(params[where], junk=junk)
    path = 'Dense_0/junk'
  else:
    params['Junk'] = junk
    path = 'Junk'
  with pytest.raises(ValueError, match=repr(path)):
    wdax.describe(params, rate=0.1)
  with pytest.raises(ValueError, match=repr(path)):
    wdax.decoupled(0.1).init(params)


@FUZZ
@given(
    params=strategies.params_trees(min_float=1),
    # None is no rate: describe then shows the mask alone.
    bad=strategies.bad_rates().filter(lambda b: b.value is not None),
)
def test_describe_refuses_a_bad_rate_naming_it(params, bad):
  with pytest.raises((ValueError, TypeError)) as err:
    wdax.describe(params, rate=strategies.build_rate(bad.value))
  assert 'rate' in str(err.value)


@FUZZ
@given(params=strategies.params_trees(min_float=1), data=st.data())
def test_describe_refuses_a_mask_that_does_not_fit_naming_it(params, data):
  bad = strategies.bad_masks(params, data)
  with pytest.raises(ValueError) as err:
    wdax.describe(params, rate=0.1, mask=bad.value)
  assert bad.what in str(err.value), str(err.value)


def test_describe_of_an_empty_tree_is_an_empty_report():
  for empty in ({}, [], None, {'a': None, 'b': {}}):
    report = wdax.describe(empty, rate=0.1)
    assert report.rows == () and report.total == 0 and report.share == 0.0
    assert str(report).endswith('decayed: 0 of 0 parameters (0.0%)')


def test_describe_shows_a_python_number_as_jax_would_hold_it():
  report = wdax.describe({'w': 1.5, 'n': 3}, rate=0.1)
  assert [(r.path, r.dtype, r.decayed) for r in report.rows] == [
      ('n', 'int32', False), ('w', 'float32', True)
  ]
  assert math.isclose(report.share, 0.5)


# wdax.schedules: the rate-related helpers.

POSITIVE = st.floats(1e-300, 1e300)


@FUZZ
@given(
    which=st.sampled_from(['from_timescale', 'timescale']),
    a=POSITIVE,
    lr=POSITIVE,
    per_epoch=st.one_of(st.none(), POSITIVE),
)
def test_timescales_are_finite_and_exact_or_refused(which, a, lr, per_epoch):
  # tau = 1 / (lr r S) both ways: a finite, positive float64 answer, equal to
  # the exact one to rounding, or a ValueError; never inf, 0 or ZeroDivision.
  fn = getattr(wdax.schedules, which)
  logs = math.log(lr) + math.log(a) + math.log(per_epoch or 1.0)
  try:
    got = fn(a, lr, steps_per_epoch=per_epoch)
  except ValueError as err:
    assert 'out of range' in str(err)
    # Refused only where float64 cannot hold the answer to full precision:
    # above its largest value (e^709.78) or below its smallest normal one
    # (e^-708.40), within rounding.
    assert not -708.3 < -logs < 709.7
    return
  assert math.isfinite(got) and got > 0
  assert math.isclose(math.log(got), -logs, rel_tol=1e-12, abs_tol=1e-12)


@FUZZ
@given(
    which=st.sampled_from(['from_timescale', 'timescale']),
    arg=st.sampled_from(['first', 'lr', 'steps_per_epoch']),
    bad=strategies.bad_numbers(),
)
def test_a_bad_timescale_argument_is_refused_naming_it(which, arg, bad):
  kwargs = {'first': 1.0, 'lr': 1e-3, 'steps_per_epoch': None}
  kwargs[arg] = bad.value
  first = kwargs.pop('first')
  name = {'from_timescale': 'tau', 'timescale': 'rate'}[which] if arg == 'first' else arg
  with pytest.raises(ValueError, match=name):
    getattr(wdax.schedules, which)(first, **kwargs)


@FUZZ
@given(
    which=st.sampled_from(['follow', 'corrected']),
    arg=st.sampled_from(['lr_schedule', 'rate', 'peak_lr']),
    bad=strategies.bad_numbers(),
)
def test_a_bad_follow_or_corrected_argument_is_refused_naming_it(which, arg, bad):
  if arg == 'rate' and isinstance(bad.value, (list, tuple)):
    return  # a rate tree, fitted to the params at init
  kwargs = {'lr_schedule': optax.linear_schedule(1e-3, 0.0, 100), 'rate': 0.1,
            'peak_lr': None}
  kwargs[arg] = bad.value
  with pytest.raises(ValueError, match=arg):
    getattr(wdax.schedules, which)(
        kwargs['lr_schedule'], kwargs['rate'], peak_lr=kwargs['peak_lr']
    )


@FUZZ
@given(schedule=st.sampled_from([
    lambda t: jnp.nan * t,
    lambda t: -1.0 * t,
    lambda t: 1.0 * t,
    lambda t: jnp.ones(3) * t,
    lambda t: 0.1 if t < 5 else 0.01,
]))
def test_a_schedule_without_a_readable_peak_asks_for_peak_lr(schedule):
  for call in (
      lambda: wdax.schedules.peak(schedule),
      lambda: wdax.schedules.follow(schedule, 0.1),
      lambda: wdax.adamw(schedule, coupling='schedule'),
  ):
    with pytest.raises(ValueError, match='peak'):
      call()
