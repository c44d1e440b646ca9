"""Strict numerics for every test.

Rank promotion raises everywhere. Strict dtype promotion cannot be global:
optax's own Adam mixes its int32 step count with Python floats, which strict
mode rejects. Tests of wdax's own code use the ``strict_dtypes`` fixture, which
turns it on around the test body.
"""

import jax
import pytest

jax.config.update('jax_numpy_rank_promotion', 'raise')


@pytest.fixture
def strict_dtypes():
  with jax.numpy_dtype_promotion('strict'):
    yield
