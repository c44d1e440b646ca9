"""wdax.sgdw and wdax.adamw against the stored PyTorch trajectories.

The trajectories are replayed by ``tests/support/torch_replay.py``; each case is run
in float32 and, in the slow half, in float64 with the exact schedule.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from support.torch_replay import ADAM_TOL
from support.torch_replay import F64_TOL
from support.torch_replay import SGD_TOL
from support.torch_replay import assert_matches
from support.torch_replay import exact_schedule
from support.torch_replay import fixture
from support.torch_replay import hyper
from support.torch_replay import replay

import wdax
from wdax import masks


def _sgdw(case):
  h = hyper(case)
  return wdax.sgdw(
      h.lr, weight_decay=h.rate, momentum=h.momentum, nesterov=h.nesterov
  )


def _adamw(case, schedule=None):
  h = hyper(case)
  kw = dict(b1=h.b1, b2=h.b2, eps=h.eps, weight_decay=h.rate)
  if case == 'adamw_sched_masked':
    return wdax.adamw(
        schedule or h.schedule, mask=masks.include('kernel'), **kw
    )
  return wdax.adamw(h.lr, **kw)


# The torch case each wdax optimiser must reproduce. Torch's SGD with
# weight_decay is coupled L2, which equals SGDW only without momentum; the
# momentum cases are the fixture script's hand-written SGDW loop.
TORCH = {
    'sgd_wd': (_sgdw, SGD_TOL),
    'sgdw_momentum': (_sgdw, SGD_TOL),
    'sgdw_nesterov': (_sgdw, SGD_TOL),
    'adamw': (_adamw, ADAM_TOL),
    'adamw_sched_masked': (_adamw, ADAM_TOL),
}


@pytest.mark.parametrize('case', sorted(TORCH))
def test_matches_torch(case):
  make, tol = TORCH[case]
  assert_matches(case, replay(make(case)), tol)


@pytest.mark.slow
@pytest.mark.parametrize('case', sorted(TORCH))
def test_matches_torch_float64(case):
  make, _ = TORCH[case]
  with jax.enable_x64(True):
    if case == 'adamw_sched_masked':
      tx = _adamw(case, schedule=exact_schedule(case))
    else:
      tx = make(case)
    got = replay(tx, jnp.float64)
  assert_matches(case, got, F64_TOL)


def test_torch_sgdw_differs_from_coupled_momentum_sgd():
  # Without this, matching sgdw_momentum could not tell SGDW from torch's
  # coupled momentum SGD.
  got = replay(_sgdw('sgdw_momentum'))
  coupled = fixture()['sgd_momentum_wd/kernel']
  assert np.max(np.abs(got['kernel'] - coupled)) > 1000 * SGD_TOL['atol']
