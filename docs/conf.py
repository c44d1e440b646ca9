"""Sphinx configuration of the wdax docs: guides in MyST, API from docstrings.

Build: ``sphinx-build -W --keep-going -b html docs docs/_build/html``. Nothing
is fetched from the network (no intersphinx); the API pages are written from
``__all__`` by ``_ext/apipages.py`` when the build starts.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE / '_ext'))

import wdax  # noqa: E402

project = 'wdax'
author = 'the wdax authors'
copyright = 'the wdax authors'
release = wdax.__version__
version = release

extensions = [
    'myst_parser',
    'sphinx.ext.autodoc',
    'sphinx.ext.autosummary',
    'sphinx.ext.napoleon',
    'sphinx.ext.mathjax',
    'apipages',
]

source_suffix = {'.rst': 'restructuredtext', '.md': 'markdown'}
exclude_patterns = ['_build', '_generated', 'README.md', 'conftest.py']
root_doc = 'index'

myst_enable_extensions = ['dollarmath', 'colon_fence']
myst_heading_anchors = 3

autodoc_member_order = 'bysource'
autodoc_typehints = 'signature'
autosummary_generate = False
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

html_theme = 'alabaster'
html_title = f'wdax {release}'
html_static_path = []
html_theme_options = {
    'description': 'Weight decay done right for JAX',
    'fixed_sidebar': True,
}


# The guides in reading order; any other guide in guides/ follows them, and
# one named here that does not exist yet is left out. Guides and the results
# schema page are written on other branches at the same time, so the index's
# tables of contents are written at build time (to _generated/toc.md, which
# index.md includes) rather than naming pages that may not exist.
GUIDES = (
    'which_decay',
    'rates',
    'masks_and_paths',
    'parameter_groups',
    'low_precision',
    'guarantees',
    'training_flax',
    'choosing_decay',
    'cli_questions',
    'performance',
)
REFERENCE = ('api/index', 'results_schema')


def _toctree(caption, names):
  lines = ['```{toctree}', f':caption: {caption}', ':maxdepth: 2', '']
  return '\n'.join(lines + list(names) + ['```', ''])


def write_toc(app):
  src = Path(app.srcdir)
  found = sorted(p.stem for p in (src / 'guides').glob('*.md'))
  guides = [g for g in GUIDES if g in found] + [g for g in found if g not in GUIDES]
  reference = [r for r in REFERENCE if (src / f'{r}.md').exists()]
  text = (_toctree('Guides', [f'guides/{g}' for g in guides]) + '\n'
          + _toctree('Reference', reference))
  out = src / '_generated' / 'toc.md'
  out.parent.mkdir(exist_ok=True)
  if not out.exists() or out.read_text() != text:
    out.write_text(text)


def setup(app):
  app.connect('builder-inited', write_toc)
