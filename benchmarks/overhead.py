"""Step-time overhead of wdax's decay transforms against ``optax.adam``.

Times a jitted, donated optimiser step ``(params, opt_state, grads) ->
(params, opt_state)`` for several optimisers on a 200-leaf, transformer-shaped
float32 tree with Flax names. For each variant it prints the median wall time
per step and its ratio to ``optax.adam``; the median process CPU time and the
``paired`` ratio, CPU time over that of a reference Adam run right next to it
(steadier on a shared machine); and what XLA compiled: the array kernels it
launches per step and the bytes they move (XLA's cost analysis). The row
``optax.adam, again`` is the baseline compiled a second time: how far it is
from 1.000 is the noise floor of the run.

  python benchmarks/overhead.py                 # 1e6 and 1e7 parameters
  python benchmarks/overhead.py --cores 1       # one core: steadier on a busy box
  python benchmarks/overhead.py --quick         # a smoke run, under a minute
  python benchmarks/overhead.py --hlo 'wdax l2' # optimized HLO on one leaf

It also times prototypes of Adam with coupled L2 (``fused_adam_l2.py``)
written so that XLA's CPU backend, which does not merge sibling loops into
one multi-output kernel, emits fewer kernels and reads each array less
often, and checks that they match ``chain(wdax.l2, optax.adam)``; the timing
itself is ``step_timing.py``. Results and analysis are in
``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import fused_adam_l2
import jax
import jax.numpy as jnp
import numpy as np
import optax
import step_timing

import wdax

LR = 1e-3
WD = 1e-2


def transformer_tree(
    n_params: float, *, layers: int = 12, seed: int = 0
) -> dict[str, Any]:
  """An encoder-shaped float32 tree of ``16 * layers + 8`` leaves.

  Each block holds Flax's attention (3-D ``kernel``, 2-D ``bias`` for query,
  key and value), a two-layer MLP and two LayerNorms; around them sit token
  and position embeddings, a final norm, a pooler and a classifier head. The
  width follows from ``n_params`` and the vocabulary fills the rest, so the
  total is within a width of ``n_params``.
  """
  heads = 4
  d = max(32, int(np.sqrt(0.8 * n_params / (12 * max(layers, 1)))) // 32 * 32)
  mlp, positions, classes = 4 * d, 128, 10

  def block() -> dict[str, Any]:
    attn = {
        name: {'kernel': (d, heads, d // heads), 'bias': (heads, d // heads)}
        for name in ('query', 'key', 'value')
    }
    attn['out'] = {'kernel': (heads, d // heads, d), 'bias': (d,)}
    return {
        'LayerNorm_0': {'scale': (d,), 'bias': (d,)},
        'MultiHeadDotProductAttention_0': attn,
        'LayerNorm_1': {'scale': (d,), 'bias': (d,)},
        'MlpBlock_0': {
            'Dense_0': {'kernel': (d, mlp), 'bias': (mlp,)},
            'Dense_1': {'kernel': (mlp, d), 'bias': (d,)},
        },
    }

  shapes: dict[str, Any] = {f'encoderblock_{i}': block() for i in range(layers)}
  shapes['encoder_norm'] = {'scale': (d,), 'bias': (d,)}
  shapes['pooler'] = {'kernel': (d, d), 'bias': (d,)}
  shapes['head'] = {'kernel': (d, classes), 'bias': (classes,)}
  shapes['pos_embedding'] = {'embedding': (positions, d)}

  def is_shape(x: Any) -> bool:
    return isinstance(x, tuple)

  rest = sum(int(np.prod(s)) for s in jax.tree.leaves(shapes, is_leaf=is_shape))
  shapes['Embed_0'] = {'embedding': (max(1, int(n_params - rest) // d), d)}
  # NumPy, not jax.random: one small XLA compile per distinct shape adds up.
  rng = np.random.default_rng(seed)
  return jax.tree.map(
      lambda s: jnp.array(0.02 * rng.standard_normal(s, np.float32)),
      shapes,
      is_leaf=is_shape,
  )


# XLA's CPU scheduler by default spreads independent kernels apart so that
# threads can run them side by side, which puts all of Adam's moment kernels
# before all of its parameter kernels; the memory-optimised one keeps a leaf's
# kernels together, so what one kernel reads is still in cache for the next.
MEMORY_SCHEDULER = ' [memory scheduler]'
_MEMORY_OPTIONS = {'xla_cpu_scheduler_type': 'CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED'}


def compiler_options(name: str) -> dict[str, Any] | None:
  return _MEMORY_OPTIONS if name.endswith(MEMORY_SCHEDULER) else None


def _schedule() -> optax.Schedule:
  return optax.warmup_cosine_decay_schedule(0.0, LR, 100, 10_000)


def variants() -> dict[str, Callable[[], optax.GradientTransformation]]:
  """Name -> optimiser factory; the first is the baseline of every ratio."""
  flax = wdax.masks.flax_default()
  group_rates = wdax.rates({'embedding': 1e-5, 'kernel': WD}, default=0.0)
  return {
      'optax.adam': lambda: optax.adam(LR),
      # The same program again, on its own buffers: the noise floor.
      'optax.adam, again': lambda: optax.adam(LR),
      'optax.adam (lr schedule)': lambda: optax.adam(_schedule()),
      'optax.adamw': lambda: optax.adamw(LR, weight_decay=WD),
      'optax chain(add_decayed_weights, adam)': lambda: optax.chain(
          optax.add_decayed_weights(WD), optax.adam(LR)
      ),
      'wdax decoupled': lambda: optax.chain(
          optax.adam(LR), wdax.decoupled(WD, lr=LR)
      ),
      'wdax decoupled (flax mask)': lambda: optax.chain(
          optax.adam(LR), wdax.decoupled(WD, lr=LR, mask=flax)
      ),
      'wdax decoupled (flax mask, lr schedule)': lambda: optax.chain(
          optax.adam(_schedule()),
          wdax.decoupled(WD, lr=_schedule(), mask=flax),
      ),
      'wdax decoupled (rates)': lambda: optax.chain(
          optax.adam(LR), wdax.decoupled(group_rates, lr=LR)
      ),
      'wdax l2': lambda: optax.chain(wdax.l2(WD), optax.adam(LR)),
      'proto adam_l2, paired rows': lambda: fused_adam_l2.adam_l2_paired(
          LR, WD
      ),
      'proto adam, paired rows, no decay': lambda: fused_adam_l2.adam_l2_paired(
          LR, 0.0
      ),
      'optax.adam' + MEMORY_SCHEDULER: lambda: optax.adam(LR),
      'wdax l2' + MEMORY_SCHEDULER: lambda: optax.chain(
          wdax.l2(WD), optax.adam(LR)
      ),
  }


# What --quick times, unless --only says otherwise.
QUICK = (
    'optax.adam',
    'optax.adam, again',
    'optax.adamw',
    'wdax decoupled (flax mask, lr schedule)',
    'wdax decoupled (rates)',
    'wdax l2',
    'proto adam_l2, paired rows',
)


def extra_variants() -> dict[str, Callable[[], optax.GradientTransformation]]:
  """Variants run only when ``--only`` names them."""
  flax = wdax.masks.flax_default()
  return {
      'optax.adamw (flax mask)': lambda: optax.adamw(
          LR, weight_decay=WD, mask=flax
      ),
      'wdax l2 (flax mask)': lambda: optax.chain(
          wdax.l2(WD, mask=flax), optax.adam(LR)
      ),
      'proto adam_l2, one map': lambda: fused_adam_l2.adam_l2_one_map(LR, WD),
      'proto adam_l2, paired blocks': lambda: fused_adam_l2.adam_l2_paired(
          LR, WD, layout='blocks'
      ),
      'wdax decoupled (flax mask)' + MEMORY_SCHEDULER: lambda: optax.chain(
          optax.adam(LR), wdax.decoupled(WD, lr=LR, mask=flax)
      ),
      'proto adam_l2, paired rows' + MEMORY_SCHEDULER: lambda: (
          fused_adam_l2.adam_l2_paired(LR, WD)
      ),
      'proto adam_l2, paired stacked': lambda: fused_adam_l2.adam_l2_paired(
          LR, WD, layout='stacked'
      ),
      'proto adam_l2, paired interleaved': lambda: fused_adam_l2.adam_l2_paired(
          LR, WD, layout='interleaved'
      ),
  }


def cpu_model() -> str:
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or 'unknown'


def one_leaf_hlo(name: str, shape: Sequence[int] = (256, 1024)) -> str:
  """Optimized HLO of a step on a single Flax ``kernel`` leaf."""
  tx = {**variants(), **extra_variants()}[name]()
  params = {'Dense_0': {'kernel': jnp.zeros(shape, jnp.float32)}}
  step = step_timing.make_step(tx, compiler_options(name))
  return step.lower(params, tx.init(params), params).compile().as_text()


def _sizes(text: str) -> list[float]:
  try:
    sizes = [float(s) for s in text.split(',')]
  except ValueError:
    raise argparse.ArgumentTypeError(
        f'expected numbers like 1e6,1e7; got {text!r}'
    ) from None
  if not all(s >= 1 for s in sizes):
    raise argparse.ArgumentTypeError(f'sizes must be at least 1; got {text!r}')
  return sizes


def _shape(text: str) -> tuple[int, int]:
  try:
    rows, cols = (int(x) for x in text.split('x'))
  except ValueError:
    raise argparse.ArgumentTypeError(f'expected a shape like 4096x2048; got {text!r}') from None
  return rows, cols


def one_leaf_tree(shape: tuple[int, int]) -> dict[str, Any]:
  """One big Dense kernel, and a tiny embedding for the patterns that need one."""
  rng = np.random.default_rng(0)
  return {
      'Dense_0': {
          'kernel': jnp.array(0.02 * rng.standard_normal(shape, np.float32))
      },
      'Embed_0': {
          'embedding': jnp.array(0.02 * rng.standard_normal((8, 8), np.float32))
      },
  }


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(
      description=__doc__.split('\n\n')[0],
      formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog=__doc__.split('\n\n', 1)[1],
  )
  parser.add_argument(
      '--sizes',
      type=_sizes,
      default='1e6,1e7',
      help='comma-separated parameter counts (default: %(default)s)',
  )
  parser.add_argument(
      '--repeats',
      type=int,
      default=11,
      help='timed runs per variant, median reported (default: %(default)s)',
  )
  parser.add_argument(
      '--steps-per-run',
      type=int,
      default=0,
      help='steps in one timed run (default: 8e6 / size, at least 2)',
  )
  parser.add_argument(
      '--only',
      default='',
      help='comma-separated substrings: time only the variants whose name '
      'holds one, extras included (optax.adam always runs)',
  )
  parser.add_argument(
      '--cores',
      type=int,
      default=0,
      help='pin the process to this many cores before XLA starts (default: '
      'all); 1 stops XLA splitting kernels over threads, which a busy '
      'machine stalls',
  )
  parser.add_argument(
      '--leaf',
      type=_shape,
      metavar='AxB',
      help='instead of the tree, time one Dense kernel of this shape (plus '
      'an 8-row embedding, so that every variant finds its patterns)',
  )
  parser.add_argument(
      '--quick',
      action='store_true',
      help='smoke run: seven variants on 8 leaves, 1e4 parameters, 3 repeats',
  )
  parser.add_argument(
      '--hlo',
      metavar='VARIANT',
      help='print the optimized HLO of the first variant whose name holds '
      'VARIANT, on one 256x1024 leaf, and exit',
  )
  args = parser.parse_args(argv)
  if args.repeats < 1 or args.steps_per_run < 0 or args.cores < 0:
    parser.error('--repeats must be positive; --steps-per-run, --cores >= 0')
  if args.cores:
    allowed = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, allowed[: args.cores])

  every = {**variants(), **extra_variants()}
  if args.hlo:
    hits = [n for n in every if args.hlo in n]
    if not hits:
      parser.error(f'--hlo {args.hlo!r} matches none of {list(every)}')
    print(one_leaf_hlo(hits[0]))
    return
  factories = variants()
  if args.only:
    wanted = args.only.split(',')
    baseline = next(iter(factories))
    factories = {
        n: f for n, f in every.items()
        if n == baseline or any(w in n for w in wanted)
    }
  sizes = args.sizes
  layers, repeats = 12, args.repeats
  if args.quick:
    sizes, layers, repeats = [1e4], 0, 3
    if not args.only:
      factories = {n: factories[n] for n in QUICK}

  print(
      f'jax {jax.__version__}, optax {optax.__version__}, '
      f'{jax.devices()[0].platform}: {cpu_model()}, '
      f'{len(os.sched_getaffinity(0))} of {os.cpu_count()} cores'
  )
  fused_adam_l2.check_prototypes(LR, WD)
  print('prototypes match their optax/wdax chains after 3 steps')
  if args.leaf:
    sizes = [float(np.prod(args.leaf))]
  for n in sizes:
    steps = args.steps_per_run or max(2, int(8e6 / n))
    if args.quick:
      steps = 2
    if args.leaf:
      params = one_leaf_tree(args.leaf)
    else:
      params = transformer_tree(n, layers=layers)
    count = sum(x.size for x in jax.tree.leaves(params))
    print(
        f'\n{count:,} float32 parameters in {len(jax.tree.leaves(params))} '
        f'leaves; median of {repeats} runs of {steps} steps'
    )
    results = step_timing.bench(
        params,
        factories,
        repeats=repeats,
        steps_per_run=steps,
        compiler_options=compiler_options,
    )
    print(step_timing.table(results, next(iter(factories))))


if __name__ == '__main__':
  main()
