"""Where the wall time of the main job, ``wdax sweep`` with no options, goes.

Each run is a new process, as a user's is, with a fresh ``--out``. Two kinds:

- *compiling*: ``--no-cache``, every program compiled (a first run);
- *cached*: ``--cache DIR``, a folder filled by one untimed run first (every
  later run on the machine, the default).

In each run the phases are timed inside the process by wrapping the CLI's
own steps: Python's start and the imports up to ``wdax.cli``; parsing;
reading the data (``loading.load``); resolving the problem
(``problems.resolve``); the sweep and the refit (the CLI's own clock, which
includes compiling or loading their programs, and the imports of Flax and
the model); the tables (``rendering``); and writing results.json and the
plot (``writing.write``, matplotlib's import included). The rest is what no
phase holds (the resume check, summaries, the interpreter's exit). The
load average is given with each run.

  python benchmarks/main_job.py --repeats 5
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time

import timing

# Runs in the child: times each phase of `wdax sweep` by wrapping it.
DRIVER = r'''
import json, sys, time
start = float(sys.argv[1])
import wdax.cli
from wdax.cli import loading, parsing, problems, rendering, running, writing
spent = {'start and imports': time.time() - start}

def timed(module, name, phase):
  inner = getattr(module, name)
  def wrapper(*args, **kwargs):
    t = time.perf_counter()
    try:
      return inner(*args, **kwargs)
    finally:
      spent[phase] = spent.get(phase, 0.0) + time.perf_counter() - t
  setattr(module, name, wrapper)

timed(parsing, 'parse', 'parsing')
timed(loading, 'load', 'data')
timed(problems, 'resolve', 'problem')
timed(rendering, 'print_tables', 'tables')
timed(rendering, 'print_choice', 'tables')
timed(writing, 'write', 'results.json and plot')
inner_train = running._train
def train(*args, **kwargs):
  found, timing = inner_train(*args, **kwargs)
  spent['sweep'] = timing.sweep
  spent['refit'] = timing.refit
  return found, timing
running._train = train
status = wdax.cli.main(sys.argv[2:])
spent['before exit'] = time.time() - start
print('PHASES ' + json.dumps(spent))
sys.exit(status)
'''

PHASES = [
    'start and imports', 'parsing', 'data', 'problem', 'sweep', 'refit',
    'tables', 'results.json and plot', 'rest',
]


def run(args: list[str]) -> dict[str, float]:
  """One ``wdax sweep`` in a new process: its phases and wall time."""
  with tempfile.TemporaryDirectory() as out:
    start = time.time()
    done = subprocess.run(
        [sys.executable, '-c', DRIVER, repr(start), 'sweep', '--quiet', '--out', out, *args],
        capture_output=True, text=True, check=False,
    )
    wall = time.time() - start
  if done.returncode:
    sys.exit(done.stderr[-2000:])
  line = next(x for x in done.stdout.splitlines() if x.startswith('PHASES '))
  spent = json.loads(line[len('PHASES '):])
  spent['rest'] = wall - sum(v for k, v in spent.items() if k != 'before exit')
  spent['wall'] = wall
  spent['load'] = timing.load()
  return spent


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--repeats', type=int, default=5, help='runs of each kind (default 5)')
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as cache:
    run(['--cache', cache])  # fills the cache
    kinds = {'compiling': ['--no-cache'], 'cached': ['--cache', cache]}
    runs: dict[str, list[dict[str, float]]] = {kind: [] for kind in kinds}
    for i in range(args.repeats):
      # Alternated, so that a load that rises or falls favours neither.
      for kind in (kinds if i % 2 == 0 else reversed(list(kinds))):
        spent = run(kinds[kind])
        runs[kind].append(spent)
        print(f'{kind:9s} wall {spent["wall"]:5.2f} s, load {spent["load"]:.2f}', flush=True)
  for kind, spents in runs.items():
    print(f'\n{kind}: median (min-max) of {len(spents)} runs, seconds')
    for phase in [*PHASES, 'wall']:
      print(f'  {phase:24s} {timing.median_range([s.get(phase, 0.0) for s in spents])}')


if __name__ == '__main__':
  main()
