"""Build the offline docs site in `_site/`: every notebook executed once, the way `nbdev_test` runs it, and rendered
to static HTML with its real outputs, a sidebar, and plotly.js and MathJax served from the site itself (no network,
no Quarto).

    python tools/docs.py                                # execute every notebook, then render the whole site
    python tools/docs.py --path nbs/04_encoder.ipynb    # execute one notebook, re-render the site
    python tools/docs.py --no_exec                      # re-render from the executed copies in _site/nbs/

Execution *is* `nbdev.test.test_nb` (skip flags from settings.ini, `#| eval: false`, working directory, error report),
given a shell that also keeps the executed notebook and runs nbdev's `show_doc` for every exported name. A failing
notebook is reported as `nbdev_test` reports it and the build exits 1, so tools/test.sh uses the build as the notebook
test. Pages go through nbdev's doc processors (hide, export, directives, links) and nbconvert's lab template.
"""
import json, os, re, shutil, sys, tempfile, time
from pathlib import Path

os.environ.setdefault('PLOTLY_RENDERER', 'plotly_mimetype')  # figures as JSON; the site ships plotly.js once

import jinja2, nbformat
import plotly, plotly.io as pio
from execnb.nbio import nb2dict, read_nb
from execnb.shell import CaptureShell
from fastcore.parallel import parallel
from fastcore.script import call_parse
from fastcore.xtras import working_directory
from nbconvert import HTMLExporter
from nbconvert.filters.markdown_mistune import markdown2html_mistune
from traitlets.config import Config
import nbdev.test
from nbdev.config import get_config
from nbdev.doclinks import _nbpath2html, nbglob
from nbdev.process import NBProcessor
from nbdev.processors import FilterDefaults, add_fold, add_show_docs, exec_show_docs, insert_warning
from nbdev.test import _keep_file
from clvq_nb.core import write_atomic

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT/'_site'
PLOTLY, WIDGET = 'application/vnd.plotly.v1+json', 'application/vnd.jupyter.widget-view+json'

# ---------------------------------------------------------------- execution: nbdev's test run, outputs kept

class DocShell(CaptureShell):
    "nbdev's test shell that, after the notebook, runs `show_doc` for each exported name and keeps the notebook."
    ran = None
    def run_all(self, nb, *args, **kwargs):
        super().run_all(nb, *args, **kwargs)
        add_show_docs(nb).begin()  # inserts `show_doc(name)` cells after the exports, as `nbdev_docs` does
        self.run('from nbdev.showdoc import show_doc')
        for cell in [c for c in nb.cells if getattr(c, 'has_sd', False)]:
            self.cell(cell)
            if self.exc: raise self.exc
        DocShell.ran = nb

nbdev.test.CaptureShell = DocShell  # `test_nb` now keeps what it ran; what it runs and skips is unchanged

def with_outputs(nb:nbformat.NotebookNode, ran) -> nbformat.NotebookNode:
    "Notebook `nb` as written, with the outputs of its run `ran` and the `show_doc` cells after their exports."
    groups = []  # one per code cell of `nb`: [its run, the show_doc cells that follow it]
    for c in ran.cells:
        if c.cell_type != 'code': continue
        if getattr(c, 'has_sd', False): groups[-1].append(c)
        else: groups.append([c])
    if len(groups) != sum(c.cell_type == 'code' for c in nb.cells): raise ValueError("it changed while it ran")
    cells = []
    for cell in nb.cells:
        cells.append(cell)
        if cell.cell_type != 'code': continue
        run, *docs = groups.pop(0)
        cell.outputs = [nbformat.from_dict(o) for o in nb2dict(run.get('outputs', []))]
        cells += [nbformat.v4.new_code_cell(d.source, outputs=[nbformat.from_dict(o) for o in nb2dict(d.outputs)])
                  for d in docs]
    nb.cells = cells
    return nb

def executed_path(fn:Path) -> Path:
    "Where the executed copy of notebook `fn` goes: its path under the notebooks folder, in `_site/nbs/`."
    return SITE/'nbs'/fn.relative_to(get_config().nbs_path)

def execute(fn:Path, skip_flags=None, force_flags=None, basepath=None):
    "Run `fn` exactly as `nbdev_test` does; on success write it with its outputs to `_site/nbs/`."
    nb, DocShell.ran = nbformat.read(fn, as_version=4), None  # `ran` stays None if the front matter says `skip_exec`
    ok, secs = nbdev.test.test_nb(fn, skip_flags=skip_flags, force_flags=force_flags, basepath=basepath)
    try:
        if ok: write_atomic(executed_path(fn), nbformat.writes(with_outputs(nb, DocShell.ran) if DocShell.ran else nb))
    except ValueError as e:
        sys.stderr.write(f"{fn}: {e}: build again\n")
        ok = False
    return ok, secs

# Pool workers look `execute` up by module name, and each notebook's IPython shell replaces the `__main__` of its worker
sys.modules.setdefault('clvq_docs', sys.modules[__name__]); execute.__module__ = 'clvq_docs'

def execute_all(files:list, flags:str='', n_workers:int=None, timing:bool=False):
    "Execute `files` in parallel like `nbdev_test`; exit 1 naming the notebooks that failed."
    cfg = get_config()
    if n_workers is None: n_workers = 0 if len(files) == 1 else min(os.cpu_count(), 8)
    with working_directory(cfg.nbs_path):
        results = parallel(execute, files, skip_flags=cfg.tst_flags.split(), force_flags=flags.split(),
                           basepath=cfg.config_path, n_workers=n_workers, pause=0.01)
    passed, times = zip(*results)
    if not all(passed):
        failed = '\n\t'.join(f.name for p, f in zip(passed, files) if not p)
        sys.exit(f"\nnbdev Tests Failed On The Following Notebooks:\n{'=' * 50}\n\t{failed}\n")
    print("Success.")
    if timing:
        for t, f in sorted(zip(times, files), key=lambda o: o[0], reverse=True): print(f"{f.name}: {int(t)} secs")

# ------------------------------------------------------- pages: nbdev's doc processors, nbconvert's lab template

_MATH = re.compile(r'\$\$.+?\$\$|(?<![\\$])\$[^$\n]+?(?<!\\)\$', re.S)  # what MathJax typesets, as tex2jax finds it
_NB_LINK = re.compile(r'\]\((?!\w+:)([^)#\s]+\.ipynb)(#[^)\s]*)?\)')
_OPTION = re.compile(r'^\s*#\|\s*([\w-]+)\s*:\s*(.*?)\s*$')
_PANDOC_LINK = re.compile(r'\[([^\]]*)\]\(([^)\s]+)\)\{([^}]*)\}')  # [text](url){attrs}: show_doc writes it for Quarto

def _doc_prefix():
    cfg = get_config()
    return cfg.doc_host.rstrip('/') + '/' + cfg.doc_baseurl.strip('/') + '/'

def _fix_markdown(cell, fix):
    "Apply `fix` to a markdown cell's source and to each markdown output of a code cell."
    if cell.cell_type == 'markdown': cell.source = fix(cell.source)
    for o in cell.get('outputs', []):
        if 'text/markdown' in o.get('data', {}): o['data']['text/markdown'] = fix(''.join(o['data']['text/markdown']))

def pandoc_links(cell):
    "Links with Pandoc attributes (`show_doc`'s source links) as HTML links with those attributes."
    _fix_markdown(cell, lambda s: _PANDOC_LINK.sub(r'<a href="\2" \3>\1</a>', s))

def local_links(cell):
    "Point nbdev's doc links (to the published site) and links to notebooks at this site's pages."
    private = re.compile(r'\[(`[^`]+`)\]\(' + re.escape(_doc_prefix()) + r'[^)#]*#(?:[^)]*\.)?_(?!_)[^)]*\)')
    def fix(s):  # `show_doc` documents no private name, so nbdev's links to them would lead nowhere: unlink those
        s = private.sub(r'\1', s).replace(_doc_prefix(), '')
        return _NB_LINK.sub(lambda m: f"]({_nbpath2html(Path(m[1])).name}{m[2] or ''})", s)
    _fix_markdown(cell, fix)

def quarto_options(cell):
    "Apply the Quarto options nbdev leaves in a cell (`include`, `echo`, `output`: false), then remove them."
    if cell.cell_type != 'code': return
    lines = cell.source.splitlines(True)
    n = next((i for i, l in enumerate(lines) if not _OPTION.match(l)), len(lines))
    opts = {m[1]: m[2].lower() for m in map(_OPTION.match, lines[:n])}
    cell.source = ''.join(lines[n:])
    if opts.get('echo') == 'false': cell.metadata['transient'] = {'remove_source': True}
    if opts.get('output') == 'false': cell.outputs = []
    if opts.get('include') == 'false': del cell['source']

def site_outputs(cell):
    "Plotly figures as HTML drawn by the site's plotly.js; widgets (no kernel to run them here) as a note saying so."
    outs = []
    for o in cell.get('outputs', []):
        data = o.get('data')
        if data is not None:
            if WIDGET in data: o['data'] = {'text/html': WIDGET_NOTE}
            elif PLOTLY in data: o['data'] = {'text/html': pio.to_html(
                data[PLOTLY], include_plotlyjs=False, full_html=False, validate=False, config={'displaylogo': False})}
            if not o['data']: continue
        outs.append(o)
    if cell.cell_type == 'code': cell.outputs = outs

WIDGET_NOTE = '<p class="site-widget">An interactive widget: open the notebook in JupyterLab to use it.</p>'

def drop_frontmatter(cell):
    "Drop the YAML front matter cell: its title and description head the page."
    if cell.cell_type == 'raw' and cell.source.startswith('---'): del cell['source']

class SiteProcs(FilterDefaults):
    "nbdev's doc processors, less those that execute (outputs and `show_doc` cells exist) or write for Quarto."
    def base_procs(self):
        quarto_or_exec = {add_show_docs, exec_show_docs, insert_warning, add_fold}
        return [p for p in super().base_procs() if p not in quarto_or_exec] + [
            local_links, pandoc_links, quarto_options, site_outputs, drop_frontmatter]

def _inline_md(s:str) -> str: return re.sub(r'^<p>(.*)</p>\s*$', r'\1', markdown2html_mistune(s).strip(), flags=re.S)

def _output_data(nb) -> list: return [o.get('data', {}) for c in nb.cells for o in c.get('outputs', [])]

def site_page(fn:Path) -> dict:
    "The executed copy of notebook `fn` through `SiteProcs`, with what its page needs and what it should show."
    nb = read_nb(executed_path(fn))
    NBProcessor(nb=nb, procs=SiteProcs().procs()).process()
    fm, data = nb.frontmatter_, _output_data(nb)
    html = [''.join(d.get('text/html', '')) for d in data]
    md = [c.source for c in nb.cells if c.cell_type == 'markdown'] + [fm.get('title', ''), fm.get('description', '')]
    md += [''.join(d['text/markdown']) for d in data if 'text/markdown' in d]
    return dict(notebook=fn.relative_to(ROOT).as_posix(), executed=executed_path(fn).relative_to(SITE).as_posix(),
                page=Path(fm['output-file']).name, title=fm.get('title', fn.stem),
                description=fm.get('description', ''), nb=nb,
                figures=sum(h.count('class="plotly-graph-div"') for h in html),
                images=sum(any(k in d for k in ('image/png', 'image/jpeg', 'image/gif')) for d in data)
                       + sum(h.count('<img ') for h in html),
                equations=sum(len(_MATH.findall(m)) for m in md))

TEMPLATE = r"""{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block notebook_css -%}
<link rel="icon" href="data:,">
<link rel="stylesheet" href="assets/jupyter.css">
<link rel="stylesheet" href="assets/styles.css">
{%- endblock notebook_css -%}
{%- block html_head_js_mathjax -%}
<script type="text/x-mathjax-config">
MathJax.Hub.Config({
  tex2jax: {inlineMath: [['$', '$'], ['\\(', '\\)']], displayMath: [['$$', '$$'], ['\\[', '\\]']],
            processEscapes: true, processEnvironments: true},
  'HTML-CSS': {availableFonts: [], imageFont: null, preferredFont: null, webFont: 'STIX-Web',
               linebreaks: {automatic: true},  // MathJax 2's blank font is url(about:blank): a CORS error in Chromium
               styles: {'@font-face': {'font-family': 'MathJax_Blank', src: "local('MathJax_Blank')"}}},
  messageStyle: 'none'
});
</script>
<script src="assets/mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"></script>
<script src="assets/plotly.min.js"></script>
{%- endblock html_head_js_mathjax -%}
{%- block body_header -%}
{%- set site = resources.site -%}
<body class="jp-Notebook site" data-jp-theme-light="true" data-jp-theme-name="JupyterLab Light">
<nav class="site-nav" aria-label="Notebooks">
  <a class="site-name" href="index.html">{{ site.name }}</a>
  <ol>
  {%- for p in site.pages %}
    <li><a href="{{ p.page }}" title="{{ p.notebook }}"
           {%- if p.page == site.current.page %} aria-current="page"{% endif %}>{{ p.title_html }}</a></li>
  {%- endfor %}
  </ol>
</nav>
<main class="site-main">
<header class="site-header">
  <h1 class="site-title">{{ site.current.title_html }}</h1>
  <p class="description">{{ site.description_html }}</p>
  <p class="site-source"><code>{{ site.current.notebook }}</code> as the test run executed it:
    <a href="{{ site.executed }}" download>executed notebook</a></p>
</header>
{%- endblock body_header -%}
{%- block body_footer -%}
<footer class="site-footer">
  {%- set prev, next = resources.site.prev, resources.site.next %}
  {%- if prev %}<a class="prev" href="{{ prev.page }}">← {{ prev.title_html }}</a>{% endif %}
  {%- if next %}<a class="next" href="{{ next.page }}">{{ next.title_html }} →</a>{% endif %}
</footer>
</main>
</body>
{%- endblock body_footer -%}
"""

def exporter() -> HTMLExporter:
    "nbconvert's lab-template exporter with the site's template: a sidebar, no CDN scripts, local MathJax, plotly.js."
    return HTMLExporter(config=Config({'CoalesceStreamsPreprocessor': {'enabled': True}}), template_name='lab',
                        template_file='site.html.j2',
                        exclude_input_prompt=True, exclude_output_prompt=True,
                        extra_loaders=[jinja2.DictLoader({'site.html.j2': TEMPLATE})])

def write_assets(exp:HTMLExporter):
    "The files all pages share: JupyterLab's notebook CSS, nbs/styles.css, plotly.js and MathJax."
    env, assets = exp.environment, SITE/'assets'
    lab_css = [env.loader.get_source(env, f'static/{name}.css')[0] for name in ('index', 'theme-light')]
    write_atomic(assets/'jupyter.css', ''.join(lab_css))
    write_atomic(assets/'styles.css', (ROOT/'nbs'/'styles.css').read_bytes())
    write_atomic(assets/'plotly.min.js', (Path(plotly.__file__).parent/'package_data'/'plotly.min.js').read_bytes())
    if not (assets/'mathjax'/'MathJax.js').exists():
        import jupyter_server_mathjax
        tmp = Path(tempfile.mkdtemp(dir=assets))
        shutil.copytree(Path(jupyter_server_mathjax.__file__).parent/'static', tmp/'mathjax')
        os.replace(tmp/'mathjax', assets/'mathjax')
        tmp.rmdir()

_HEADING_ID = re.compile(r'(<h[1-6] id="|<a class="anchor-link" href="#)([^"]+)"')

def render_site(files:list):
    "Render the executed copies of `files` to `_site/`: one page each, the shared assets, and `site.json`."
    pages = sorted(map(site_page, files), key=lambda p: p['page'] != 'index.html')  # home first, then notebook order
    dupes = {p['page'] for p in pages if [q['page'] for q in pages].count(p['page']) > 1}
    if dupes: sys.exit(f"Several notebooks render to {', '.join(sorted(dupes))}: rename one of them.")
    nav = [dict(page=p['page'], notebook=p['notebook'], title_html=_inline_md(p['title'])) for p in pages]
    exp = exporter()
    for i, p in enumerate(pages):
        site = dict(name=get_config().title, pages=nav, current=nav[i], prev=nav[i - 1] if i else None,
                    next=nav[i + 1] if i + 1 < len(nav) else None, executed=p['executed'],
                    description_html=_inline_md(p['description']))
        node = nbformat.reads(json.dumps(nb2dict(p['nb'])), as_version=4)  # multi-line strings joined
        node.metadata['title'] = p['title'].replace('`', '')
        html, _ = exp.from_notebook_node(node, resources=dict(site=site, metadata=dict(name=Path(p['notebook']).stem)))
        # Quarto's heading ids are lower case, and so are the anchors of nbdev's doc links
        write_atomic(SITE/p['page'], _HEADING_ID.sub(lambda m: m[1] + m[2].lower() + '"', html))
    write_assets(exp)
    for stale in set(SITE.glob('*.html')) - {SITE/p['page'] for p in pages}: stale.unlink()
    manifest = [{k: v for k, v in p.items() if k != 'nb'} for p in pages]
    write_atomic(SITE/'site.json', json.dumps(dict(pages=manifest), indent=1))
    return pages

def notebooks(path:str=None) -> list:
    "The notebooks `nbdev_test` would run for `path`, in its order."
    return [f.absolute() for f in sorted(nbglob(path, as_path=True)) if _keep_file(f, '.notest')]

@call_parse
def main(path:str=None,  # a notebook or folder to execute (all notebooks if not given), as for `nbdev_test`
         flags:str='',  # space-separated test flags to run that are normally skipped, e.g. 'slow'
         n_workers:int=None,  # notebooks executed in parallel (as `nbdev_test`: all CPUs, at most 8)
         no_exec:bool=False,  # render from the executed copies in `_site/nbs/` without executing anything
         timing:bool=False):  # print each notebook's execution time
    "Execute the notebooks as `nbdev_test` does and render them, with their outputs, to the offline site in `_site/`."
    start = time.time()
    if not no_exec: execute_all(notebooks(path), flags, n_workers, timing)
    executed = time.time()
    every = notebooks()
    for stale in set((SITE/'nbs').rglob('*.ipynb')) - {executed_path(f) for f in every}: stale.unlink()
    missing = [f.name for f in every if not executed_path(f).exists()]
    if missing: print(f"Not executed yet, left out of the site (run without --path or --no_exec): {', '.join(missing)}")
    pages = render_site([f for f in every if executed_path(f).exists()])
    print(f"Site: {len(pages)} pages in {SITE.relative_to(ROOT)}/ (execution {executed - start:.0f} s, "
          f"rendering {time.time() - executed:.0f} s); open {SITE.relative_to(ROOT)}/index.html")
