"""The one harness for replaying the stored PyTorch trajectories.

``tests/fixtures/torch_reference.npz`` holds float64 parameter trajectories of
``torch.optim`` optimisers, written by ``tests/fixtures/make_torch_fixtures.py``
(its docstring gives the layout). :func:`replay` runs an optax transformation
on the same problem; :func:`assert_matches` compares every step with a case.
``tests/test_torch_reference.py`` (wdax decay transforms in optax chains) and
``tests/test_optimizers.py`` (wdax's optimisers) both use it.
"""

from __future__ import annotations

import functools
import pathlib
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

FIXTURE = pathlib.Path(__file__).parent.parent / 'fixtures' / 'torch_reference.npz'

# Tolerances of the float32 replay, per optimiser family. Replayed in float64
# the same chains agree with torch to ~1e-15, so what remains at float32 is
# rounding (eps ~1.2e-7) accumulated over the steps. SGD leaves it there: max
# abs error seen 3.6e-7. Adam divides each step by sqrt(v), which magnifies the
# rounding of entries whose gradient is small relative to its history: max
# abs error seen 2.4e-6, the same as optax's own float32 optax.adamw against
# this fixture (2.4e-6), so it is the problem's noise floor, not wdax's. Each
# bound keeps a few-fold margin and is still more than a thousand times below
# what a wrong chain gives (1.4e-2 or more).
SGD_TOL = {'rtol': 1e-5, 'atol': 1e-6}
ADAM_TOL = {'rtol': 1e-5, 'atol': 1e-5}
F64_TOL = {'rtol': 1e-10, 'atol': 1e-12}


@functools.cache
def fixture() -> dict[str, np.ndarray]:
  with np.load(FIXTURE, allow_pickle=False) as f:
    return {k: f[k] for k in f.files}


class Hyper(NamedTuple):
  """One case's hyperparameters, as torch used them."""

  lr: float
  rate: float
  momentum: float
  nesterov: bool
  b1: float
  b2: float
  eps: float
  schedule: optax.Schedule | None


def hyper(case: str) -> Hyper:
  fx = fixture()

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
  return Hyper(
      lr=float(fx[f'{case}/lr'][0]),
      rate=get('weight_decay'),
      momentum=get('momentum'),
      nesterov=bool(fx.get(f'{case}/nesterov', False)),
      b1=get('b1'),
      b2=get('b2'),
      eps=get('eps'),
      schedule=schedule,
  )


def exact_schedule(case: str) -> optax.Schedule:
  """torch's recorded lr per step, indexed by the step count.

  optax's schedules compute in float32 even under x64; this one is exact, for
  the float64 replays.
  """
  lrs = jnp.asarray(fixture()[f'{case}/lr'], jnp.float64)
  return lambda count: lrs[count]


def loss(params: dict[str, jax.Array], x: jax.Array, y: jax.Array) -> jax.Array:
  z = x @ params['kernel'] + params['bias'][None, :]
  return jnp.mean((jnp.tanh(z) - y) ** 2)


def replay(
    tx: optax.GradientTransformation, dtype: jnp.dtype = jnp.float32
) -> dict[str, np.ndarray]:
  """Parameters after 0..steps steps of ``tx`` on the fixture's problem."""
  fx = fixture()
  x = jnp.asarray(fx['X'], dtype)
  y = jnp.asarray(fx['Y'], dtype)
  params = {
      'kernel': jnp.asarray(fx['kernel0'], dtype),
      'bias': jnp.asarray(fx['bias0'], dtype),
  }

  def step(carry, _):
    params, state = carry
    grads = jax.grad(loss)(params, x, y)
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


def reference(case: str) -> dict[str, np.ndarray]:
  fx = fixture()
  return {k: fx[f'{case}/{k}'] for k in ('kernel', 'bias')}


def max_error(case: str, tx: optax.GradientTransformation) -> float:
  got, want = replay(tx), reference(case)
  return max(float(np.max(np.abs(got[k] - want[k]))) for k in want)


def assert_matches(case: str, got: dict[str, np.ndarray], tol: dict[str, float]) -> None:
  """Every step of ``got`` is within ``tol`` of the torch trajectory ``case``."""
  want = reference(case)
  for name in want:
    for t in range(want[name].shape[0]):
      np.testing.assert_allclose(
          got[name][t], want[name][t], **tol, err_msg=f'{case}: {name} after {t} steps'
      )
