"""Runs each example with tiny settings and checks that it learned something."""

import importlib.util
import pathlib
import re
import subprocess
import sys

import pytest

_EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / 'examples'
_NAMES = ['quickstart', 'mlp_digits', 'transformer_nnx', 'finetune_l2sp']


_TINY = {
    'quickstart': ['--epochs', '8', '--hidden', '32'],
    'mlp_digits': ['--steps', '150', '--hidden', '32'],
    'transformer_nnx': [
        '--steps', '60', '--no-progress', '--dim', '32', '--depth', '1',
        '--context', '32', '--batch', '8',
    ],
    'finetune_l2sp': [
        '--pretrain-steps', '150', '--finetune-steps', '100', '--hidden', '32',
    ],
}


def _run(name):
  done = subprocess.run(
      [sys.executable, str(_EXAMPLES / f'{name}.py'), *_TINY[name]],
      capture_output=True,
      text=True,
      timeout=300,
  )
  assert done.returncode == 0, done.stderr[-3000:]
  return done.stdout


def _number(pattern, text):
  found = re.findall(pattern, text)
  assert found, f'{pattern!r} not in output:\n{text}'
  return [float(x) for x in found]


@pytest.mark.parametrize('name', _NAMES)
def test_help(name, monkeypatch, capsys):
  spec = importlib.util.spec_from_file_location(
      f'example_{name}', _EXAMPLES / f'{name}.py'
  )
  module = importlib.util.module_from_spec(spec)
  # Dataclasses (Flax modules) look their module up in sys.modules.
  monkeypatch.setitem(sys.modules, spec.name, module)
  spec.loader.exec_module(module)
  monkeypatch.setattr(sys, 'argv', [name, '--help'])
  with pytest.raises(SystemExit) as info:
    module.main()
  assert info.value.code == 0
  assert '--seed' in capsys.readouterr().out


@pytest.mark.slow
def test_quickstart_learns_with_and_without_decay():
  out = _run('quickstart')
  assert 'Dense_0/kernel' in out and 'decayed:' in out
  rates = _number(r'decoupled decay ([\d.e-]+):', out)
  accuracy = _number(r'held-out accuracy ([\d.]+)', out)
  assert rates == [0.0, 0.1]
  # Chance is 0.1; a model that did not train stays near it.
  assert min(accuracy) > 0.85, out


@pytest.mark.slow
def test_mlp_digits_learns_with_and_without_decay():
  out = _run('mlp_digits')
  assert 'Dense_0/kernel' in out and 'decayed:' in out
  decays = _number(r'weight_decay=(\S+)', out)
  test_acc = _number(r'test_acc=([\d.]+)', out)
  kernel_norm = _number(r'kernel_norm=([\d.]+)', out)
  assert decays == [0.0, 0.5]
  # Chance is 0.1; a model that did not train stays near it.
  assert min(test_acc) > 0.85, out
  assert min(_number(r'train_acc=([\d.]+)', out)) > 0.85, out
  # Decay shrinks the decayed kernels.
  assert kernel_norm[1] < kernel_norm[0], out


@pytest.mark.slow
def test_transformer_nnx_lowers_the_loss():
  out = _run('transformer_nnx')
  assert 'tokens/embedding' in out and 'Decaying everything' in out
  uniform = _number(r'uniform-guess loss:\s+([\d.]+)', out)[0]
  first = _number(r'first step loss:\s+([\d.]+)', out)[0]
  final = _number(r'final train loss:\s+([\d.]+)', out)[0]
  held_out = _number(r'held-out loss:\s+([\d.]+)', out)[0]
  assert final < first - 1.0, out
  # Byte frequencies alone reach about 3.3 nats; a broken run stays near 5.5.
  assert held_out < uniform - 1.0, out


@pytest.mark.slow
def test_finetune_l2sp_reports_both_decays():
  out = _run('finetune_l2sp')
  assert _number(r'accuracy ([\d.]+)', out)[0] > 0.9, out
  test_acc = _number(r'test_acc=([\d.]+)', out)
  distance = _number(r'distance_from_pretrained=([\d.]+)', out)
  assert 'L2-SP' in out and 'toward zero' in out
  # Five new classes: chance is 0.2.
  assert len(test_acc) == 2 and min(test_acc) > 0.6, out
  # Decay toward the pre-trained weights keeps closer to them.
  assert distance[0] < distance[1], out
