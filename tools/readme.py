"""Render nbs/index.ipynb to README.md without Quarto (which cannot be installed everywhere).

`python tools/readme.py` writes README.md; `python tools/readme.py --check` exits 1 if README.md is out of date.
Cells marked `#| hide` are left out; nbdev directives are stripped; code cells become fenced python blocks
followed by their text output.
"""
import json, re, sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent
DIRECTIVE = re.compile(r'^\s*#\s*\|.*$')

def _text(src): return ''.join(src) if isinstance(src, list) else src

def cell_markdown(cell) -> str:
    "Markdown for one notebook cell, or '' if it is hidden."
    src = _text(cell['source'])
    if cell['cell_type'] == 'markdown': return src.strip()
    if any(re.match(r'^\s*#\s*\|\s*(hide|export|default_exp)', l) for l in src.splitlines()): return ''
    code = '\n'.join(l for l in src.splitlines() if not DIRECTIVE.match(l)).strip()
    outs = [_text(o.get('text', o.get('data', {}).get('text/plain', ''))) for o in cell.get('outputs', [])]
    out = ''.join(outs).strip()
    return f"```python\n{code}\n```" + (f"\n\n    " + out.replace('\n', '\n    ') if out else '')

def render() -> str:
    nb = json.loads((root/'nbs'/'index.ipynb').read_text(encoding='utf-8'))
    body = '\n\n'.join(m for m in map(cell_markdown, nb['cells']) if m)
    return "<!-- generated from nbs/index.ipynb by tools/readme.py: edit the notebook, not this file -->\n\n" + body + '\n'

if __name__ == '__main__':
    readme, new = root/'README.md', render()
    if '--check' in sys.argv:
        if not readme.exists() or readme.read_text(encoding='utf-8') != new:
            sys.exit('README.md is out of date with nbs/index.ipynb: run `python tools/readme.py` and commit.')
    else: readme.write_text(new, encoding='utf-8')
