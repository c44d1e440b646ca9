"""What the step builder of ``wdax.training`` costs over a hand-written step.

Times, in one process and for one Linen MLP and one optimiser
(``wdax.adamw`` with Flax's usual mask):

* ``hand``: the Flax-tutorial step, ``jax.jit`` of ``value_and_grad`` then
  ``state.apply_gradients``, the state donated, returning the loss;
* ``wdax``: ``wdax.training.train_step`` with its metrics (gradient, update
  and parameter norms, decayed and not);
* ``wdax, no metrics``: the same with ``metrics=False``.

Reported: wall time per step over interleaved runs (one run of each variant
per round, in rotating order, so load from other processes hits all alike), as the median and
the fastest round, the median process-CPU time, their ratios to ``hand``;
the operations and bytes accessed of each compiled step (deterministic); the time to lower and compile each step; the optimiser state's bytes
per parameter, for the steps here and for ``optax.adamw`` built alike; and
XLA's own memory figures for each compiled step.

  python benchmarks/train_step.py            # the defaults reported
  python benchmarks/train_step.py --quick    # a smoke run of a few seconds
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import time
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state

import wdax
from wdax import training


class MLP(nn.Module):
  width: int
  depth: int

  @nn.compact
  def __call__(self, x):
    for _ in range(self.depth):
      x = nn.LayerNorm()(nn.relu(nn.Dense(self.width)(x)))
    return nn.Dense(10)(x)


def setup(args):
  model = MLP(args.width, args.depth)
  rng = np.random.default_rng(0)
  batch = {
      'x': jnp.asarray(rng.normal(size=(args.batch, args.inputs)), jnp.float32),
      'y': jnp.asarray(rng.integers(0, 10, args.batch), jnp.int32),
  }
  params = jax.jit(model.init)(jax.random.key(0), batch['x'])['params']
  mask = wdax.masks.flax_default()
  tx = wdax.adamw(1e-3, weight_decay=1e-2, mask=mask)

  def loss_fn(params, batch):
    logits = model.apply({'params': params}, batch['x'])
    return optax.softmax_cross_entropy_with_integer_labels(
        logits, batch['y']
    ).mean()

  return model, params, batch, mask, tx, loss_fn


def hand_step(loss_fn):
  """The step of Flax's tutorials, written out."""

  def step(state, batch):
    loss, grads = jax.value_and_grad(loss_fn)(state.params, batch)
    return state.apply_gradients(grads=grads), loss

  return jax.jit(step, donate_argnums=0)


def builders(loss_fn, mask):
  """Each variant's step as a user calls it (wdax: with its Python wrapper)."""
  return {
      'hand': lambda: hand_step(loss_fn),
      'wdax': lambda: training.train_step(loss_fn, mask=mask),
      'wdax, no metrics': lambda: training.train_step(
          loss_fn, mask=mask, metrics=False
      ),
  }


def jitted(step):
  return getattr(step, 'jitted', step)


def fresh_state(model, params, tx):
  # The state is donated by every step: each variant keeps arrays of its own.
  # Flax's TrainState with an int32 step, so the hand-written step is not
  # re-compiled by a Python-int count either.
  state = train_state.TrainState.create(
      apply_fn=model.apply, params=jax.tree.map(jnp.copy, params), tx=tx
  )
  return state.replace(step=jnp.zeros([], jnp.int32))


def hlo_stats(compiled) -> tuple[int, float]:
  """Operations in the optimised entry computation, and XLA's bytes accessed.

  Both are deterministic, unlike timings on a shared machine: two steps that
  compile to the same operations cost the same.
  """
  text = compiled.as_text()
  entry = text[text.index('\nENTRY') :].splitlines()[1:]
  trivial = ('parameter', 'tuple', 'get-tuple-element', 'bitcast', 'constant')
  ops = 0
  for line in entry:
    found = re.search(r'= \S+ ([a-z][a-z0-9-]*)\(', line)
    if found and found.group(1) not in trivial:
      ops += 1
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  return ops, float(cost.get('bytes accessed', float('nan')))


def state_bytes(tree: Any) -> int:
  return sum(x.nbytes for x in jax.tree.leaves(tree))


def main() -> None:
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument('--width', type=int, default=256, help='hidden width')
  parser.add_argument('--depth', type=int, default=3, help='hidden layers')
  parser.add_argument('--inputs', type=int, default=128, help='input features')
  parser.add_argument('--batch', type=int, default=64, help='batch size')
  parser.add_argument('--steps', type=int, default=100, help='steps per run')
  parser.add_argument('--rounds', type=int, default=21,
                      help='interleaved runs of each variant (median taken)')
  parser.add_argument('--compiles', type=int, default=7,
                      help='lowerings and compilations of each step (median)')
  parser.add_argument('--quick', action='store_true', help='a smoke run')
  args = parser.parse_args()
  if args.quick:
    args.steps, args.rounds, args.compiles = 20, 3, 1

  model, params, batch, mask, tx, loss_fn = setup(args)
  n_params = sum(x.size for x in jax.tree.leaves(params))
  make = builders(loss_fn, mask)
  print(
      f'jax {jax.__version__}, {jax.devices()[0].platform} '
      f'({platform.processor() or platform.machine()}, {os.cpu_count()} cores); '
      f'MLP {args.inputs}-{"-".join([str(args.width)] * args.depth)}-10, '
      f'{n_params:,} parameters, batch {args.batch}'
  )

  # Compile time: a new jit object each time, so nothing is cached.
  compile_s: dict[str, list[float]] = {name: [] for name in make}
  memory = {}
  for _ in range(args.compiles):
    for name, build in make.items():
      state = fresh_state(model, params, tx)
      start = time.perf_counter()
      compiled = jitted(build()).lower(state, batch).compile()
      compile_s[name].append(time.perf_counter() - start)
      memory[name] = (compiled.memory_analysis(), *hlo_stats(compiled))

  # Step time, interleaved.
  steps = {name: build() for name, build in make.items()}
  states = {name: fresh_state(model, params, tx) for name in make}
  for name, step in steps.items():  # compile and warm up
    states[name], out = step(states[name], batch)
    jax.block_until_ready(out)
  per_step: dict[str, list[float]] = {name: [] for name in make}
  cpu_per_step: dict[str, list[float]] = {name: [] for name in make}
  names = list(steps)
  for r in range(args.rounds):
    # Rotate the order, so no variant always runs right after another.
    for name in names[r % len(names) :] + names[: r % len(names)]:
      step, state = steps[name], states[name]
      start, cpu_start = time.perf_counter(), time.process_time()
      for _ in range(args.steps):
        state, out = step(state, batch)
      jax.block_until_ready((state, out))
      per_step[name].append((time.perf_counter() - start) / args.steps)
      cpu_per_step[name].append((time.process_time() - cpu_start) / args.steps)
      states[name] = state
  for name, step in steps.items():
    assert jitted(step)._cache_size() == 1, f'{name} compiled more than once'

  hand = statistics.median(per_step['hand'])
  hand_cpu = statistics.median(cpu_per_step['hand'])
  hand_compile = statistics.median(compile_s['hand'])
  hand_min = min(per_step['hand'])
  print(
      '\n| step | wall ms/step, median | vs hand | wall, min of rounds | vs hand '
      '| CPU ms/step, median | vs hand | compile s, median | vs hand |'
      '\n|---|---|---|---|---|---|---|---|---|'
  )
  for name in make:
    t = statistics.median(per_step[name])
    fastest = min(per_step[name])
    cpu = statistics.median(cpu_per_step[name])
    c = statistics.median(compile_s[name])
    print(
        f'| {name} | {1e3 * t:.3f} | {t / hand:.3f}x | {1e3 * fastest:.3f} | '
        f'{fastest / hand_min:.3f}x | {1e3 * cpu:.3f} | {cpu / hand_cpu:.3f}x | '
        f'{c:.2f} | {c / hand_compile:.2f}x |'
    )
  print(
      '\n| step | HLO ops | XLA bytes accessed | XLA temp bytes |'
      '\n|---|---|---|---|'
  )
  for name in make:
    analysis, ops, accessed = memory[name]
    temp = getattr(analysis, 'temp_size_in_bytes', float('nan'))
    print(f'| {name} | {ops} | {accessed:,.0f} | {temp:,} |')

  # Optimiser-state memory.
  ours = state_bytes(states['wdax'].opt_state)
  theirs = state_bytes(states['hand'].opt_state)
  optax_adamw = state_bytes(optax.adamw(1e-3, weight_decay=1e-2, mask=mask).init(params))
  wdax_adamw = state_bytes(tx.init(params))
  print(
      f'\noptimiser state: wdax step {ours / n_params:.3f} B/param, hand step '
      f'{theirs / n_params:.3f} B/param (ratio {ours / theirs:.3f}); '
      f'wdax.adamw {wdax_adamw / n_params:.3f} B/param vs optax.adamw '
      f'{optax_adamw / n_params:.3f} B/param (ratio {wdax_adamw / optax_adamw:.3f})'
  )


if __name__ == '__main__':
  main()
