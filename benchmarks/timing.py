"""Timing for the sweep benchmarks: a wall and CPU timer, repeated runs, and
the host devices asked of XLA.

The machine these benchmarks run on is shared, so one run's figures move
with its neighbours' load. :func:`repeat` therefore runs a benchmark script
several times, each a fresh process that times every method in turn (so the
ratios are measured in one process, under one load) with the order of the
methods rotated from run to run; :func:`summarise` gives each figure's
median and range over the runs. Nothing here imports JAX: a script calls
:func:`repeat` before it knows its device flags.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from collections.abc import Sequence


def cpu() -> float:
  """User and system CPU time of this process and its finished children."""
  t = os.times()
  return t.user + t.system + t.children_user + t.children_system


class Timer:
  """Wall and CPU seconds of a ``with`` block, in ``.wall`` and ``.cpu``."""

  def __enter__(self):
    self.wall, self.cpu = time.perf_counter(), cpu()
    return self

  def __exit__(self, *exc):
    self.wall = time.perf_counter() - self.wall
    self.cpu = cpu() - self.cpu


def timed(fn: Callable[..., dict], *args, **kwargs) -> dict:
  """``fn(*args, **kwargs)``, a dict, after the call's ``wall`` and ``cpu``
  seconds."""
  with Timer() as t:
    out = fn(*args, **kwargs)
  return {'wall': t.wall, 'cpu': t.cpu, **out}


def threads(limit: int | None):
  """A context limiting BLAS and OpenMP threads to ``limit`` (``None``: as
  they are), for scikit-learn, whose OpenBLAS threads spin when the cores are
  busy with other work."""
  if limit is None:
    return contextlib.nullcontext()
  from threadpoolctl import threadpool_limits

  return threadpool_limits(limit)


def load() -> float:
  """The machine's one-minute load average."""
  return os.getloadavg()[0]


def rotated(names: Sequence[str], by: int) -> list[str]:
  """``names`` rotated left by ``by``: run ``i`` times them in this order."""
  names = list(names)
  if not names:
    return names
  by %= len(names)
  return names[by:] + names[:by]


def without(argv: Sequence[str], options: Sequence[str], flags: Sequence[str] = ()) -> list[str]:
  """``argv`` less each of ``options`` with its value, and each of ``flags``."""
  out, skip = [], False
  for a in argv:
    if skip:
      skip = False
    elif a in flags:
      continue
    elif a in options:
      skip = True
    elif not a.startswith(tuple(o + '=' for o in options)):
      out.append(a)
  return out


def repeat(script: str, argv: Sequence[str], runs: int, flags: Sequence[str] = ()) -> list[dict]:
  """Runs ``script argv --child i --json FILE`` for ``i < runs`` (``argv``
  less ``--runs``, ``--results`` and ``flags``), one after another, each in a
  fresh process, and returns what each wrote."""
  argv = without(argv, ('--runs', '--results'), flags)
  out = []
  with tempfile.TemporaryDirectory() as tmp:
    for i in range(runs):
      path = os.path.join(tmp, f'run{i}.json')
      command = [sys.executable, script, *argv, '--child', str(i), '--json', path]
      print(f'run {i + 1}/{runs}', flush=True)
      subprocess.run(command, check=True)
      with open(path) as f:
        out.append(json.load(f))
  return out


def median_range(values: Sequence[float], fmt: str = '{:.2f}') -> str:
  """``median (low-high)`` of ``values``, or the one value."""
  if len(values) == 1:
    return fmt.format(values[0])
  low, high = min(values), max(values)
  return f'{fmt.format(statistics.median(values))} ({fmt.format(low)}-{fmt.format(high)})'


def ratio(run: dict, mine: str, theirs: str, key: str = 'wall') -> float | None:
  """How many times ``theirs`` took as long as ``mine`` in one run."""
  methods = run['methods']
  if mine not in methods or theirs not in methods:
    return None
  return methods[theirs][key] / methods[mine][key]


def summarise(runs: Sequence[dict], pairs: Sequence[tuple[str, str]], metric: str) -> list[str]:
  """Markdown: one row per run (load, wall seconds per method, ratios), then
  medians and ranges, then each method's choices and test ``metric``."""
  names = list(runs[0]['methods'])
  kept = [(a, b) for a, b in pairs if a in names and b in names]
  head = ['run', 'first', 'load', *names, *(f'{b} / {a}' for a, b in kept)]
  lines = ['| ' + ' | '.join(head) + ' |', '| ' + ' | '.join(['---:'] * len(head)) + ' |']
  for i, run in enumerate(runs):
    cells = [str(i + 1), run['order'][0], f'{run["load"][0]:.1f}-{run["load"][1]:.1f}']
    cells += [f'{run["methods"][n]["wall"]:.2f}' for n in names]
    cells += [f'{ratio(run, a, b):.2f}' for a, b in kept]
    lines.append('| ' + ' | '.join(cells) + ' |')
  lines += [
      '',
      '| method | wall (s) median (range) | CPU (s) median (range) | chosen rate | CV '
      f'{metric} | test {metric} |',
      '| --- | ---: | ---: | ---: | ---: | ---: |',
  ]
  for n in names:
    rows = [run['methods'][n] for run in runs]
    choices = sorted({f'{r["rate"]:.3g}' for r in rows})
    cv = sorted({f'{r["cv_metric"]:.4f}' for r in rows})
    test = sorted({f'{r["test_metric"]:.4f}' for r in rows})
    lines.append(
        f'| {n} | {median_range([r["wall"] for r in rows])} | '
        f'{median_range([r["cpu"] for r in rows])} | {", ".join(choices)} | '
        f'{", ".join(cv)} | {", ".join(test)} |'
    )
  lines.append('')
  for a, b in kept:
    walls = [ratio(run, a, b) for run in runs]
    cpus = [ratio(run, a, b, 'cpu') for run in runs]
    lines.append(
        f'- {b} / {a}: {median_range(walls, "{:.2f}x")} the wall time, '
        f'{median_range(cpus, "{:.2f}x")} the CPU time'
    )
  if len(runs) > 1:
    lines.append(f'- medians (ranges) over {len(runs)} runs')
  return lines


def host_devices(count: int | None) -> None:
  """Asks XLA for ``count`` host devices (none asked for when ``count`` is
  0 or ``None``), unless ``XLA_FLAGS`` already says how many. Call it before
  JAX is imported: JAX reads the flag when it starts."""
  flags = os.environ.get('XLA_FLAGS', '')
  if count and 'xla_force_host_platform_device_count' not in flags:
    os.environ['XLA_FLAGS'] = f'{flags} --xla_force_host_platform_device_count={count}'.strip()
