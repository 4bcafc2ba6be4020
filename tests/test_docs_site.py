"""The offline docs site in a real browser (Playwright driving Debian's chromium): every notebook's page loads from a
local server with no console error and no failed or outside request, its plotly figures drawn, its images loaded
and its equations typeset, and every link inside the site resolves. A screenshot of each page goes to
tests/artifacts/. Uses the site tools/test.sh has just built in `_site/`, or builds it (`python tools/docs.py`,
which executes every notebook) when there is none."""
import functools, http.server, json, os, shutil, subprocess, sys, threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.error import HTTPError
from urllib.parse import unquote, urlsplit
from urllib.request import urlopen

import pytest
from nbdev.doclinks import nbglob
from nbdev.test import _keep_file
try: from playwright.sync_api import TimeoutError as PlaywrightTimeout, sync_playwright
except ImportError: sync_playwright = None

ROOT = Path(__file__).resolve().parent.parent
SITE, ARTIFACTS = ROOT/'_site', ROOT/'tests'/'artifacts'
CHROMIUM = os.environ.get('CLVQ_CHROMIUM') or shutil.which('chromium') or shutil.which('chromium-browser')
FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync']
NOTEBOOKS = sorted(p.relative_to(ROOT).as_posix() for p in nbglob(ROOT/"nbs", as_path=True) if _keep_file(p, ".notest"))

def _require(found, what:str):
    "Skip when `what` is missing on a developer's machine; fail in CI, where .ci/run installs it."
    if found: return
    if os.environ.get('CI'): pytest.fail(f"{what} is missing: .ci/run should have installed it")
    pytest.skip(f"{what} is missing (`apt-get install chromium`, `pip install -e .[dev]`)")

@pytest.fixture(scope='module')
def pages() -> dict:
    "The site's pages by notebook, from `_site/site.json` (building the site first when there is none)."
    if not (SITE/'site.json').exists():
        subprocess.run([sys.executable, str(ROOT/'tools'/'docs.py')], cwd=ROOT, check=True)
    return {p['notebook']: p for p in json.loads((SITE/'site.json').read_text())['pages']}

class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args): pass

class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    def handle_error(self, request, client_address):  # a page left before a file finished sending is no error
        if not isinstance(sys.exc_info()[1], ConnectionError): super().handle_error(request, client_address)

@pytest.fixture(scope='module')
def server(pages):
    "The site served on 127.0.0.1 from a thread; yields its base URL."
    httpd = _Server(('127.0.0.1', 0), functools.partial(_Quiet, directory=str(SITE)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f'http://127.0.0.1:{httpd.server_port}/'
    httpd.shutdown(); httpd.server_close()

@pytest.fixture(scope='module')
def browser():
    _require(CHROMIUM, 'chromium')
    _require(sync_playwright, 'playwright')
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()

@pytest.fixture(scope='module')
def context(browser):
    "One browser context for all pages, so plotly.js and MathJax come from its cache after the first (no routing)."
    ctx = browser.new_context(viewport={'width': 1280, 'height': 900})
    yield ctx
    ctx.close()

@pytest.fixture
def page(context, server):
    "A fresh page that records console errors, page errors, failed requests and any request off the local server."
    page, page.problems = context.new_page(), []
    page.on('request', lambda r: r.url.startswith((server, 'data:')) or page.problems.append(f'outside: {r.url}'))
    page.on('console', lambda m: m.type == 'error' and page.problems.append(f'console error: {m.text}'))
    page.on('pageerror', lambda e: page.problems.append(f'page error: {e}'))
    page.on('requestfailed', lambda r: page.problems.append(f'failed: {r.url} {r.failure}'))
    page.on('response', lambda r: r.status >= 400 and page.problems.append(f'HTTP {r.status}: {r.url}'))
    yield page
    page.close()

class _Ids(HTMLParser):
    def __init__(self, text):
        super().__init__(); self.ids = set(); self.feed(text)
    def handle_starttag(self, tag, attrs): self.ids.update(v for k, v in attrs if k in ('id', 'name'))

@functools.cache
def _ids(path:Path) -> frozenset: return frozenset(_Ids(path.read_text(encoding='utf-8')).ids)

@functools.cache
def _served(url:str) -> bool:
    try:
        with urlopen(url) as r: return r.status == 200
    except HTTPError: return False

def _resolves(href:str) -> bool:
    "The server answers `href`, and its fragment, if any, is an id on the page it names (as is, or decoded)."
    url = urlsplit(href)
    if not _served(url._replace(fragment='').geturl()): return False
    return not url.fragment or bool({url.fragment, unquote(url.fragment)} & _ids(SITE/unquote(url.path.lstrip('/'))))

def test_every_notebook_has_a_page(pages):
    test_nbs = set(NOTEBOOKS)
    assert set(pages) == test_nbs, f"site.json lists {sorted(pages)}, nbs/ {sorted(test_nbs)}: run tools/docs.py"
    assert next(iter(pages.values()))['page'] == 'index.html'

DRAWN = """() => [...document.querySelectorAll('.plotly-graph-div')].every(d => d.querySelector('svg.main-svg'))
  && [...document.images].every(i => i.complete)"""
TYPESET = "() => new Promise(done => MathJax.Hub.Register.StartupHook('End', done))"  # MathJax 2 replays past signals
FIGURES = """ds => ds.map(d => d.classList.contains('js-plotly-plot') && !!d.querySelector('svg.main-svg')
  && d._fullData.length === d.data.length && d.getBoundingClientRect().height > 0)"""

@pytest.mark.parametrize('notebook', NOTEBOOKS)
def test_page(notebook, pages, server, page):
    "The page loads cleanly with its title, sidebar, figures, images and equations; its links inside the site resolve."
    entry = pages.get(notebook)
    assert entry, f"no page for {notebook}: rebuild the site with `python tools/docs.py`"
    page.goto(server + entry['page'], wait_until='load')
    page.evaluate(TYPESET)
    try: page.wait_for_function(DRAWN, timeout=30_000)
    except PlaywrightTimeout: pass  # the checks below say what did not draw or load
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS/f"{Path(notebook).stem}.png", full_page=True)
    assert page.problems == []
    assert page.locator('h1.site-title').inner_text() == entry['title'].replace('`', '')
    nav = page.eval_on_selector_all('.site-nav li a', 'as => as.map(a => [a.getAttribute("href"), a.ariaCurrent])')
    assert nav == [[p['page'], 'page' if p is entry else None] for p in pages.values()]
    figures = page.eval_on_selector_all('.plotly-graph-div', FIGURES)
    assert figures == [True] * entry['figures'], f"{entry['figures']} plotly figures expected, drawn: {figures}"
    widths = page.eval_on_selector_all('img', 'is => is.map(i => i.naturalWidth)')
    assert len(widths) >= entry['images'] and all(widths), f"{entry['images']} images expected, widths {widths}"
    assert page.evaluate('MathJax.Hub.getAllJax().length') == entry['equations']
    assert page.locator('.MathJax_Error, merror').count() == 0
    links = {h for h in page.eval_on_selector_all('a[href]', 'as => as.map(a => a.href)') if h.startswith(server)}
    assert [h for h in sorted(links) if not _resolves(h)] == []

def test_next_links_walk_every_page_in_order(pages, server, page):
    page.goto(server + 'index.html', wait_until='domcontentloaded')
    seen = [page.locator('h1.site-title').inner_text()]
    while page.locator('.site-footer a.next').count():
        page.locator('.site-footer a.next').click()
        page.wait_for_load_state('domcontentloaded')
        seen.append(page.locator('h1.site-title').inner_text())
    assert seen == [p['title'].replace('`', '') for p in pages.values()]
