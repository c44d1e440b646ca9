"""Timing a jitted optimiser step, next to a reference, and what XLA compiled.

:func:`make_step` jits a donated step ``(params, opt_state, grads) ->
(params, opt_state)``; :func:`compiled_stats` counts the array kernels its
compiled program launches and the bytes XLA's cost analysis says they move;
:func:`bench` times several such steps, each run right next to a run of a
private copy of the baseline, so that the ``paired`` ratio cancels drift in a
shared machine's load; :func:`table` prints the medians and ratios.
``overhead.py`` uses them on its optimiser variants.
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import statistics
import time
from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


def fresh(tx: optax.GradientTransformation, params: Any) -> tuple[Any, Any]:
  """New params and optimiser state, built by one compiled program."""
  return jax.jit(lambda p: (jax.tree.map(jnp.copy, p), tx.init(p)))(params)


def make_step(
    tx: optax.GradientTransformation, options: dict[str, Any] | None = None
):
  def step(params, state, grads):
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  return jax.jit(step, donate_argnums=(0, 1), compiler_options=options)


def compiled_stats(step, *args) -> tuple[int, float]:
  """Array kernels per step and bytes accessed, from the compiled HLO."""
  compiled = step.lower(*args).compile()
  text = compiled.as_text()
  kernels = 0
  for line in text[text.index('\nENTRY') :].splitlines()[1:]:
    found = re.search(r'= (.*?) ([a-z][a-z0-9-]*)\(', line)
    if not found:
      continue
    shape, op = found.groups()
    if op in ('parameter', 'tuple', 'get-tuple-element', 'bitcast', 'constant'):
      continue
    if not re.match(r'[a-z0-9]+\[\]', shape):
      kernels += 1
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  return kernels, float(cost.get('bytes accessed', float('nan')))


class Result(NamedTuple):
  wall: list[float]  # seconds per step, one entry per timed run
  cpu: list[float]  # process CPU seconds per step, one entry per timed run
  paired: list[float]  # CPU time over that of the adjacent reference run
  kernels: int
  bytes: float


_REFERENCE = object()  # key of the pacing copy of the baseline


def bench(
    params: Any,
    factories: dict[str, Callable[[], optax.GradientTransformation]],
    *,
    repeats: int,
    steps_per_run: int,
    compiler_options: Callable[[str], dict[str, Any] | None],
) -> dict[str, Result]:
  """Times each variant ``repeats`` times, each run next to a reference run.

  A variant's step is compiled with ``compiler_options(name)``.

  The reference is a private copy of the first (baseline) variant. Every
  repeat visits all variants, the baseline included, in an order rotated from
  the last repeat's, and runs the reference right before or right after each,
  alternately. The paired ratio compares runs a few milliseconds apart, so
  drift in the machine's load cancels, and every variant, the baseline too,
  is measured the same way, so whatever running often does for the reference
  (it stays in cache, say) does not favour the baseline.
  """
  grads = jax.jit(
      lambda t: jax.tree.map(lambda p: 1e-3 * jnp.sign(p) + p, t)
  )(params)
  names = list(factories)
  keys = [*names, _REFERENCE]

  def prepare(key):
    name = names[0] if key is _REFERENCE else key
    tx = factories[name]()
    step = make_step(tx, compiler_options(name))
    p, s = fresh(tx, params)
    return step, p, s, compiled_stats(step, p, s, grads)

  # XLA compiles outside the GIL, so variants compile side by side.
  with concurrent.futures.ThreadPoolExecutor(len(os.sched_getaffinity(0))) as pool:
    prepared = dict(zip(keys, pool.map(prepare, keys)))
  runs, stats = {}, {}
  for key, (step, p, s, stat) in prepared.items():
    stats[key] = stat
    p, s = step(p, s, grads)  # the compiled program is cached: no recompile
    runs[key] = [step, p, s]

  def timed(key: Any) -> tuple[float, float]:
    step, p, s = runs[key]
    p, s = step(p, s, grads)  # untimed: brings this variant's arrays to cache
    jax.block_until_ready((p, s))
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps_per_run):
      p, s = step(p, s, grads)
    jax.block_until_ready((p, s))
    runs[key][1:] = [p, s]
    return (
        (time.perf_counter() - t0) / steps_per_run,
        (time.process_time() - c0) / steps_per_run,
    )

  samples: dict[str, tuple[list[float], list[float], list[float]]] = {
      name: ([], [], []) for name in names
  }
  for r in range(repeats):
    k = r % len(names)
    for name in names[k:] + names[:k]:
      # Reference first on even repeats, second on odd: whatever running
      # second does to a run (cache, allocator, clock) falls on both alike.
      if r % 2 == 0:
        _, ref_cpu = timed(_REFERENCE)
        wall, cpu = timed(name)
      else:
        wall, cpu = timed(name)
        _, ref_cpu = timed(_REFERENCE)
      samples[name][0].append(wall)
      samples[name][1].append(cpu)
      samples[name][2].append(cpu / ref_cpu)
  return {n: Result(*samples[n], *stats[n]) for n in names}


def table(results: dict[str, Result], baseline: str) -> str:
  """Medians, ratios to the baseline and what XLA compiled, one row each.

  ``x adam`` after ``ms/step`` is the ratio of median wall times; ``paired``
  is the median CPU time over the adjacent reference run's, divided by the
  baseline's; the last three columns come from the compiled program.
  """
  base = results[baseline]
  wall0 = statistics.median(base.wall)
  paired0 = statistics.median(base.paired)
  width = max(len(n) for n in results)
  lines = [
      f'{"variant":<{width}}  {"ms/step":>8} {"x adam":>6}  {"cpu ms":>7} '
      f'{"paired":>6}  {"kernels":>7}  {"MB/step":>8} {"x adam":>6}'
  ]
  for name, r in results.items():
    wall = statistics.median(r.wall)
    lines.append(
        f'{name:<{width}}  {1e3 * wall:8.3f} {wall / wall0:6.3f}  '
        f'{1e3 * statistics.median(r.cpu):7.3f} '
        f'{statistics.median(r.paired) / paired0:6.3f}  {r.kernels:7d}  '
        f'{r.bytes / 1e6:8.2f} {r.bytes / base.bytes:6.3f}'
    )
  return '\n'.join(lines)
