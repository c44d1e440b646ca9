"""Tests of ``wdax describe``: which parameters of a built-in model a mask
decays, and the one line for a mask the model cannot take."""

import pytest
from support.cli_inputs import refused

from wdax import cli


@pytest.mark.parametrize(
    ('mask', 'expected'),
    [
        ('flax', {'kernel': 'yes', 'query/bias': 'no', 'embedding': 'no', 'scale': 'no'}),
        ('matrices', {'kernel': 'yes', 'query/bias': 'yes', 'embedding': 'yes', 'scale': 'no'}),
        ('flax+embeddings', {'kernel': 'yes', 'query/bias': 'no', 'embedding': 'yes', 'scale': 'no'}),
    ],
)
def test_describe_shows_the_mask(mask, expected, capsys):
  assert cli.main(['describe', '--mask', mask]) == 0
  text = capsys.readouterr().out
  rows = {}
  for line in text.splitlines():
    fields = line.split()
    if fields and '/' in fields[0]:
      rows[fields[0]] = fields
  attention = 'MultiHeadDotProductAttention_0'
  assert rows[f'{attention}/query/kernel'][-2] == expected['kernel']
  assert rows[f'{attention}/query/bias'][-2] == expected['query/bias']
  assert rows['Embed_0/embedding'][-2] == expected['embedding']
  assert rows['LayerNorm_0/scale'][-2] == expected['scale']
  assert 'decayed:' in text


def test_describe_mlp(capsys):
  assert cli.main(['describe', '--model', 'mlp', '--hidden', '32,16']) == 0
  text = capsys.readouterr().out
  assert 'Dense_2/kernel' in text and '(16, 10)' in text


def test_describe_refuses_a_mask_the_model_cannot_take(capsys):
  status = cli.main(['describe', '--model', 'mlp', '--mask', 'flax+embeddings'])
  refused(
      status, capsys,
      "--mask flax+embeddings does not fit --model mlp: flax_default(): no parameter "
      "is named 'embedding'; available paths: ['Dense_0/bias', 'Dense_0/kernel',",
  )
