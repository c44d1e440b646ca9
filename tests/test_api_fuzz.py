"""The public API, fuzzed: bad input is refused early and names its culprit.

Every transform and optimiser is built with generated bad arguments (see
tests/support/strategies.py): each must raise ValueError or TypeError at construction
or ``init`` (at trace time for updates that do not fit the params), with a
message naming the argument or the parameter path. Edge-case params (empty
trees, ``None``, integer, bool, complex and zero-size leaves) must work as
documented, checked against an independent reference: the formula in NumPy,
or optax's own optimiser.

The masks, ``wdax.rates``, ``wdax.describe`` and ``wdax.schedules`` are fuzzed
in tests/test_api_fuzz_rates_masks.py, NaN schedules in
tests/test_numerics_edges.py.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import example
from hypothesis import given
from hypothesis import strategies as st
from support import strategies

import wdax

FUZZ = strategies.FUZZ

LR = 0.5
# The decays, each built with the rate and mask given, and the lr they tie to.
DECAYS = {
    'l2': lambda rate, mask=None: wdax.l2(rate, mask=mask),
    'decoupled': lambda rate, mask=None: wdax.decoupled(rate, lr=LR, mask=mask),
    'l1': lambda rate, mask=None: wdax.l1(rate, lr=LR, mask=mask),
    'cautious': lambda rate, mask=None: wdax.cautious(rate, lr=LR, mask=mask),
    'toward': lambda rate, mask=None: wdax.toward('init', rate, lr=LR, mask=mask),
}
# Adam's eps is 1e-4, not 1e-8, which is 0 in float16 (a NaN step for a zero
# gradient, warned of at init: tests/test_numerics_edges.py).
EPS = 1e-4


def _adamw(rate, mask=None, *, coupling):
  return wdax.adamw(LR, weight_decay=rate, mask=mask, coupling=coupling, eps=EPS)


OPTIMISERS = {
    **{
        f'adamw_{c}': functools.partial(_adamw, coupling=c)
        for c in wdax.optimizers.COUPLINGS
    },
    'sgdw': lambda rate, mask=None: wdax.sgdw(
        LR, weight_decay=rate, mask=mask, momentum=0.9
    ),
    'adams': lambda rate, mask=None: wdax.adams(
        LR, weight_decay=rate, mask=mask, eps=EPS
    ),
}
ALL = {**DECAYS, **OPTIMISERS}
RATE_NAME = {name: 'rate' if name in DECAYS else 'weight_decay' for name in ALL}


def _simple_params():
  return {'Dense_0': {'kernel': jnp.ones((2, 3)), 'bias': jnp.ones(3)},
          'w': jnp.ones(2)}


def _raises(build, params):
  """The error building ``build()`` and initialising it on ``params`` raises."""
  with pytest.raises((ValueError, TypeError)) as err:
    build().init(params)
  return str(err.value)


# Rates and learning rates.


@FUZZ
@given(name=st.sampled_from(sorted(ALL)), bad=strategies.bad_rates())
def test_a_bad_rate_is_refused_naming_it(name, bad):
  message = _raises(
      lambda: ALL[name](strategies.build_rate(bad.value)), _simple_params()
  )
  assert RATE_NAME[name] in message or 'rates()' in message, (bad.what, message)
  if bad.what.startswith('tree holding'):
    assert "parameter path 'b" in message or 'tree does not fit' in message


LR_TAKERS = {
    'decoupled': lambda lr: wdax.decoupled(0.1, lr=lr),
    'l1': lambda lr: wdax.l1(0.1, lr=lr),
    'cautious': lambda lr: wdax.cautious(0.1, lr=lr),
    'toward': lambda lr: wdax.toward('init', 0.1, lr=lr),
    **{
        f'adamw_{c}': functools.partial(wdax.adamw, coupling=c)
        for c in wdax.optimizers.COUPLINGS
    },
    'sgdw': lambda lr: wdax.sgdw(lr),
    'adams': lambda lr: wdax.adams(lr),
}


@FUZZ
@given(name=st.sampled_from(sorted(LR_TAKERS)), bad=strategies.bad_numbers())
def test_a_bad_learning_rate_is_refused_naming_it(name, bad):
  message = _raises(lambda: LR_TAKERS[name](bad.value), _simple_params())
  assert 'lr' in message or 'learning_rate' in message or 'learning rate' in message


# A coefficient fine as a Python float can overflow a leaf's dtype.


@FUZZ
@given(
    name=st.sampled_from(sorted(ALL)),
    dtype=st.sampled_from([jnp.float16, jnp.bfloat16, jnp.float32]),
    data=st.data(),
)
def test_a_rate_that_overflows_the_dtype_is_refused_at_init(name, dtype, data):
  top = float(jnp.finfo(dtype).max)
  # At least 2.5 times the largest finite value: with lr = 0.5, lr * rate
  # overflows too.
  rate = data.draw(st.floats(2.5 * top, 1e300), label='rate')
  params = {'layer': {'w': jnp.ones((2, 2), dtype)}}
  message = _raises(lambda: ALL[name](rate), params)
  assert "'layer/w'" in message and RATE_NAME[name] in message
  assert f'overflows its dtype {jnp.dtype(dtype)}' in message


# Hyperparameters other than the rate.


def _bad_hyperparameters():
  numbers = strategies.bad_numbers()
  at_least_one = st.sampled_from([1.0, 1, 1.5, 2.0])
  booleans = strategies.bad_booleans()
  return st.one_of(
      st.tuples(st.just('b1'), st.one_of(numbers, at_least_one.map(lambda v: strategies.Bad(v, '>= 1')))),
      st.tuples(st.just('b2'), st.one_of(numbers, at_least_one.map(lambda v: strategies.Bad(v, '>= 1')))),
      st.tuples(st.just('eps'), numbers),
      st.tuples(st.just('eps_root'), numbers),
      st.tuples(st.just('nesterov'), booleans),
      st.tuples(
          st.just('mu_dtype'),
          st.sampled_from(['int32', 'abc', jnp.int8, 3, jnp.ones(2), 'bool']).map(
              lambda v: strategies.Bad(v, 'not a float dtype')
          ),
      ),
      st.tuples(
          st.just('coupling'),
          st.sampled_from(['LR', 'decoupled', '', None, 1, 0.5]).map(
              lambda v: strategies.Bad(v, 'unknown')
          ),
      ),
      st.tuples(st.just('peak_lr'), numbers),
      st.tuples(st.just('peak_lr'), st.just(strategies.Bad(0.0, 'zero'))),
  )


OPTIMISER_BUILDERS = {
    'adamw': lambda **kw: wdax.adamw(0.1, **kw),
    'adams': lambda **kw: wdax.adams(0.1, **kw),
    'sgdw': lambda **kw: wdax.sgdw(0.1, **kw),
}
TAKES = {
    'adamw': {'b1', 'b2', 'eps', 'eps_root', 'nesterov', 'mu_dtype', 'coupling', 'peak_lr'},
    'adams': {'b1', 'b2', 'eps'},
    'sgdw': {'nesterov', 'coupling', 'peak_lr', 'momentum'},
}


@FUZZ
@given(
    optimiser=st.sampled_from(sorted(OPTIMISER_BUILDERS)),
    arg=st.one_of(
        _bad_hyperparameters(),
        st.tuples(st.just('momentum'), strategies.bad_numbers()),
    ),
)
def test_a_bad_hyperparameter_is_refused_naming_it(optimiser, arg):
  name, bad = arg
  if name not in TAKES[optimiser]:
    with pytest.raises(TypeError, match=name):  # keyword-only, and unknown
      OPTIMISER_BUILDERS[optimiser](**{name: bad.value})
    return
  kwargs = {name: bad.value}
  if name == 'peak_lr':
    kwargs['coupling'] = 'schedule'
  if name == 'nesterov' and optimiser == 'sgdw':
    kwargs['momentum'] = 0.9
  if name == 'momentum' and bad.value is None:
    return  # None is plain SGD, documented
  message = _raises(lambda: OPTIMISER_BUILDERS[optimiser](**kwargs), _simple_params())
  assert name in message, (bad.what, message)


@FUZZ
@given(
    optimiser=st.sampled_from(['adamw', 'sgdw']),
    coupling=st.sampled_from(['lr', 'none']),
    peak=st.floats(0.1, 10),
)
def test_peak_lr_with_a_coupling_that_ignores_it_is_refused(optimiser, coupling, peak):
  with pytest.raises(ValueError, match='peak_lr'):
    OPTIMISER_BUILDERS[optimiser](coupling=coupling, peak_lr=peak)


@FUZZ
@given(reference=st.one_of(
    st.sampled_from(['Init', 'params', '']),
    st.floats(allow_nan=True),
    st.just(None),
    st.dictionaries(st.sampled_from(['w', 'x']), st.floats(0, 1), min_size=1),
))
def test_a_bad_toward_reference_is_refused_naming_it(reference):
  message = _raises(lambda: wdax.toward(reference, 0.1), _simple_params())
  assert 'reference' in message


# Edge-case params work as documented.

RATE = 0.25


def _coefficient(name):
  return RATE * (1.0 if name == 'l2' else LR)


def _np(x):
  x = np.asarray(x)
  if jnp.issubdtype(x.dtype, jnp.complexfloating):
    return x.astype(np.complex128)
  return x.astype(np.float64)


def _reference_decay(name, u, p, ref, c):
  """The decay's documented rule in float64 (complex128), one leaf."""
  u, p = _np(u), _np(p)
  if name == 'l2':
    return u + c * p
  if name in ('decoupled',):
    return u - c * p
  if name == 'toward':
    return u - c * (p - _np(ref))
  if name == 'cautious':
    if np.iscomplexobj(p):
      away = np.real(np.conj(u) * p) > 0
    else:
      away = u * p > 0
    return np.where(away, u, u - c * p)
  z = p + u  # l1
  sign = np.where(z == 0, 0, z / np.where(z == 0, 1, np.abs(z)))
  return np.where(np.abs(z) <= c, -p, u - c * sign)


def _tolerance(dtype):
  return {
      jnp.dtype(jnp.bfloat16): 2e-2,
      jnp.dtype(jnp.float16): 2e-3,
  }.get(jnp.dtype(dtype), 2e-6)


def _assert_leaf(got, want, like, floor=0.0):
  like = jnp.asarray(like)  # a Python number is held as JAX holds it
  assert got.shape == like.shape
  tol = max(_tolerance(like.dtype), floor)
  np.testing.assert_allclose(_np(got), want, rtol=tol, atol=tol, equal_nan=False)


def _moved(params):
  # Away from the reference toward took at init, by an exact step.
  def move(x):
    if not strategies.is_float(x):
      return x
    x = jnp.asarray(x)
    return x + jnp.asarray(1, x.dtype)

  return jax.tree.map(move, params)


@FUZZ
@given(
    name=st.sampled_from(sorted(DECAYS)),
    params=strategies.params_trees(numbers=True),
    jit=st.booleans(),
)
def test_decays_on_edge_case_params_work_as_documented(name, params, jit):
  # Integer and bool leaves pass unchanged, None stays None, zero-size leaves
  # give zero-size updates, an empty tree an empty update; floating and
  # complex leaves follow the rule.
  tx = DECAYS[name](RATE)
  state = tx.init(params)
  now = _moved(params) if name == 'toward' else params
  updates = strategies.grads_like(params)
  update = jax.jit(tx.update) if jit else tx.update
  got, _ = update(updates, state, now)
  assert jax.tree.structure(got, is_leaf=lambda x: x is None) == jax.tree.structure(
      updates, is_leaf=lambda x: x is None
  )
  c = _coefficient(name)
  triples = zip(jax.tree.leaves(got), jax.tree.leaves(updates), jax.tree.leaves(now))
  for g, u, p, r in zip(*zip(*triples), jax.tree.leaves(params)):
    if not strategies.is_float(p):
      np.testing.assert_array_equal(g, u)
      assert g.dtype == u.dtype
      continue
    c_leaf = float(jnp.asarray(c, jnp.asarray(p).dtype).real) if name != 'l1' else c
    _assert_leaf(g, _reference_decay(name, u, p, r, c_leaf), p)


def _float_mask(params):
  return jax.tree.map(strategies.is_float, params)


def _optax_reference(name, params):
  """The same optimiser built from optax's own parts."""
  mask = _float_mask(params)
  if name == 'adamw_lr':
    return optax.adamw(LR, weight_decay=RATE, mask=mask, eps=EPS)
  if name == 'sgdw':
    return optax.chain(
        optax.sgd(LR, momentum=0.9), optax.add_decayed_weights(-LR * RATE, mask)
    )
  # With a constant lr, 'schedule' and 'none' decay by the rate per step,
  # 'corrected' by lr * rate (its multiplier lr_t / peak is 1).
  c = LR * RATE if name == 'adamw_corrected' else RATE
  return optax.chain(
      optax.scale_by_adam(eps=EPS),
      optax.scale_by_learning_rate(LR),
      optax.add_decayed_weights(-c, mask),
  )


def _adams_reference(updates, params):
  # One step of AdamS from a zero state: Adam's step is -lr g / (|g| + eps)
  # and the decay -lr * rate * p / sqrt(mean |g|^2) over all floating leaves.
  pairs = [(u, p) for u, p in zip(jax.tree.leaves(updates), jax.tree.leaves(params))]
  squares = [np.abs(_np(u)) ** 2 for u, p in pairs if strategies.is_float(p)]
  n = sum(s.size for s in squares)
  mean = sum(s.sum() for s in squares) / max(n, 1)
  out = []
  for u, p in pairs:
    g = _np(u)
    step = -LR * g / (np.abs(g) + EPS)
    if strategies.is_float(p) and mean > 0:
      step = step - LR * RATE * _np(p) / np.sqrt(mean)
    out.append(step)
  return out


# How far AdamS's first step, computed in each leaf's dtype, may fall from the
# float64 formula above, element by element. Every operation in a dtype d
# rounds with a relative error <= u (unit roundoff: 2^-11 float16, 2^-8
# bfloat16, 2^-24 float32; 6 * 2^-24 for complex64, whose products and
# quotients round within a few units of their real parts' roundoff: Higham,
# "Accuracy and Stability of Numerical Algorithms", 2002, 3.6) in d's normal
# range, and with an absolute error <= tau below it (half the
# smallest subnormal: 2^-25 in float16). From a zero state optax's Adam
# computes in d, with b = (b1, b2) = (0.9, 0.999):
#   m = (1-b1) g, v = (1-b2) |g|^2, m^ = m / c1, v^ = v / c2,
#   a = m^ / (sqrt(v^) + eps),
# where c_k = 1 - b_k is computed in float32 from b_k rounded to float32 (the
# subtraction is exact), off from 1 - b_k by the known kappa_k (1.3e-5 for
# b2: 0.999 is 0.99900001 in float32), then cast to d (u). To first order:
#   m^ = g (1 + dm) + em,  |dm| <= 4u + kappa_1,  |em| <= tau / (1-b1);
#   v^ = |g|^2 (1 + dv) + ev,  |dv| <= 5u + kappa_2,  |ev| <= tau / (1-b2).
# A floor that takes v as rounded relatively (by 2^-11 in float16) misses ev:
# v is below float16's smallest normal, 2^-14, whenever |g| < 2^-7 /
# sqrt(1-b2) = 0.25, and is then held to 2^-25 absolute, which v / c2
# magnifies 1000 times: 3e-5, up to 7% of v^ at the smallest gradient the
# strategy draws (1/48), 3.5% of sqrt(v^) and of Adam's step. optax.adam does
# the same (it keeps v in the parameter's dtype); AdamS's mean is in float32. With E_v = |dv| |g|^2 + ev and
# |sqrt(x) - sqrt(y)| = |x-y| / (sqrt x + sqrt y), r = sqrt(v^) (1+u) has
#   |r - |g|| <= E_r = E_v / (|g| + sqrt(max(|g|^2 - E_v, 0))) + u |g|,
# and with a* = g / (|g| + eps), rounding eps, the sum and the quotient (3u),
#   |a - a*| <= E_a = (|g| (|dm| + 3u) + em + |a*| E_r) / (|g| + eps - E_r).
# The mean of v^ over all floating leaves is summed in float32 from the stored
# v (each off by 3u_i |g_i|^2 (1-b2) + tau_i) and divided by c2 and N there:
#   |vbar - vbar*| <= E_bar = mean_i(3u_i |g_i|^2 + tau_i / (1-b2))
#                             + vbar* (kappa_2 + (N + 1) u32),
# so with t = E_bar / vbar*, rsqrt (2 u32), rate * rsqrt in float32 (2 u32),
# cast to d and times p (2u), the decay D* = rate p / sqrt(vbar*) is off by
#   |D - D*| <= |D*| (t / (2 (1-t)^1.5) + 4 u32 + 2u).
# Adding the decay to a (u) and scaling by lr (u) gives the bound
#   lr (E_a + |D - D*| + 2u (|a*| + |D*|)).
B1, B2 = 0.9, 0.999  # wdax.adams's defaults, which OPTIMISERS['adams'] keeps
U32 = 2.0**-24


def _roundoff(x):
  """``(u, tau)`` of ``x``'s dtype: unit roundoff, half the smallest subnormal."""
  dtype = jnp.asarray(x).dtype
  info = jnp.finfo(dtype)
  u = float(info.eps) / 2 * (6 if jnp.issubdtype(dtype, jnp.complexfloating) else 1)
  return u, float(info.smallest_subnormal) / 2


def _kappa(b):
  """The relative error of ``1 - b`` computed in float32."""
  return abs(float(np.float32(1) - np.float32(b)) / (1 - b) - 1)


def _adams_bound(updates, params):
  """Per element, how far AdamS may be from ``_adams_reference`` (see above)."""
  pairs = list(zip(jax.tree.leaves(updates), jax.tree.leaves(params)))
  floats = [
      (np.abs(_np(g)) ** 2, _roundoff(g)) for g, p in pairs if strategies.is_float(p)
  ]
  n = sum(s.size for s, _ in floats)
  mean = sum(s.sum() for s, _ in floats) / max(n, 1)
  rho = 0.0  # the relative error of 1 / sqrt(vbar)
  if mean > 0:
    error_sum = sum((3 * u * s + tau / (1 - B2)).sum() for s, (u, tau) in floats)
    t = error_sum / n / mean + _kappa(B2) + (n + 1) * U32
    rho = t / (2 * (1 - t) ** 1.5) + 4 * U32
  out = []
  for g, p in pairs:
    if not strategies.is_float(p):
      out.append(None)
      continue
    u, tau = _roundoff(g)
    a_g = np.abs(_np(g))
    e_v = (5 * u + _kappa(B2)) * a_g**2 + tau / (1 - B2)
    e_r = e_v / (a_g + np.sqrt(np.maximum(a_g**2 - e_v, 0))) + u * a_g
    a = a_g / (a_g + EPS)
    e_a = (a_g * (7 * u + _kappa(B1)) + tau / (1 - B1) + a * e_r) / (a_g + EPS - e_r)
    e_a = np.where(a_g == 0, 0.0, e_a)  # g = 0: m^ = v^ = 0, and a = 0 exactly
    d = RATE * np.abs(_np(p)) / np.sqrt(mean) if mean > 0 else 0 * a_g
    out.append(LR * (e_a + d * (rho + 2 * u) + 2 * u * (a + d)))
  return out


@FUZZ
@given(
    name=st.sampled_from(sorted(OPTIMISERS)),
    params=strategies.params_trees(numbers=True),
)
# Float16 holds v of the gradient 1/48 as a subnormal, 3.7% off (see above).
@example(
    name='adams',
    params={'Dense_0': strategies.make_leaf(strategies.Leaf(jnp.float16, (2, 2)))},
)
def test_optimisers_on_edge_case_params_match_optax(name, params):
  tx = OPTIMISERS[name](RATE)
  updates = strategies.grads_like(params)
  got, _ = jax.jit(tx.update)(updates, tx.init(params), params)
  assert jax.tree.structure(got, is_leaf=lambda x: x is None) == jax.tree.structure(
      updates, is_leaf=lambda x: x is None
  )
  if name == 'adams':
    want = _adams_reference(updates, params)
    bounds = _adams_bound(updates, params)
  else:
    reference = _optax_reference(name, params)
    want = jax.tree.leaves(reference.update(updates, reference.init(params), params)[0])
    bounds = [None] * len(want)
  for g, w, p, bound in zip(jax.tree.leaves(got), want, jax.tree.leaves(params), bounds):
    if bound is None:
      _assert_leaf(g, _np(w), p if strategies.is_float(p) else g)
      continue
    assert g.shape == jnp.shape(p) and np.all(np.isfinite(bound))
    off = np.abs(_np(g) - _np(w))
    assert np.all(off <= bound), (np.asarray(g), w, bound)


# Masks that do not fit the params are refused at init, naming the culprit.


@FUZZ
@given(
    name=st.sampled_from(sorted(ALL)),
    params=strategies.params_trees(min_float=1),
    data=st.data(),
)
def test_a_mask_that_does_not_fit_is_refused_naming_it(name, params, data):
  bad = strategies.bad_masks(params, data)
  message = _raises(lambda: ALL[name](RATE, mask=bad.value), params)
  assert bad.what in message, message


# Updates that do not fit the params are refused while tracing, naming the path.


@FUZZ
@given(
    name=st.sampled_from(sorted(ALL)),
    params=strategies.params_trees(min_float=1),
    data=st.data(),
)
def test_updates_that_do_not_fit_the_params_name_the_path(name, params, data):
  tx = ALL[name](RATE)
  state = tx.init(params)
  bad = strategies.mismatched_updates(params, data)
  # jax.jit itself refuses a string argument, before wdax sees it.
  update = tx.update if bad.what == 'string' else jax.jit(tx.update)
  with pytest.raises(ValueError) as err:
    update(bad.updates, state, params)
  assert repr(bad.path) in str(err.value), (bad.what, str(err.value))


@FUZZ
@given(
    name=st.sampled_from(sorted([*OPTIMISERS, 'toward'])),
    params=strategies.params_trees(min_float=1, none=False),
    data=st.data(),
)
def test_a_state_initialised_with_other_params_is_refused(name, params, data):
  tx = ALL[name](RATE)
  state = tx.init(params)
  other = strategies.mismatched_updates(params, data)
  if other.what in ('int', 'string', 'complex_for_real'):
    return  # not another params tree: covered by the updates test
  others = jax.tree.map(lambda x: x, other.updates)
  with pytest.raises(ValueError) as err:
    jax.jit(tx.update)(strategies.grads_like(others), state, others)
  message = str(err.value)
  assert 'state' in message or 'reference' in message, message


@FUZZ
@given(
    name=st.sampled_from(sorted(OPTIMISERS)),
    params=strategies.params_trees(min_float=1, none=False),
    data=st.data(),
)
def test_a_none_update_of_a_parameter_is_refused_by_adam(name, params, data):
  # Adam's moments need an update for every parameter; SGD passes None on.
  paths = strategies.float_paths(params) or wdax.leaf_paths(params)
  path = data.draw(st.sampled_from(paths), label='path')
  updates = strategies.grads_like(params)
  container = updates
  *parents, last = path.split('/')
  for key in parents:
    container = container[key]
  container[last] = None
  tx = OPTIMISERS[name](RATE)
  state = tx.init(params)
  if name == 'sgdw':
    got, _ = tx.update(updates, state, params)
    assert jax.tree.leaves(got, is_leaf=lambda x: x is None)[
        wdax.leaf_paths(params).index(path)
    ] is None
    return
  with pytest.raises(ValueError, match=repr(path)):
    tx.update(updates, state, params)


@pytest.mark.parametrize('name', sorted(DECAYS))
def test_a_prng_key_leaf_passes_through_the_decays(name):
  # nnx keeps RNG keys in its state; they are arrays, never decayed.
  params = {'w': jnp.ones(2), 'rngs': {'key': jax.random.key(0)}}
  updates = {'w': jnp.zeros(2), 'rngs': {'key': jax.random.key(1)}}
  tx = DECAYS[name](RATE)
  got, _ = jax.jit(tx.update)(updates, tx.init(params), params)
  assert jnp.array_equal(
      jax.random.key_data(got['rngs']['key']), jax.random.key_data(updates['rngs']['key'])
  )
  assert not np.array_equal(got['w'], updates['w']) or name == 'toward'
  report = wdax.describe(params, rate=RATE)
  assert [(r.path, r.dtype, r.decayed) for r in report.rows] == [
      ('rngs/key', 'key<fry>', False), ('w', 'float32', True)
  ]
