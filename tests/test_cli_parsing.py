"""Tests of wdax.cli.parsing: the options of issue 11, their defaults by
problem, and the one line each bad value gets."""

import dataclasses
import os

import pytest

from wdax import cli
from wdax.cli import parsing
from wdax.cli.requests import DescribeRequest
from wdax.cli.requests import SweepRequest


def _parse(*argv):
  return parsing.parse(['sweep', *argv])


def test_parse_rates():
  assert cli.parse_rates('1e-4:10:6') == [1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0]
  assert cli.parse_rates('5') == [5.0]
  assert cli.parse_rates('0.1, 0, 0.1') == [0.0, 0.1]
  assert cli.parse_rates('1e-2:1e-2:1') == [0.01]


def test_rate_0_is_added_to_the_grid_as_the_baseline():
  args = _parse('--rates', '1e-2:1:3')
  assert args.rates == (0.01, 0.1, 1.0)
  assert args.grid == (0.0, 0.01, 0.1, 1.0)
  assert _parse('--rates', '0,1').grid == (0.0, 1.0)


@pytest.mark.parametrize(
    ('data', 'problem', 'epochs', 'hidden', 'rates', 'test_size'),
    [
        ('digits', 'classification', 20, (256,), 16, 0.5),
        ('wine', 'classification', 20, (256,), 16, 0.5),
        ('x.csv', 'classification', 20, (256,), 16, 0.5),
        ('diabetes', 'regression', 40, (256,), 16, 0.5),
        ('text', 'language', 10, (32,), 4, 0.2),
    ],
)
def test_defaults_follow_the_problem(data, problem, epochs, hidden, rates, test_size):
  args = _parse('--data', data)
  assert (args.problem, args.epochs, args.hidden, len(args.rates), args.test_size) == (
      problem, epochs, hidden, rates, test_size
  )
  assert args.lr == (3e-3,) and args.kinds == ('adamw',) and args.dropout is None
  # Given options win over the problem's defaults.
  assert _parse('--data', data, '--epochs', '3').epochs == 3


def test_lists_and_prune_are_read():
  args = _parse('--kind', 'l2, l1,l2', '--lr', '1e-3,3e-3', '--prune', '2:4')
  assert args.kinds == ('l2', 'l1')
  assert args.lr == (1e-3, 3e-3)
  assert args.prune == (2, 4)
  # One learning rate is no sweep: it goes with any --dropout list.
  args = _parse('--lr', '1e-2', '--dropout', '0.5,0')
  assert args.dropout == (0.5, 0.0) and args.lr == (1e-2,)
  assert _parse('--prune', '3').prune == (3, 2)


BAD = {
    'an unknown kind in a list': (['--kind', 'adamw,adamx'], "--kind 'adamx': unknown; choose from adamw,"),
    'an empty kind list': (['--kind', ','], 'argument --kind: give at least one value'),
    'a learning rate of 0': (['--lr', '1e-3,0'], "argument --lr: '0' must be a positive number"),
    'dropout of 1': (['--dropout', '0,1'], "argument --dropout: '1' must be in [0, 1)"),
    'negative dropout': (['--dropout=-0.1'], "argument --dropout: '-0.1' must be in [0, 1)"),
    'dropout not a number': (['--dropout', 'half'], "argument --dropout: 'half' is not a number"),
    'lr and dropout both swept': (
        ['--lr', '1e-3,1e-2', '--dropout', '0,0.1'],
        '--lr and --dropout: sweep one of them with the rate, not both',
    ),
    'a factor of 1': (['--prune', '2:1'], "argument --prune: '1' must be at least 2"),
    'a first rung of 0': (['--prune', '0'], "argument --prune: '0' must be at least 1"),
    'three parts': (['--prune', '1:2:3'], "argument --prune: '1:2:3': expected MIN_EPOCHS or MIN_EPOCHS:FACTOR"),
    'a first rung past the epochs': (
        ['--prune', '30', '--epochs', '20'],
        '--prune 30:2: the first rung (30 epochs) must end by the last epoch (--epochs 20)',
    ),
}


@pytest.mark.parametrize('case', sorted(BAD))
def test_bad_values_of_the_new_options_are_one_line(case, tmp_path, capsys, monkeypatch):
  monkeypatch.setenv('XLA_FLAGS', os.environ.get('XLA_FLAGS', ''))
  args, expected = BAD[case]
  out = tmp_path / 'out'
  status = cli.main(['sweep', *args, '--out', str(out), '--quiet', '--devices', '1'])
  captured = capsys.readouterr()
  assert status == 2
  lines = captured.err.splitlines()
  assert len(lines) == 1 and lines[0].startswith('wdax: error: '), captured.err
  assert expected in lines[0], lines[0]
  assert not out.exists()


def test_a_request_is_frozen():
  request = _parse('--rates', '1', '--batch-size', '64')
  with pytest.raises(dataclasses.FrozenInstanceError):
    request.batch_size = 8  # type: ignore[misc]


def test_a_request_from_python_is_the_request_of_its_command_line():
  argv = ['sweep', '--data', 'wine', '--rates', '0.1,1', '--folds', '3', '--prune', '2:3']
  assert parsing.parse(argv) == SweepRequest.of(
      'wine', rates='0.1,1', folds=3, prune=(2, 3), argv=argv
  )
  request = SweepRequest.of('diabetes', rates=[1.0, 0.1], lr=[1e-3, 3e-3])
  assert request.grid == (0.0, 0.1, 1.0) and request.epochs == 40
  assert request.space == {'rate': [0.0, 0.1, 1.0], 'lr': [1e-3, 3e-3]}
  assert request.trainings == 3 * 2 * 5


@pytest.mark.parametrize(
    ('data', 'criterion', 'metric'),
    [
        ('digits', 'loss', ('val_loss', 'min')),
        ('digits', 'accuracy', ('val_accuracy', 'max')),
        ('diabetes', 'r2', ('val_r2', 'max')),
        ('text', 'perplexity', ('val_loss', 'min')),
    ],
)
def test_the_criterion_sets_the_metric_and_its_direction(data, criterion, metric):
  assert _parse('--data', data, '--criterion', criterion).metric == metric


def test_prune_keeps_no_decay_and_prefers_the_largest_rate():
  halving = _parse('--prune', '2:4').halving
  assert (halving.min_epochs, halving.reduction_factor, halving.keep, halving.one_se) == (
      2, 4, (('rate', 0.0),), 'rate'
  )
  assert _parse().halving is None


def test_describe_is_a_request_of_its_own():
  assert parsing.parse(['describe', '--model', 'mlp', '--hidden', '8,4']) == DescribeRequest(
      model='mlp', mask='flax', rate=1e-4, hidden=(8, 4)
  )
