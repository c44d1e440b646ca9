"""A tiny NNX transformer language model on Python's own standard library.

The text is the source of a few standard-library modules, read with
``inspect.getsource``, so nothing is downloaded. The model reads bytes:
token and position embeddings, pre-LayerNorm causal self-attention and MLP
blocks, and an output projection.

It first prints what Flax's usual mask (``wdax.masks.flax_default()``:
kernels only, no biases, LayerNorm scales or embeddings) decays, next to
decaying everything, then trains with ``wdax.adamw`` and that mask through
the jit-compiled step of ``wdax.training`` and reports the loss.

    python examples/transformer_nnx.py --help
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from rich.progress import BarColumn
from rich.progress import Progress
from rich.progress import TextColumn
from rich.progress import TimeElapsedColumn

import wdax
from wdax import training

_SOURCES = ('textwrap', 'string', 'fractions', 'heapq', 'bisect', 'colorsys')


def corpus() -> np.ndarray:
  """UTF-8 bytes of a few standard-library modules' source."""
  text = '\n'.join(inspect.getsource(importlib.import_module(m)) for m in _SOURCES)
  return np.frombuffer(text.encode('utf-8'), dtype=np.uint8).astype(np.int32)


class Block(nnx.Module):
  def __init__(self, dim: int, heads: int, rngs: nnx.Rngs):
    self.norm1 = nnx.LayerNorm(dim, rngs=rngs)
    self.attn = nnx.MultiHeadAttention(
        heads, dim, decode=False, rngs=rngs
    )
    self.norm2 = nnx.LayerNorm(dim, rngs=rngs)
    self.up = nnx.Linear(dim, 4 * dim, rngs=rngs)
    self.down = nnx.Linear(4 * dim, dim, rngs=rngs)

  def __call__(self, x, mask):
    x = x + self.attn(self.norm1(x), mask=mask)
    return x + self.down(nnx.gelu(self.up(self.norm2(x))))


class LanguageModel(nnx.Module):
  def __init__(self, dim: int, heads: int, depth: int, context: int, rngs):
    self.tokens = nnx.Embed(256, dim, rngs=rngs)
    self.positions = nnx.Embed(context, dim, rngs=rngs)
    self.blocks = nnx.List([Block(dim, heads, rngs) for _ in range(depth)])
    self.norm = nnx.LayerNorm(dim, rngs=rngs)
    self.head = nnx.Linear(dim, 256, rngs=rngs)

  def __call__(self, tokens):
    length = tokens.shape[-1]
    x = self.tokens(tokens) + self.positions(jnp.arange(length))[None]
    mask = nnx.make_causal_mask(tokens)
    for block in self.blocks:
      x = block(x, mask)
    return self.head(self.norm(x))


def loss_fn(model: LanguageModel, batch) -> jax.Array:
  logits = model(batch[:, :-1])
  return optax.softmax_cross_entropy_with_integer_labels(
      logits, batch[:, 1:]
  ).mean()


def windows(data: np.ndarray, rng, batch: int, length: int) -> np.ndarray:
  starts = rng.integers(0, len(data) - length - 1, batch)
  return np.stack([data[s : s + length + 1] for s in starts])


def main() -> None:
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument('--steps', type=int, default=300, help='training steps')
  parser.add_argument('--batch', type=int, default=16, help='sequences per step')
  parser.add_argument('--context', type=int, default=48, help='bytes per sequence')
  parser.add_argument('--dim', type=int, default=48, help='model width')
  parser.add_argument('--heads', type=int, default=4, help='attention heads')
  parser.add_argument('--depth', type=int, default=2, help='transformer blocks')
  parser.add_argument('--lr', type=float, default=3e-3, help='peak learning rate')
  parser.add_argument('--weight-decay', type=float, default=0.1,
                      help='AdamW weight decay (decay per step is lr * this)')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--no-progress', action='store_true',
                      help='no progress bar (for logs)')
  args = parser.parse_args()

  data = corpus()
  cut = int(0.9 * len(data))
  train_data, held_out = data[:cut], data[cut:]
  model = LanguageModel(
      args.dim, args.heads, args.depth, args.context, nnx.Rngs(args.seed)
  )
  params = nnx.state(model, nnx.Param)
  mask = wdax.masks.flax_default()
  print("Flax's usual mask, wdax.masks.flax_default():")
  print(wdax.describe(params, rate=args.weight_decay, mask=mask))
  everything = wdax.describe(params, rate=args.weight_decay)
  usual = {row.path for row in wdax.describe(params, mask=mask).rows if row.decayed}
  extra = [row for row in everything.rows if row.path not in usual]
  print(
      '\nDecaying everything (optax.adamw without a mask) would also decay '
      f'{len(extra)} leaves, {sum(r.size for r in extra):,} parameters: the '
      'biases, LayerNorm scales and embeddings, e.g. '
      + ', '.join(r.path for r in extra[:4])
      + f'.\n{everything.decayed:,} of {everything.total:,} parameters decayed.\n'
  )

  warmup = max(1, args.steps // 10)
  lr = optax.warmup_cosine_decay_schedule(0.0, args.lr, warmup, args.steps)
  tx = wdax.adamw(lr, weight_decay=args.weight_decay, mask=mask)
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  graphdef, state = nnx.split((model, optimizer))
  step = training.nnx_train_step(graphdef, loss_fn, mask=mask)

  rng = np.random.default_rng(args.seed)
  first = last = None
  columns = (
      TextColumn('[progress.description]{task.description}'),
      BarColumn(),
      TextColumn('{task.completed}/{task.total}'),
      TimeElapsedColumn(),
  )
  with Progress(*columns, disable=args.no_progress) as progress:
    task = progress.add_task('training', total=args.steps)
    for i in range(args.steps):
      batch = windows(train_data, rng, args.batch, args.context)
      state, metrics = step(state, batch)
      if i == 0:
        first = float(metrics['loss'])
      if i % 25 == 0 or i == args.steps - 1:
        last = float(metrics['loss'])
        progress.update(task, description=f'loss {last:.3f}')
      progress.advance(task)

  model, optimizer = nnx.merge(graphdef, state)
  eval_rng = np.random.default_rng(args.seed + 1)
  held = jnp.asarray(windows(held_out, eval_rng, 64, args.context))
  held_loss = float(jax.jit(loss_fn)(model, held))
  print(f'uniform-guess loss: {math.log(256):.3f} nats per byte')
  print(f'first step loss:    {first:.3f}')
  print(f'final train loss:   {last:.3f}')
  print(f'held-out loss:      {held_loss:.3f} ({held_loss / math.log(2):.2f} bits per byte)')
  print(
      f'kernel norm {float(metrics["param_norm_decayed"]):.2f}, '
      f'other norm {float(metrics["param_norm_not_decayed"]):.2f}'
  )


if __name__ == '__main__':
  main()
