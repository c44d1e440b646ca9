"""Property-based fuzzing of wdax.sweep's entry points (issue 12).

Every argument of ``sweep.grid``, ``sweep.fit`` and ``sweep.select`` is drawn
bad in turn, on a handful of rows, and each draw must either raise
``ValueError`` or ``TypeError`` from wdax's own checks, with a message naming
the argument, or train as documented. An error raised inside JAX, Flax or
NumPy is a failure. The constructors the entry points take (``Task``, the
built-in tasks, ``kind``, ``Halving``) are fuzzed the same way.

``WDAX_FUZZ_EXAMPLES=400 pytest tests/test_sweep_fuzz.py`` searches deeper.
"""

import math

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from support.examples import examples
from support.strategies import Bad
from support.strategies import bad_numbers

import wdax
from wdax import sweep

FUZZ = settings(max_examples=examples(25), deadline=None)

_TASK = sweep.classifier(sweep.MLP(hidden=(2,), outputs=2))


def _data(n=8):
  x = np.linspace(-1.0, 1.0, 2 * n, dtype=np.float32).reshape(n, 2)
  return {'x': x, 'y': np.arange(n, dtype=np.int32) % 2}


def _args(**change):
  args = dict(
      task=_TASK, data=_data(), space={'rate': [0.1]}, optimizer=sweep.kind('adamw'),
      folds=2, epochs=1, evals=1, batch_size=4,
  )
  args.update(change)
  return args


def _assert_clean(error, names):
  """``error`` is wdax's own, raised by its checks, and names the culprit."""
  message = str(error)
  assert any(n in message for n in names), (names, message)
  frame = error.__traceback__
  while frame.tb_next is not None:
    frame = frame.tb_next
  innermost = frame.tb_frame.f_code.co_filename
  assert '/wdax/' in innermost, (innermost, type(error).__name__, message)


def _run(fn, bad, names, **args):
  """Calls ``fn``: an error must be clean, and only a good draw may train."""
  try:
    out = fn(**args)
  except (ValueError, TypeError) as error:
    _assert_clean(error, names)
    return None
  assert bad.what.startswith('ok'), f'{bad.what} ({bad.value!r}) was accepted'
  return out


def _ok(value, what):
  return Bad(value, 'ok: ' + what)


# --- spaces -------------------------------------------------------------------


def _bad_spaces():
  value = bad_numbers().filter(lambda b: 'negative' not in b.what)
  negative = st.one_of(
      st.floats(max_value=-1e-30, allow_nan=False, allow_infinity=False), st.integers(max_value=-1)
  ).map(lambda v: Bad(v, 'negative'))
  return st.one_of(
      st.sampled_from(['rate', [0.1], None, 3, ('rate', 0.1)]).map(lambda v: Bad(v, 'non-dict')),
      st.just(Bad({}, 'empty')),
      st.sampled_from([[], (), np.array([])]).map(lambda v: Bad({'rate': v}, 'empty list')),
      st.sampled_from(['momentum', 'Rate', 'b1']).map(lambda n: Bad({'rate': [0.1], n: [0.5]}, 'unknown name')),
      st.sampled_from([1, '', 'not a name', None]).map(lambda n: Bad({'rate': [0.1], n: [0.5]}, 'bad name')),
      value.map(lambda b: Bad({'rate': [0.1, b.value]}, f'rate {b.what}')),
      value.map(lambda b: Bad({'rate': [0.1], 'dropout': [b.value]}, f'dropout {b.what}')),
      negative.map(lambda b: Bad({'rate': [b.value]}, f'rate {b.what}')),
      st.sampled_from([1.0, 1.5, -0.1]).map(lambda v: Bad({'rate': [0.1], 'dropout': [v]}, 'dropout outside [0, 1)')),
      st.sampled_from(['0.1', b'0.1', None, {'a': 1}, [[0.1, 0.2]], np.ones((1, 2))]).map(lambda v: Bad({'rate': v}, 'not a list')),
      st.sampled_from([0.1, np.float32(0.1), jnp.array([0.1, 0.2])]).map(lambda v: _ok({'rate': v}, 'one number or a vector')),
      st.sampled_from([0.0, 0.1, np.float32(0.5), np.int64(1)]).map(lambda v: _ok({'rate': [v]}, 'rate')),
  )


@FUZZ
@given(_bad_spaces())
def test_grid_refuses_bad_spaces(bad):
  _run(sweep.grid, bad, ('space',), **_args(space=bad.value))


# --- data ---------------------------------------------------------------------


def _bad_data():
  x, y = _data()['x'], _data()['y']
  nan_at = st.tuples(st.integers(0, 7), st.integers(0, 1), st.sampled_from([np.nan, np.inf, -np.inf]))

  def with_nan(spec):
    bad = x.copy()
    bad[spec[0], spec[1]] = spec[2]
    return Bad({'x': bad, 'y': y}, f'non-finite x at row {spec[0]}')

  return st.one_of(
      st.integers(1, 7).map(lambda k: Bad({'x': x, 'y': y[:k]}, 'mismatched leading dims')),
      st.sampled_from([{}, [], None, ()]).map(lambda v: Bad(v, 'empty pytree')),
      st.just(Bad({'x': x[:0], 'y': y[:0]}, 'zero rows')),
      nan_at.map(with_nan),
      st.sampled_from([x.astype(str), x.astype(object), x.astype(np.complex64)]).map(lambda v: Bad({'x': v, 'y': y}, f'x of dtype {v.dtype}')),
      st.sampled_from([y.astype(np.float32), y.astype(str), y[:, None], -y, y + 5]).map(lambda v: Bad({'x': x, 'y': v}, 'bad labels')),
      st.just(Bad({'x': x, 'y': np.array([0, 0, 0, 0, 0, 0, 0, 1], np.int32)}, 'a label with one example')),
      st.just(_ok({'x': x.reshape(8, 2, 1), 'y': y}, '3-D x, which the MLP flattens')),
      st.just(Bad({'x': x[0], 'y': y[0]}, 'no example axis')),
      st.just(Bad({'x': x}, "no 'y'")),
      st.just(Bad({'inputs': x, 'y': y}, "no 'x'")),
      st.just(Bad((x, y), 'a tuple, not a dict')),
      st.just(_ok({'x': x.astype(np.float16), 'y': y.astype(np.int64)}, 'other dtypes')),
  )


@FUZZ
@given(_bad_data(), st.sampled_from(['grid', 'fit', 'test']))
def test_entry_points_refuse_bad_data(bad, where):
  names = ('data', 'test', 'classifier', 'class', 'x', 'y', 'folds')
  if where == 'grid':
    _run(sweep.grid, bad, names, **_args(data=bad.value))
  else:
    if bad.what == 'a label with one example' or (where == 'test' and bad.value is None):
      bad = _ok(bad.value, 'no folds to stratify')
    args = _args(point={'rate': 0.1})
    args.pop('space'), args.pop('folds')
    if where == 'fit':
      args['data'] = bad.value
    else:
      args['test'] = bad.value
    _run(sweep.fit, bad, names, **args)


# --- folds --------------------------------------------------------------------


def _bad_folds():
  ids = np.arange(8) % 2
  return st.one_of(
      st.sampled_from([1, 0, -3, True, 9]).map(lambda v: Bad(v, 'count out of range')),
      st.sampled_from([2.0, '2', None, math.nan]).map(lambda v: Bad(v, 'count not an int')),
      st.integers(0, 12).filter(lambda k: k != 8).map(lambda k: Bad(np.zeros(k, int) + np.arange(k) % 2, 'ids of the wrong length')),
      st.just(Bad(np.array([0, 0, 2, 2, 0, 0, 2, 2]), 'an empty fold')),
      st.just(Bad(np.zeros(8, int), 'a single fold')),
      st.just(Bad(ids - 1, 'negative ids')),
      st.sampled_from([ids.astype(float), ids.astype(bool), ids.astype(str)]).map(lambda v: Bad(v, f'ids of dtype {v.dtype}')),
      st.just(Bad(ids.reshape(2, 4), '2-D ids')),
      st.just(Bad(list(ids), 'ok: ids as a list')),
      st.just(Bad(np.array([0, 1, 2, 0, 1, 2, 0, 1]), 'ok: three folds')),
  )


@FUZZ
@given(_bad_folds())
def test_grid_refuses_bad_folds(bad):
  _run(sweep.grid, bad, ('folds', 'fold', 'class'), **_args(folds=bad.value))


# --- settings -----------------------------------------------------------------

_COUNTS = ('seeds', 'epochs', 'batch_size', 'evals', 'chunk_size', 'memory', 'fold_seed')


def _bad_setting():
  count = st.sampled_from(_COUNTS)
  return st.one_of(
      st.tuples(count, bad_numbers()).map(lambda a: (a[0], a[1])),
      count.filter(lambda n: n != 'fold_seed').map(lambda n: (n, Bad(0, 'zero'))),
      st.sampled_from([[], [0, 0], [-1], [0.5], 'abc', {0: 1}]).map(lambda v: ('seeds', Bad(v, 'bad seeds'))),
      st.sampled_from([0, -1, 99, 1.5, True, 'cpu', [], ['cpu'], [None], {}]).map(lambda v: ('devices', Bad(v, 'bad devices'))),
      st.sampled_from(['halving', 2, True]).map(lambda v: ('prune', Bad(v, 'not a Halving'))),
      st.just(('prune', Bad(sweep.Halving(2), 'min_epochs past epochs'))),
      st.sampled_from([[0, 3], (5,), np.array([1, 2])]).map(lambda v: ('seeds', _ok(v, 'seeds'))),
      st.sampled_from([1, 2**40]).map(lambda v: ('memory', _ok(v, 'memory'))),
  )


@FUZZ
@given(_bad_setting(), st.sampled_from(['grid', 'fit']))
def test_entry_points_refuse_bad_settings(drawn, fn):
  name, bad = drawn
  args = _args(**{name: bad.value})
  if fn == 'fit':
    args.pop('folds')
    args['point'] = args.pop('space') and {'rate': 0.1}
    if name in ('prune', 'fold_seed'):
      # Not a keyword of fit: refused at the call, as a type checker would.
      with pytest.raises(TypeError, match=f"unexpected keyword argument '{name}'"):
        sweep.fit(**args)
      return
  _run(getattr(sweep, fn), bad, (name,), **args)


@FUZZ
@given(
    st.one_of(
        st.sampled_from([None, [0.1], 0.1, 'rate']).map(lambda v: Bad(v, 'not a dict')),
        st.just(Bad({}, 'empty')),
        st.sampled_from([[0.1, 0.2], (0.1,), np.ones(2), '0.1']).map(lambda v: Bad({'rate': v}, 'not one number')),
        bad_numbers().map(lambda b: Bad({'rate': b.value}, b.what)),
        st.sampled_from([0.0, 0.5, np.float32(0.1)]).map(lambda v: _ok({'rate': v}, 'point')),
    )
)
def test_fit_refuses_bad_points(bad):
  args = _args(point=bad.value)
  args.pop('space'), args.pop('folds')
  _run(sweep.fit, bad, ('point', "['rate']"), **args)


# --- the choice of select --------------------------------------------------------


def _bad_choice():
  return st.one_of(
      st.sampled_from(['val_f1', 'loss', '', 'VAL_LOSS', None, 3]).map(lambda v: ('metric', Bad(v, 'unknown metric'))),
      st.sampled_from(['lowest', 'MIN', '', 3, True]).map(lambda v: ('mode', Bad(v, 'unknown mode'))),
      st.sampled_from(['dropout', 'lr', 2, 'yes']).map(lambda v: ('one_se', Bad(v, 'bad one_se'))),
      st.sampled_from(['val_accuracy', 'train_accuracy']).map(lambda v: ('metric', Bad(v, 'a metric with no default mode'))),
      st.sampled_from(['val_loss', 'train_loss']).map(lambda v: ('metric', _ok(v, 'metric'))),
  )


@FUZZ
@given(_bad_choice())
def test_select_refuses_bad_choices(drawn):
  name, bad = drawn
  _run(sweep.select, bad, (name, 'metric', 'mode'), **_args(**{name: bad.value}))


# --- the optimizer ------------------------------------------------------------------


@FUZZ
@given(
    st.sampled_from([
        Bad('adamw', 'a string'), Bad(None, 'None'), Bad(optax.adam(1e-3), 'a transformation'),
        Bad(lambda lr: optax.sgd(lr), 'requires a name not in the space'),
        Bad(lambda rate: 3, 'returns no transformation'),
        Bad(lambda rate: optax.sgd, 'returns a factory'),
        Bad(len, 'a builtin'),
        Bad(lambda rate, **kw: wdax.adamw(1e-3, weight_decay=rate), 'ok: takes **kwargs'),
    ])
)
def test_grid_refuses_bad_optimizers(bad):
  _run(sweep.grid, bad, ('optimizer',), **_args(optimizer=bad.value))


# --- constructors ----------------------------------------------------------------


def _bad_constructions():
  def init(key, batch):
    return {'w': jnp.zeros(2)}

  def loss(params, batch, key, hp):
    return jnp.sum(params['w']), {}

  task = lambda **kw: lambda: sweep.Task(**{'init': init, 'loss': loss, **kw})  # noqa: E731
  rate = bad_numbers()
  return st.one_of(
      st.sampled_from([None, 3, 'init']).map(lambda v: (task(init=v), Bad(v, 'init'), ('init',))),
      st.sampled_from([None, 3]).map(lambda v: (task(loss=v), Bad(v, 'loss'), ('loss',))),
      st.sampled_from(['rate', ('rate', 3), 3]).map(lambda v: (task(hyperparameters=v), Bad(v, 'hyperparameters'), ('hyperparameters',))),
      st.sampled_from(['random', '', None]).map(lambda v: (task(folds=v), Bad(v, 'folds'), ('folds',))),
      st.just((task(folds='stratified'), Bad(None, 'no labels'), ('labels',))),
      st.just((task(labels=lambda d: d['y']), Bad(None, 'labels, not stratified'), ('labels',))),
      st.sampled_from([None, 3, 'mlp', sweep.MLP]).map(lambda v: (lambda: sweep.classifier(v), Bad(v, 'model'), ('model',))),
      st.sampled_from([None, 3, 'mlp']).map(lambda v: (lambda: sweep.regressor(v), Bad(v, 'model'), ('model',))),
      st.sampled_from([None, 3]).map(lambda v: (lambda: sweep.language_model(v), Bad(v, 'model'), ('model',))),
      st.sampled_from(['adamx', '', 'ADAMW', None, 3]).map(lambda v: (lambda: sweep.kind(v), Bad(v, 'kind name'), ('kind',))),
      rate.map(lambda b: (lambda: sweep.kind('adamw', lr=b.value), b, ('lr',))),
      rate.map(lambda b: (lambda: sweep.kind('l2', rate=b.value), b, ('rate',))),
      st.sampled_from([0, -1, 1.5, '2', None, True]).map(lambda v: (lambda: sweep.Halving(v), Bad(v, 'min_epochs'), ('min_epochs',))),
      st.sampled_from([0, 1, 2.0, None, True]).map(lambda v: (lambda: sweep.Halving(1, v), Bad(v, 'reduction_factor'), ('reduction_factor',))),
      st.sampled_from(['', 3, 1.0, ('rate',), ['rate']]).map(lambda v: (lambda: sweep.Halving(1, one_se=v), Bad(v, 'one_se'), ('one_se',))),
  )


@FUZZ
@given(_bad_constructions())
def test_constructors_refuse_bad_arguments(drawn):
  make, bad, names = drawn
  with pytest.raises((ValueError, TypeError)) as excinfo:
    make()
  _assert_clean(excinfo.value, names)


# --- a NaN in one configuration stays there ------------------------------------------


def _linear():
  """Half the mean squared error of a linear model ``x w + b``."""

  def init(key, batch):
    return {'w': jnp.zeros(batch['x'].shape[1]), 'b': jnp.zeros(())}

  def loss(params, batch, key, hp, *, weight):
    errors = 0.5 * (batch['x'] @ params['w'] + params['b'] - batch['y']) ** 2
    return sweep.mean(errors, weight), {}

  return sweep.Task(init=init, loss=loss)


def _line(n=12):
  x = np.linspace(-1.0, 1.0, 2 * n, dtype=np.float32).reshape(n, 2)[np.random.default_rng(0).permutation(n)]
  return {'x': x, 'y': x @ np.float32([1.0, 2.0])}


_SGD = dict(optimizer=lambda lr: optax.sgd(lr), seeds=2, epochs=2, evals=2, batch_size=4)


# The fast loop diverges the first point; the full suite each of the three.
@pytest.mark.parametrize('where', [0, *(pytest.param(w, marks=pytest.mark.slow) for w in (1, 2))])
@pytest.mark.parametrize('prune', [None, sweep.Halving(1, 2), sweep.Halving(1, 2, one_se='lr')])
def test_a_diverging_point_leaves_every_other_point_bitwise_unchanged(where, prune):
  # The same grid twice, but for one learning rate: 1e12 diverges to NaN
  # within the first epoch, 0.03 does not.
  calm = [0.05, 0.02, 0.01]
  wild = list(calm)
  calm[where], wild[where] = 0.03, 1e12
  args = dict(_SGD, folds=3, prune=prune)
  control = sweep.grid(_linear(), _line(), {'lr': calm}, **args)
  result = sweep.grid(_linear(), _line(), {'lr': wild}, **args)
  others = [p for p in range(3) if p != where]
  # Pruned, the diverged point goes first and both others go on; the control
  # keeps two of its three, so only those it kept compare past the first rung.
  compared = others if prune is None else [p for p in others if control.finished[p]]
  for name in result.metrics:
    np.testing.assert_array_equal(result.curves[name][others, ..., 0], control.curves[name][others, ..., 0])
    np.testing.assert_array_equal(result.curves[name][compared], control.curves[name][compared])
  assert not np.isfinite(result.curves['train_loss'][where, :, :, 0]).any()
  if prune is not None:
    np.testing.assert_array_equal(result.finished, [p != where for p in range(3)])
  # Marked on every fold and seed, nowhere else, and never chosen.
  np.testing.assert_array_equal(result.diverged[where], True)
  np.testing.assert_array_equal(result.diverged[others], False)
  assert [row['diverged'] for row in result.table()][where] == 6
  mean, _ = control.summary('val_loss')
  assert result.best('val_loss') == {'lr': wild[others[int(np.argmin(mean[others]))]]}
  assert result.choose('val_loss', one_se='lr').point['lr'] != 1e12


def test_a_row_that_diverges_only_the_folds_training_on_it():
  # Row 5 is finite but so large that one step of SGD on it overflows the
  # next loss: the folds training on it diverge (fold 2 validates on it, so
  # folds 0 and 1 train on it), at lr 0.05; at lr 0 nothing moves.
  data, control = _line(), _line()
  data['x'][5] = [1e15, 0.0]
  control['x'][5] = [0.5, 0.0]
  ids = np.arange(12) % 3
  assert ids[5] == 2
  args = dict(_SGD, folds=ids)
  result = sweep.grid(_linear(), data, {'lr': [0.0, 0.05]}, **args)
  clean = sweep.grid(_linear(), control, {'lr': [0.0, 0.05]}, **args)
  np.testing.assert_array_equal(result.diverged[..., 0], [[False] * 3, [True, True, False]])
  # lr 0 keeps w = 0, so row 5's x never counts: every number is the control's.
  for name in result.metrics:
    np.testing.assert_array_equal(result.curves[name][0], clean.curves[name][0])
  # Fold 2 at lr 0.05 trains without row 5: its training is the control's.
  np.testing.assert_array_equal(result.curves['train_loss'][1, 2], clean.curves['train_loss'][1, 2])
  assert np.isfinite(result.curves['val_loss'][1, 2]).all()
  assert result.best('val_loss') == {'lr': 0.0}
  with pytest.raises(ValueError, match='diverged'):
    sweep.grid(_linear(), data, {'lr': [0.05]}, **args).best('val_loss')
