"""Resuming ``wdax sweep``: the same command into the same ``--out`` goes on
where a killed run stopped.

Each kind's :func:`wdax.sweep.select` saves its progress under
``--out``/checkpoint/KIND (``checkpoint=``), and ``command.json`` there
keeps the options of the run. Started again, the command compares its
options with them, in the order of :data:`OPTIONS`: the same ones resume
(and a finished run prints its results without training); different ones
are refused, naming the first option that differs, while the run is
unfinished, unless ``--restart`` discards it; a finished run of another
command is replaced.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
from typing import Any

from wdax.cli.errors import BadInput
from wdax.cli.requests import SweepRequest
from wdax.sweep import errors

# The options that change what is trained, in the order a difference is named.
OPTIONS = (
    'data', 'kinds', 'rates', 'lr', 'dropout', 'folds', 'seeds', 'epochs', 'hidden',
    'batch_size', 'prune', 'criterion', 'one_se', 'test_size', 'seed', 'devices', 'chunk_size',
)
COMMAND = 'command.json'


def folder(request: SweepRequest) -> str:
  """Where the checkpoints of ``request``' run go."""
  return os.path.join(request.out, 'checkpoint')


def kind_folder(request: SweepRequest, kind: str) -> str:
  return os.path.join(folder(request), kind)


def _option(name: str) -> str:
  return '--kind' if name == 'kinds' else '--' + name.replace('_', '-')


def _command(request: SweepRequest) -> dict[str, Any]:
  return {name: json.loads(json.dumps(getattr(request, name))) for name in OPTIONS}


def _statuses(request: SweepRequest) -> list[Any]:
  from wdax.sweep import _checkpoint

  return [_checkpoint.status(kind_folder(request, kind)) for kind in request.kinds]


def start(request: SweepRequest) -> str | None:
  """Prepares ``--out`` for the run; the line that says what it resumes,
  or ``None`` for a fresh run. Refuses (:class:`BadInput`) another
  command's unfinished run unless ``--restart``."""
  here = folder(request)
  path = os.path.join(here, COMMAND)
  saved = None
  if os.path.exists(path):
    try:
      with open(path) as f:
        saved = json.load(f)
    except (OSError, ValueError):
      saved = None
  given = _command(request)
  statuses = _statuses(request) if saved == given else []
  if saved is not None and saved != given:
    name = next(n for n in OPTIONS if saved.get(n) != given[n])
    if _unfinished(here, saved.get('kinds') or []) and not request.restart:
      raise BadInput(
          f'--out {request.out} holds an unfinished run of another command: '
          f'{_option(name)} was {_shown(saved.get(name))}, now {_shown(given[name])}; '
          'run that command again to resume it, or give --restart to discard it'
      )
  if request.restart or saved != given:
    shutil.rmtree(here, ignore_errors=True)
    statuses = []
  os.makedirs(here, exist_ok=True)
  with open(path, 'w') as f:
    json.dump(given, f)
  return _describe(request, statuses)


def clean(request: SweepRequest, existed: bool) -> None:
  """Removes what a fresh run saved when it is refused (every rate
  diverged, out of memory): bad input writes nothing; ``--out`` too unless
  it ``existed``."""
  shutil.rmtree(folder(request), ignore_errors=True)
  if not existed and os.path.isdir(request.out) and not os.listdir(request.out):
    os.rmdir(request.out)


def _unfinished(here: str, kinds: list[str]) -> bool:
  """Whether a kind of the saved run has a checkpoint short of its end."""
  from wdax.sweep import _checkpoint

  for kind in kinds:
    found = _checkpoint.status(os.path.join(here, str(kind)))
    if found is not None and len(found.finished) < 2:
      return True
  return False


def _shown(value: Any) -> str:
  if isinstance(value, list):
    return ','.join(map(str, value))
  return 'not given' if value is None else str(value)


def _describe(request: SweepRequest, statuses: list[Any]) -> str | None:
  started = [s for s in statuses if s is not None]
  if not started or not any(s.trained for s in started):
    return None
  trained = sum(s.trained for s in started)
  planned = started[0].planned * len(request.kinds)
  if all(s is not None and len(s.finished) == 2 for s in statuses):
    return (
        f'resuming from {folder(request)}: the run finished ({trained} configuration-epochs '
        "trained, the refit's included); nothing is left to train"
    )
  return (
      f'resuming from {folder(request)}: {trained} configuration-epochs already trained, '
      f"{planned - trained} left (the refit's included)"
  )


def stopped(request: SweepRequest, error: errors.Interrupted) -> int:
  """Says how to resume a run a signal stopped; its exit status."""
  name = signal.Signals(error.signal).name
  print(
      f'wdax: {name}: stopped at a safe point; the progress is saved in {folder(request)}. '
      f'Run the same command to resume: wdax {" ".join(request.argv)}',
      file=sys.stderr,
  )
  return 128 + int(error.signal)


def refused(request: SweepRequest, error: errors.CheckpointMismatch) -> BadInput:
  """The library's refusal of the saved run (data or versions changed
  under the same options), as bad input naming what differs."""
  return BadInput(
      f'--out {request.out}: {error.setting} differs from the saved run\'s '
      f'(was {error.saved}, now {error.given}); give --restart to discard it'
  )
