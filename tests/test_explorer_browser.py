"JupyterLab in a real browser: open the explorer notebook, run it, move the temperature slider with the keyboard, and the perplexity shown changes."
import json, os, re, secrets, shutil, socket, subprocess, sys, time, urllib.request
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT/'nbs'/'15_explorer.ipynb'
ARTIFACTS = ROOT/'tests'/'artifacts'  # screenshots (gitignored)
CHROMIUM = os.environ.get('CLVQ_CHROMIUM', '/usr/bin/chromium')
FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync']  # headless is Playwright's own switch
RUN_TIMEOUT_S = 900  # the notebook's fast path trains two small runs; a cold CI cache also fetches MiniLM and the corpus

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f'no chromium at {CHROMIUM}: install Debian\'s chromium (apt-get install chromium) or set CLVQ_CHROMIUM')

def fast_path_copy(folder:Path) -> Path:
    "The notebook without its `#| slow` cells (they need a finished `clvq run`), with a kernelspec so Lab asks nothing."
    nb = json.loads(NOTEBOOK.read_text())
    nb['cells'] = [c for c in nb['cells'] if not (c['cell_type'] == 'code' and ''.join(c['source']).lstrip().startswith('#| slow'))]
    nb['metadata']['kernelspec'] = dict(name='python3', display_name='Python 3', language='python')
    path = folder/NOTEBOOK.name; path.write_text(json.dumps(nb)); return path

def free_port() -> int:
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

@pytest.fixture(scope='module')
def lab(tmp_path_factory):
    "A JupyterLab server on a free port, serving a copy of the notebook; yields its base URL and token."
    root, port, token = tmp_path_factory.mktemp('lab'), free_port(), secrets.token_hex(16)
    (root/'nbs').mkdir(); fast_path_copy(root/'nbs')
    news = root/'settings'/'@jupyterlab'/'apputils-extension'/'notification.jupyterlab-settings'
    news.parent.mkdir(parents=True); news.write_text(json.dumps(dict(fetchNews='false', checkForUpdates=False)))  # no pop-up over the widget
    env = {**os.environ, 'PATH': f'{Path(sys.executable).parent}{os.pathsep}{os.environ["PATH"]}', 'JUPYTER_RUNTIME_DIR': str(root/'runtime'),
           'TOKENIZERS_PARALLELISM': 'false', 'OMP_NUM_THREADS': '2', 'PYTHONUNBUFFERED': '1'}
    cmd = [sys.executable, '-m', 'jupyterlab', '--no-browser', '--allow-root', '--ip=127.0.0.1', f'--port={port}',
           f'--ServerApp.token={token}', f'--notebook-dir={root/"nbs"}', '--LabApp.expose_app_in_browser=True',
           f'--LabApp.user_settings_dir={root/"settings"}', f'--LabApp.workspaces_dir={root/"workspaces"}']
    log = open(root/'lab.log', 'w')
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    url, t = f'http://127.0.0.1:{port}', time.time()
    try:
        while True:
            try: urllib.request.urlopen(f'{url}/api/status?token={token}', timeout=2); break
            except OSError:
                if proc.poll() is not None or time.time() - t > 60: raise RuntimeError(f'JupyterLab did not start:\n{(root/"lab.log").read_text()[-3000:]}')
                time.sleep(0.3)
        yield url, token
    finally:
        proc.terminate()
        try: proc.wait(30)
        except subprocess.TimeoutExpired: proc.kill(); proc.wait()
        log.close()

def perplexity(text:str) -> float:
    m = re.search(r'perplexity ([\d.]+)', text); assert m, text
    return float(m.group(1))

def test_temperature_slider_changes_perplexity(lab):
    from playwright.sync_api import sync_playwright
    url, token = lab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport=dict(width=1400, height=1000))
        console = []; page.on('console', lambda m: console.append(f'{m.type}: {m.text}'))
        try:
            page.goto(f'{url}/lab/tree/{NOTEBOOK.name}?token={token}')
            page.wait_for_selector('.jp-NotebookPanel .jp-Cell', timeout=120_000)
            page.wait_for_function("() => window.jupyterapp?.shell.currentWidget?.sessionContext?.session?.kernel?.status === 'idle'", timeout=120_000, polling=500)
            ok = page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
            page.wait_for_function("() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle'", timeout=RUN_TIMEOUT_S * 1000, polling=1000)
            assert ok, 'a cell of the notebook failed; see tests/artifacts/explorer-failure.png'
            readout, slider = page.locator('.clvq-readout'), page.locator('.clvq-temperature .noUi-handle')
            readout.scroll_into_view_if_needed(); page.wait_for_function("() => /perplexity/.test(document.querySelector('.clvq-readout').innerText)", timeout=60_000)
            bars = "() => document.querySelectorAll('.clvq-explorer .js-plotly-plot .barlayer .point').length"
            page.wait_for_function(f"() => ({bars})() > 0", timeout=60_000)  # the plotly figures of the widget have drawn their bars
            page.screenshot(path=ARTIFACTS/'explorer-before.png'); page.locator('.clvq-explorer').screenshot(path=ARTIFACTS/'explorer-widget-before.png')
            before = readout.inner_text()
            slider.focus()
            for _ in range(10): page.keyboard.press('ArrowLeft')  # ten steps of 0.1 in log10 T: T falls tenfold
            page.wait_for_function("b => document.querySelector('.clvq-readout').innerText !== b", arg=before, timeout=60_000)
            after, t = readout.inner_text(), time.time()
            while time.time() - t < 30:  # let the queued updates settle
                page.wait_for_timeout(1000)
                if (now := readout.inner_text()) == after: break
                after = now
            page.wait_for_function(f"() => ({bars})() > 0", timeout=60_000)
            page.screenshot(path=ARTIFACTS/'explorer-after.png'); page.locator('.clvq-explorer').screenshot(path=ARTIFACTS/'explorer-widget-after.png')
            assert re.search(r'T = ([\d.e+-]+)', after).group(1) != re.search(r'T = ([\d.e+-]+)', before).group(1), (before, after)
            assert perplexity(after) != perplexity(before), (before, after)
        except BaseException:
            page.screenshot(path=ARTIFACTS/'explorer-failure.png', full_page=True); raise
        finally:
            (ARTIFACTS/'explorer-console.log').write_text('\n'.join(console)); browser.close()
