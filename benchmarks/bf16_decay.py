"""Weight decay in pure bfloat16, with and without stochastic rounding.

Two measurements, each against the same run in float32:

1. Pure decay: 2,000 steps of ``wdax.adamw(1e-4, weight_decay=0.1)`` with
   zero gradients on 4,096 weights of 0.5 (the closed form is
   0.5 (1 - 1e-5)**2000 = 0.49005).
2. A regression fitted in bfloat16 throughout (data, weights, Adam's
   moments): 64 features, 512 examples, ``wdax.adamw(1e-3,
   weight_decay=1.0)`` (decay 1e-3 per step, below bfloat16's 2**-8), for
   3,000 steps; the weight norm and the training loss every 500 steps.

  python benchmarks/bf16_decay.py
  python benchmarks/bf16_decay.py --steps 6000 --seeds 3
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Sequence


def _chain(dtype, rounding: bool, lr: float, wd: float, seed: int):
  import jax.numpy as jnp
  import optax

  import wdax

  parts = [wdax.adamw(lr, weight_decay=wd)]
  if rounding and dtype == jnp.bfloat16:
    parts.append(wdax.stochastic_rounding(seed=seed))
  return optax.chain(*parts)


def pure_decay(steps: int = 2000) -> dict[str, float]:
  import jax
  import jax.numpy as jnp
  import optax

  out = {}
  for name, dtype, rounding in (('float32', jnp.float32, False),
                                ('bfloat16', jnp.bfloat16, False),
                                ('bfloat16 + rounding', jnp.bfloat16, True)):
    tx = _chain(dtype, rounding, 1e-4, 0.1, 0)
    params = jnp.full((4096,), 0.5, dtype)
    zero = jnp.zeros_like(params)

    def body(carry, _, tx=tx, zero=zero):
      p, s = carry
      u, s = tx.update(zero, s, p)
      return (optax.apply_updates(p, u), s), None

    (params, _), _ = jax.lax.scan(body, (params, tx.init(params)), None, length=steps)
    out[name] = float(params.astype(jnp.float32).mean())
  out['closed form'] = 0.5 * (1 - 1e-5) ** steps
  return out


def regression(dtype, rounding: bool, steps: int, seed: int, every: int = 500):
  """(step, weight norm, training loss) every ``every`` steps."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  import optax

  rng = np.random.default_rng(seed)
  x64 = rng.normal(size=(512, 64))
  y64 = x64 @ rng.normal(size=(64,)) + 0.5 * rng.normal(size=(512,))
  x, y = jnp.asarray(x64, dtype), jnp.asarray(y64, dtype)
  params = {'w': jnp.asarray(rng.normal(size=(64,)), dtype)}
  tx = _chain(dtype, rounding, 1e-3, 1.0, seed)

  def loss(p):
    return jnp.mean((x @ p['w'] - y).astype(jnp.float32) ** 2)

  def body(carry, _):
    p, s = carry
    u, s = tx.update(jax.grad(loss)(p), s, p)
    p = optax.apply_updates(p, u)
    return (p, s), (jnp.linalg.norm(p['w'].astype(jnp.float32)), loss(p))

  _, (norms, losses) = jax.jit(
      lambda p: jax.lax.scan(body, (p, tx.init(p)), None, length=steps)
  )(params)
  idx = np.arange(every - 1, steps, every)
  return [(int(i) + 1, float(norms[i]), float(losses[i])) for i in idx]


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument('--steps', type=int, default=3000,
                      help='steps of the regression (default: 3000)')
  parser.add_argument('--seeds', type=int, default=1,
                      help='regression problems (and rounding seeds) (default: 1)')
  args = parser.parse_args(argv)
  if args.steps < 500 or args.seeds < 1:
    parser.error('--steps must be at least 500 and --seeds at least 1')
  import jax.numpy as jnp

  import wdax

  warnings.simplefilter('ignore', wdax.LostDecayWarning)  # the point here
  print('pure decay, mean weight after 2000 steps:')
  for name, value in pure_decay().items():
    print(f'  {name:<20} {value:.5f}')
  runs = (('float32', jnp.float32, False), ('bfloat16', jnp.bfloat16, False),
          ('bfloat16 + rounding', jnp.bfloat16, True))
  for seed in range(args.seeds):
    print(f'regression, seed {seed}: weight norm (training loss) by step')
    table = {name: regression(dtype, r, args.steps, seed) for name, dtype, r in runs}
    steps = [s for s, _, _ in table['float32']]
    print('  ' + f'{"step":<20}' + ''.join(f'{s:>18}' for s in steps))
    for name, rows in table.items():
      print('  ' + f'{name:<20}' + ''.join(
          f'{norm:>9.4f} ({loss:>6.3f})' for _, norm, loss in rows))


if __name__ == '__main__':
  main()
