"""The sample data sets shipped in data/ read cleanly and have the documented shape."""
import collections
import os

from gluonbert.data.corpus import iter_documents
from gluonbert.data.glue import load_mrpc, read_mrpc_tsv

DATA = os.path.join(os.path.dirname(__file__), '..', '..', 'data')


def test_paraphrase_sample():
    counts = {}
    for name in ('train', 'dev'):
        records = read_mrpc_tsv(os.path.join(DATA, 'paraphrase_sample', f'{name}.tsv'))
        counts[name] = collections.Counter(r.label for r in records)
        assert all(r.text_a != r.text_b for r in records)
    assert counts == {'train': {'1': 600, '0': 300}, 'dev': {'1': 160, '0': 80}}
    data = load_mrpc(os.path.join(DATA, 'paraphrase_sample'))
    assert data.split.startswith('GLUE train.tsv/dev.tsv') and data.test is None
    pairs = {(r.text_a, r.text_b) for r in data.train}
    assert not pairs & {(r.text_a, r.text_b) for r in data.dev}


def test_pretrain_sample():
    docs = list(iter_documents(os.path.join(DATA, 'pretrain_sample.txt')))
    assert len(docs) == 30
    assert 550 <= sum(len(d) for d in docs) <= 650
    assert min(len(d) for d in docs) >= 10
