"""The ``wdax`` command line.

``wdax sweep`` chooses a decay rate by cross-validation (:func:`wdax.sweep.select`),
against no decay, for a built-in data set or a file, one or several decay
kinds, optionally with the learning rate or the dropout rate, pruned or not;
it refits the choice on the whole training split and reports its held-out
score. ``wdax describe`` prints which parameters of a built-in model a mask
decays. This is the only part of wdax that prints, draws or touches files.
``wdax <command> --help`` lists the options.

Bad input (a missing file or column, NaNs, a class with fewer examples than
folds, an empty grid, a malformed option, a criterion the data set has not)
ends the run with one line on stderr, ``wdax: error: ...``, and exit status
2; nothing is written. A reader of stdout that goes away (``wdax sweep |
head``) ends the run quietly with status 141, as SIGPIPE ends other
commands; what a checkpoint saved is kept.

The modules: :mod:`~wdax.cli.parsing` reads the options into a frozen
request (:mod:`~wdax.cli.requests`), :mod:`~wdax.cli.loading` the data,
:mod:`~wdax.cli.problems` resolves the split, model, task and metric of the
request once, :mod:`~wdax.cli.running` runs the sweep (and
:mod:`~wdax.cli.describing` ``wdax describe``), :mod:`~wdax.cli.report`
gathers the sweep's results into dataclasses and results.json,
:mod:`~wdax.cli.rendering` prints them, :mod:`~wdax.cli.plotting` draws
sweep.png, :mod:`~wdax.cli.writing` writes both files,
:mod:`~wdax.cli.folders` checks the folders written in and
:mod:`~wdax.cli.caching` keeps compiled programs for the next run.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence

from wdax.cli import describing
from wdax.cli import parsing
from wdax.cli import running
from wdax.cli.errors import BadInput
from wdax.cli.errors import one_line
from wdax.cli.requests import DescribeRequest
from wdax.cli.requests import SweepRequest
from wdax.cli.requests import parse_rates


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the command line; returns the exit status."""
  argv = list(sys.argv[1:] if argv is None else argv)
  try:
    try:
      request = parsing.parse(argv)
    except SystemExit as done:  # --help: argparse printed it and exits
      return int(done.code or 0)
    if isinstance(request, DescribeRequest):
      status = describing.describe(request)
    else:
      status = running.sweep(request)
    sys.stdout.flush()  # a closed pipe shows here, not at the exit
    return status
  except BadInput as e:
    print(f'wdax: error: {one_line(str(e))}', file=sys.stderr)
    return 2
  except BrokenPipeError:
    _silence_stdout()
    return 128 + signal.SIGPIPE


def _silence_stdout() -> None:
  """Points stdout at /dev/null, so that flushing it at the exit raises
  nothing more."""
  try:
    fd = sys.stdout.fileno()
  except (AttributeError, OSError, ValueError):  # not a file: nothing to flush
    return
  devnull = os.open(os.devnull, os.O_WRONLY)
  os.dup2(devnull, fd)
  os.close(devnull)


__all__ = ['BadInput', 'DescribeRequest', 'SweepRequest', 'main', 'parse_rates']
