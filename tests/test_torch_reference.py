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

from collections.abc import Callable

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from support.torch_replay import ADAM_TOL
from support.torch_replay import F64_TOL
from support.torch_replay import SGD_TOL
from support.torch_replay import Hyper
from support.torch_replay import assert_matches
from support.torch_replay import exact_schedule
from support.torch_replay import fixture
from support.torch_replay import hyper
from support.torch_replay import max_error
from support.torch_replay import reference
from support.torch_replay import replay

import wdax

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


def _adam(h: Hyper, lr: optax.ScalarOrSchedule) -> optax.GradientTransformation:
  return optax.adam(lr, b1=h.b1, b2=h.b2, eps=h.eps)


# The wdax chain each torch optimiser should equal.
CHAINS: dict[str, Callable[[Hyper], optax.GradientTransformation]] = {
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


def test_fixture_layout():
  fx = fixture()
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
    ref = reference(case)
    chex.assert_shape(ref['kernel'], (steps + 1, d, k))
    chex.assert_shape(ref['bias'], (steps + 1, k))
    chex.assert_shape(fx[f'{case}/lr'], (steps,))
    chex.assert_type([ref['kernel'], ref['bias'], fx[f'{case}/lr']], np.float64)
    np.testing.assert_array_equal(ref['kernel'][0], fx['kernel0'])
    np.testing.assert_array_equal(ref['bias'][0], fx['bias0'])


@pytest.mark.parametrize('case', [c for c in CASES if c != 'adamw_sched_masked'])
def test_constant_cases_have_constant_lr(case):
  lrs = fixture()[f'{case}/lr']
  np.testing.assert_array_equal(lrs, np.full_like(lrs, lrs[0]))


def test_optax_schedule_matches_torch_lambda_lr():
  # torch recorded the lr each optimizer.step() used; optax evaluates its
  # schedule at the step count 0, 1, ... of the same update.
  h = hyper('adamw_sched_masked')
  torch_lrs = fixture()['adamw_sched_masked/lr']
  optax_lrs = np.asarray(h.schedule(jnp.arange(torch_lrs.shape[0])))
  np.testing.assert_allclose(optax_lrs, torch_lrs, rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize('case', CASES)
def test_matches_torch(case):
  got = replay(CHAINS[case](hyper(case)))
  assert got['kernel'].dtype == np.float32
  assert_matches(case, got, _tol(case))


@pytest.mark.slow
@pytest.mark.parametrize('case', CASES)
def test_matches_torch_float64(case):
  # In float64 all that is left is rounding near 1e-16, so a difference in the
  # update rule far below float32's noise floor would still show.
  with jax.enable_x64(True):
    h = hyper(case)
    if h.schedule is not None:
      h = h._replace(schedule=exact_schedule(case))
    got = replay(CHAINS[case](h), jnp.float64)
  assert got['kernel'].dtype == np.float64
  assert_matches(case, got, F64_TOL)


def test_coupled_and_decoupled_adam_trajectories_differ():
  # Without this the comparisons could not tell Adam + L2 from AdamW.
  fx = fixture()
  for name in ('kernel', 'bias'):
    gap = np.max(np.abs(fx[f'adam_wd/{name}'] - fx[f'adamw/{name}']))
    assert gap > 1000 * ADAM_TOL['atol'], (name, gap)


def _shifted(schedule: optax.Schedule) -> optax.Schedule:
  return lambda count: schedule(count + 1)


# Chains that are each a plausible mistake for the case they are run against.
WRONG: dict[str, tuple[str, Callable[[Hyper], optax.GradientTransformation]]] = {
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
                lr=float(fixture()['adamw_sched_masked/peak_lr']),
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


@pytest.mark.slow
@pytest.mark.parametrize('mistake', sorted(WRONG))
def test_wrong_chain_is_caught(mistake):
  case, make = WRONG[mistake]
  assert max_error(case, make(hyper(case))) > 100 * _tol(case)['atol']
