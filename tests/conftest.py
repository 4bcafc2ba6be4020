"Shared pytest settings: the `slow` marker (skipped unless --runslow or CLVQ_SLOW=1), a summary of the seconds tests record, and captum's IG at a hidden state."
import os, pytest, torch

def pytest_addoption(parser):
    parser.addoption('--runslow', action='store_true', help='also run tests marked slow (or set CLVQ_SLOW=1)')

def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: takes minutes (whole runs of the packaged models); run with --runslow or CLVQ_SLOW=1')

def pytest_collection_modifyitems(config, items):
    if config.getoption('--runslow') or os.environ.get('CLVQ_SLOW') == '1': return
    skip = pytest.mark.skip(reason='slow: run with --runslow or CLVQ_SLOW=1')
    for item in items:
        if 'slow' in item.keywords: item.add_marker(skip)

def pytest_terminal_summary(terminalreporter):
    "Print what tests recorded with `record_property('seconds', …)` (or 'stage seconds'), one line per test."
    lines = [f"{r.nodeid.split('::')[-1]}: {', '.join(f'{k} {v}' for k, v in r.user_properties)}"
             for r in terminalreporter.stats.get('passed', []) if r.when == 'call' and r.user_properties]
    if lines: terminalreporter.write_sep('-', 'recorded times'); [terminalreporter.write_line(l) for l in lines]

@pytest.fixture
def captum_ig():
    "A function: captum's LayerIntegratedGradients at hidden state `layer`, token attributions (B, T) summed over the hidden dimension."
    captum_attr = pytest.importorskip('captum.attr')
    from clvq_nb.faithfulness import hidden_site
    def attribute(model, inputs:dict, baseline_ids, layer:int, target, steps:int):
        # captum replaces the output of an identity "tap" through which the hidden state passes where the model makes it: captum
        # cannot hook a layer's input directly when other arguments are None (BERT), nor a tuple output holding None (DeBERTa)
        site, tap = hidden_site(model, layer), torch.nn.Identity()
        hook = (site.module.register_forward_pre_hook(lambda m, a: (tap(a[0]), *a[1:])) if site.side == 'input' else
                site.module.register_forward_hook(lambda m, a, o: tap(o) if torch.is_tensor(o) else (tap(o[0]), *o[1:])))
        try:
            lig = captum_attr.LayerIntegratedGradients(lambda i, m: model(input_ids=i, attention_mask=m).logits, tap)
            ref = lig.attribute(inputs['input_ids'], baselines=baseline_ids, additional_forward_args=(inputs['attention_mask'],), target=target,
                                n_steps=steps, method='riemann_middle')
        finally: hook.remove()
        return ref.sum(-1)
    return attribute
