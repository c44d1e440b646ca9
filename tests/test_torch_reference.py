"""wdax + optax chains against stored PyTorch trajectories.

``tests/fixtures/torch_reference.npz`` holds float64 parameter trajectories of
``torch.optim`` optimisers (SGD, Adam, AdamW; coupled and decoupled decay, a
warmup-cosine schedule, a bias left undecayed), written by
``tests/fixtures/make_torch_fixtures.py``. Each test replays one case with
the wdax chain that claims to be equivalent, in float32 and in float64, and
compares every step; others check that plausible wrong chains are told apart.
torch is not needed to run these tests.
"""

from __future__ import annotations

import functools
import pathlib
from collections.abc import Callable
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import wdax

FIXTURE = pathlib.Path(__file__).parent / 'fixtures' / 'torch_reference.npz'

# Tolerances of the float32 replay, per optimiser family. Replayed in float64
# the same chains agree with torch to ~1e-15 (test_matches_torch_float64), so
# what remains at float32 is rounding (eps ~1.2e-7) accumulated over the steps.
# SGD leaves it there: max abs error seen 3.6e-7. Adam divides each step by
# sqrt(v), which magnifies the rounding of entries whose gradient is small
# relative to its history: max abs error seen 2.4e-6, the same as optax's own
# float32 optax.adamw against this fixture (2.4e-6), so it is the problem's
# noise floor, not wdax's. Each bound keeps a few-fold margin and is still
# more than a thousand times below what a wrong chain gives
# (test_wrong_chain_is_caught: 1.4e-2 or more).
SGD_TOL = {'rtol': 1e-5, 'atol': 1e-6}
ADAM_TOL = {'rtol': 1e-5, 'atol': 1e-5}
F64_TOL = {'rtol': 1e-10, 'atol': 1e-12}

CASES = (
    'sgd_wd',
    'sgd_momentum_wd',
    'sgd_nesterov_wd',
    'adam_wd',
    'adamw',
    'adamw_sched_masked',
)


def _tol(case: str) -> dict[str, float]:
  return SGD_TOL if case.startswith('sgd') else ADAM_TOL


@functools.cache
def _fixture() -> dict[str, np.ndarray]:
  with np.load(FIXTURE, allow_pickle=False) as f:
    return {k: f[k] for k in f.files}


class _Hyper(NamedTuple):
  lr: float
  rate: float
  momentum: float
  b1: float
  b2: float
  eps: float
  schedule: optax.Schedule | None


def _hyper(case: str) -> _Hyper:
  fx = _fixture()

  def get(name: str) -> float:
    return float(fx.get(f'{case}/{name}', 0.0))

  schedule = None
  if f'{case}/peak_lr' in fx:
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=get('peak_lr'),
        warmup_steps=int(fx[f'{case}/warmup_steps']),
        decay_steps=int(fx[f'{case}/decay_steps']),
    )
  return _Hyper(
      lr=float(fx[f'{case}/lr'][0]),
      rate=get('weight_decay'),
      momentum=get('momentum'),
      b1=get('b1'),
      b2=get('b2'),
      eps=get('eps'),
      schedule=schedule,
  )


def _adam(h: _Hyper, lr: optax.ScalarOrSchedule) -> optax.GradientTransformation:
  return optax.adam(lr, b1=h.b1, b2=h.b2, eps=h.eps)


# The wdax chain each torch optimiser should equal.
CHAINS: dict[str, Callable[[_Hyper], optax.GradientTransformation]] = {
    'sgd_wd': lambda h: optax.chain(wdax.l2(h.rate), optax.sgd(h.lr)),
    'sgd_momentum_wd': lambda h: optax.chain(
        wdax.l2(h.rate), optax.sgd(h.lr, momentum=h.momentum)
    ),
    'sgd_nesterov_wd': lambda h: optax.chain(
        wdax.l2(h.rate), optax.sgd(h.lr, momentum=h.momentum, nesterov=True)
    ),
    'adam_wd': lambda h: optax.chain(wdax.l2(h.rate), _adam(h, h.lr)),
    'adamw': lambda h: optax.chain(
        _adam(h, h.lr), wdax.decoupled(h.rate, lr=h.lr)
    ),
    'adamw_sched_masked': lambda h: optax.chain(
        _adam(h, h.schedule),
        wdax.decoupled(h.rate, lr=h.schedule, mask=wdax.masks.include('kernel')),
    ),
}


def _loss(params: dict[str, jax.Array], x: jax.Array, y: jax.Array) -> jax.Array:
  z = x @ params['kernel'] + params['bias'][None, :]
  return jnp.mean((jnp.tanh(z) - y) ** 2)


def _replay(
    tx: optax.GradientTransformation, dtype: jnp.dtype = jnp.float32
) -> dict[str, np.ndarray]:
  """Parameters after 0..steps steps of ``tx`` on the fixture's problem."""
  fx = _fixture()
  x = jnp.asarray(fx['X'], dtype)
  y = jnp.asarray(fx['Y'], dtype)
  params = {
      'kernel': jnp.asarray(fx['kernel0'], dtype),
      'bias': jnp.asarray(fx['bias0'], dtype),
  }

  def step(carry, _):
    params, state = carry
    grads = jax.grad(_loss)(params, x, y)
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
    return (params, state), params

  _, trajectory = jax.lax.scan(
      step, (params, tx.init(params)), length=int(fx['steps'])
  )
  return {
      k: np.concatenate([np.asarray(params[k])[None], np.asarray(v)])
      for k, v in trajectory.items()
  }


def _reference(case: str) -> dict[str, np.ndarray]:
  fx = _fixture()
  return {k: fx[f'{case}/{k}'] for k in ('kernel', 'bias')}


def _max_error(case: str, tx: optax.GradientTransformation) -> float:
  got, want = _replay(tx), _reference(case)
  return max(float(np.max(np.abs(got[k] - want[k]))) for k in want)


def test_fixture_layout():
  fx = _fixture()
  steps = int(fx['steps'])
  n, d = fx['X'].shape
  k = fx['Y'].shape[1]
  chex.assert_shape(fx['Y'], (n, k))
  chex.assert_shape(fx['kernel0'], (d, k))
  chex.assert_shape(fx['bias0'], (k,))
  chex.assert_type([fx['X'], fx['Y'], fx['kernel0'], fx['bias0']], np.float64)
  # Inputs are float32-representable, so the float32 replay starts exactly
  # where torch did.
  for name in ('X', 'Y', 'kernel0', 'bias0'):
    np.testing.assert_array_equal(fx[name].astype(np.float32), fx[name])
  assert steps >= 25
  assert str(fx['torch_version'])
  for case in CASES:
    ref = _reference(case)
    chex.assert_shape(ref['kernel'], (steps + 1, d, k))
    chex.assert_shape(ref['bias'], (steps + 1, k))
    chex.assert_shape(fx[f'{case}/lr'], (steps,))
    chex.assert_type([ref['kernel'], ref['bias'], fx[f'{case}/lr']], np.float64)
    np.testing.assert_array_equal(ref['kernel'][0], fx['kernel0'])
    np.testing.assert_array_equal(ref['bias'][0], fx['bias0'])


@pytest.mark.parametrize('case', [c for c in CASES if c != 'adamw_sched_masked'])
def test_constant_cases_have_constant_lr(case):
  lrs = _fixture()[f'{case}/lr']
  np.testing.assert_array_equal(lrs, np.full_like(lrs, lrs[0]))


def test_optax_schedule_matches_torch_lambda_lr():
  # torch recorded the lr each optimizer.step() used; optax evaluates its
  # schedule at the step count 0, 1, ... of the same update.
  h = _hyper('adamw_sched_masked')
  torch_lrs = _fixture()['adamw_sched_masked/lr']
  optax_lrs = np.asarray(h.schedule(jnp.arange(torch_lrs.shape[0])))
  np.testing.assert_allclose(optax_lrs, torch_lrs, rtol=1e-6, atol=1e-10)


def _assert_trajectories_close(
    case: str, got: dict[str, np.ndarray], tol: dict[str, float]
) -> None:
  want = _reference(case)
  for name in want:
    for t in range(want[name].shape[0]):
      np.testing.assert_allclose(
          got[name][t],
          want[name][t],
          **tol,
          err_msg=f'{case}: {name} after {t} steps',
      )


@pytest.mark.parametrize('case', CASES)
def test_matches_torch(case):
  got = _replay(CHAINS[case](_hyper(case)))
  assert got['kernel'].dtype == np.float32
  _assert_trajectories_close(case, got, _tol(case))


@pytest.mark.parametrize('case', CASES)
def test_matches_torch_float64(case):
  # In float64 all that is left is rounding near 1e-16, so a difference in the
  # update rule far below float32's noise floor would still show.
  with jax.enable_x64(True):
    h = _hyper(case)
    if h.schedule is not None:
      # optax's schedules compute in float32 even under x64; torch's recorded
      # lr per step, indexed by the count the transforms keep, is exact.
      torch_lrs = jnp.asarray(_fixture()[f'{case}/lr'], jnp.float64)
      h = h._replace(schedule=lambda count: torch_lrs[count])
    got = _replay(CHAINS[case](h), jnp.float64)
  assert got['kernel'].dtype == np.float64
  _assert_trajectories_close(case, got, F64_TOL)


def test_coupled_and_decoupled_adam_trajectories_differ():
  # Without this the comparisons could not tell Adam + L2 from AdamW.
  fx = _fixture()
  for name in ('kernel', 'bias'):
    gap = np.max(np.abs(fx[f'adam_wd/{name}'] - fx[f'adamw/{name}']))
    assert gap > 1000 * ADAM_TOL['atol'], (name, gap)


def _shifted(schedule: optax.Schedule) -> optax.Schedule:
  return lambda count: schedule(count + 1)


# Chains that are each a plausible mistake for the case they are run against.
WRONG: dict[str, tuple[str, Callable[[_Hyper], optax.GradientTransformation]]] = {
    'l2_for_adamw': (
        'adamw',
        lambda h: optax.chain(wdax.l2(h.rate), _adam(h, h.lr)),
    ),
    'decoupled_for_adam_l2': (
        'adam_wd',
        lambda h: optax.chain(_adam(h, h.lr), wdax.decoupled(h.rate, lr=h.lr)),
    ),
    'decoupled_for_momentum_l2': (
        'sgd_momentum_wd',
        lambda h: optax.chain(
            optax.sgd(h.lr, momentum=h.momentum),
            wdax.decoupled(h.rate, lr=h.lr),
        ),
    ),
    'heavy_ball_for_nesterov': (
        'sgd_nesterov_wd',
        lambda h: optax.chain(
            wdax.l2(h.rate), optax.sgd(h.lr, momentum=h.momentum)
        ),
    ),
    'unmasked': (
        'adamw_sched_masked',
        lambda h: optax.chain(
            _adam(h, h.schedule), wdax.decoupled(h.rate, lr=h.schedule)
        ),
    ),
    'decay_ignores_schedule': (
        'adamw_sched_masked',
        lambda h: optax.chain(
            _adam(h, h.schedule),
            wdax.decoupled(
                h.rate,
                lr=float(_fixture()['adamw_sched_masked/peak_lr']),
                mask=wdax.masks.include('kernel'),
            ),
        ),
    ),
    'schedule_off_by_one': (
        'adamw_sched_masked',
        lambda h: optax.chain(
            _adam(h, _shifted(h.schedule)),
            wdax.decoupled(
                h.rate, lr=_shifted(h.schedule), mask=wdax.masks.include('kernel')
            ),
        ),
    ),
}


@pytest.mark.parametrize('mistake', sorted(WRONG))
def test_wrong_chain_is_caught(mistake):
  case, make = WRONG[mistake]
  assert _max_error(case, make(_hyper(case))) > 100 * _tol(case)['atol']
