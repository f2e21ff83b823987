"""fill-mask, next-sentence and encode on a tiny BERT that memorised a few documents.

The model is pretrained in the test with the real code (``prepare_pretraining_data`` then
``pretrain``), on four short documents repeated with different masks, so it must have learned
them: a memorised word comes first for its ``[MASK]``, a true next sentence is preferred.
"""
import json
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

DOCUMENTS = [
    ['the capital of france is paris .', 'paris lies on the seine river .',
     'many tourists visit the old museum .', 'the city has a famous iron tower .'],
    ['a crane is flying over the lake .', 'the bird eats small fish .',
     'its long legs walk through shallow water .', 'birds fly south in winter .'],
    ['a crane driver came to work .', 'he lifted steel beams all day .',
     'the building site was very loud .', 'workers wore yellow helmets .'],
    ['my dog likes to play ball .', 'she runs in the green park .',
     'after dinner she sleeps by the fire .', 'everyone loves the happy dog .'],
]
SPECIALS = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']


@pytest.fixture(scope='module')
def memorised_run(tmp_path_factory):
    """A bert_tiny_test pretrained for 800 steps on DOCUMENTS (~10 s on 2 cores).

    800 steps: after 400 the second fill-mask answer ('seine', 0.25-0.30) was still a coin toss
    against 'all' that rounding differences between kernels decided; after 800 both memorised
    answers score above 0.9.
    """
    from gluonbert.data import PretrainingDataConfig, prepare_pretraining_data
    from gluonbert.train.config import DeviceConfig, OptimizerConfig, PretrainConfig
    from gluonbert.train.pretrain import pretrain
    tmp = tmp_path_factory.mktemp('memorised')
    words = sorted({w for doc in DOCUMENTS for s in doc for w in s.split()})
    vocab = tmp / 'vocab.txt'
    vocab.write_text('\n'.join(SPECIALS + words) + '\n', encoding='utf-8')
    corpus = tmp / 'corpus.txt'
    corpus.write_text('\n\n'.join('\n'.join(doc) for doc in DOCUMENTS) + '\n', encoding='utf-8')
    # max_seq_length 16: a pair is one sentence and the next (or one from another document)
    prepare_pretraining_data([str(corpus)], str(vocab), str(tmp / 'shards'),
                             PretrainingDataConfig(max_seq_length=16, max_predictions_per_seq=3,
                                                   dupe_factor=60, short_seq_prob=0.0, seed=1),
                             progress=False)
    summary = pretrain(PretrainConfig(
        data=str(tmp / 'shards'), vocab=str(vocab), out_dir=str(tmp / 'run'),
        model='bert_tiny_test', max_seq_length=16, max_predictions_per_seq=3, batch_size=32,
        num_steps=800, log_interval=50, checkpoint_interval=400, dropout=0.0, progress=False,
        optimizer=OptimizerConfig(lr=5e-3, warmup_ratio=0.05), devices=DeviceConfig(cpus=1)))
    return summary['out_dir']


@pytest.fixture(scope='module')
def model(memorised_run):
    from gluonbert.serve.pipelines import PretrainedBERT
    return PretrainedBERT(memorised_run)


@pytest.mark.slow
def test_fill_mask_returns_memorised_word_first(model):
    from gluonbert.serve.pipelines import FillMask, pipeline
    fill = FillMask(model, top_k=3)
    [candidates] = fill('the capital of france is [MASK] .')
    assert [c['token'] for c in candidates][0] == 'paris'
    assert candidates[0]['sequence'] == 'the capital of france is paris .'
    scores = [c['score'] for c in candidates]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1 + 1e-6
    assert scores[0] > 10 / len(model.vocab)   # far above a uniform guess
    assert not {'[PAD]', '[CLS]', '[SEP]', '[MASK]'} & {c['token'] for c in candidates}
    two = pipeline('fill-mask', model, top_k=1)('the capital of france is [MASK] .',
                                                'paris lies on the [MASK] river .')
    assert [m[0]['token'] for m in two] == ['paris', 'seine']


@pytest.mark.slow
def test_fill_mask_needs_a_mask(model):
    from gluonbert.errors import InputError
    from gluonbert.serve.pipelines import FillMask
    with pytest.raises(InputError, match=r'no \[MASK\]'):
        FillMask(model)('the capital of france is paris .')


@pytest.mark.slow
def test_next_sentence_prefers_true_next(model):
    from gluonbert.serve.pipelines import NextSentence
    nsp = NextSentence(model)
    true_pairs = [(doc[i], doc[i + 1]) for doc in DOCUMENTS for i in range(3)]
    for first, second in true_pairs:
        probs = nsp(first, second)
        assert set(probs) == {'IsNext', 'NotNext'}
        assert abs(probs['IsNext'] + probs['NotNext'] - 1.0) < 1e-9
    # each sentence followed by its true next versus a sentence of another document
    wins = sum(nsp(first, second)['IsNext']
               > nsp(first, DOCUMENTS[(d + 1) % 4][(i + 2) % 4])['IsNext']
               for d, doc in enumerate(DOCUMENTS) for i, (first, second)
               in enumerate(zip(doc, doc[1:])))
    assert wins >= 10, f'the true next sentence was preferred in {wins} of 12 pairs'


@pytest.mark.slow
def test_encode_equals_bert_sequence_output(model, memorised_run):
    from gluonbert.model import BERTModel
    from gluonbert.serve.pipelines import encode
    got = encode(model, 'a crane is flying', 'the bird eats small fish .')
    assert got.tokens == ['[CLS]', 'a', 'crane', 'is', 'flying', '[SEP]', 'the', 'bird', 'eats',
                          'small', 'fish', '.', '[SEP]']
    assert got.segment_ids.tolist() == [0] * 6 + [1] * 7
    bert = BERTModel(model.config, use_pooler=True, use_decoder=False, use_classifier=False)
    bert.load_parameters(os.path.join(memorised_run, 'model.params'), ignore_extra=True)
    ids = mx.nd.array([model.vocab.to_indices(got.tokens)], dtype='int32')
    seq, pooled = bert(ids, mx.nd.array([got.segment_ids], dtype='int32'))
    assert got.sequence.shape == (13, model.config.units)
    np.testing.assert_allclose(got.sequence, seq[0].asnumpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.pooled, pooled[0].asnumpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.word_vector('crane'), seq[0, 2].asnumpy(), rtol=1e-5,
                               atol=1e-6)
    import gluonbert
    from_path = gluonbert.encode(memorised_run, 'a crane is flying')   # package-level API
    np.testing.assert_allclose(from_path.sequence, encode(model, 'a crane is flying').sequence,
                               rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_contextual_similarity_of_crane(model):
    from gluonbert.errors import InputError
    from gluonbert.serve.pipelines import contextual_similarity, encode
    same = contextual_similarity(model, 'crane', 'a crane is flying', 'a crane is flying')
    other = contextual_similarity(model, 'crane', 'a crane is flying', 'a crane driver came')
    assert same == pytest.approx(1.0, abs=1e-6)
    assert -1.0 <= other < 0.999
    with pytest.raises(InputError, match="word 'heron' occurs 0 time"):
        encode(model, 'a crane is flying').word_vector('heron')


def test_wordpieces_join_into_words():
    from gluonbert.serve.pipelines import _word_span, join_wordpieces
    tokens = ['[CLS]', 'play', '##ing', 'now', '##adays', '[SEP]']
    assert join_wordpieces(tokens[1:5]) == ['playing', 'nowadays']
    assert _word_span(tokens, 2) == (1, 3) and _word_span(tokens, 3) == (3, 5)


@pytest.mark.slow
def test_checkpoint_directory_loads(memorised_run):
    from gluonbert.model.pretrained import locate
    from gluonbert.serve.pipelines import FillMask
    step = os.path.join(memorised_run, 'checkpoints', 'step-00000400')
    found = locate(step)
    assert found.weights == os.path.join(step, 'model.params')
    assert found.directory == memorised_run and found.kind == 'pretraining'
    [candidates] = FillMask(step, top_k=1)('the capital of france is [MASK] .')
    assert candidates[0]['token'] == 'paris'


def test_missing_run_is_a_clear_error(tmp_path):
    from gluonbert.errors import WeightsNotFoundError
    from gluonbert.serve.pipelines import PretrainedBERT
    with pytest.raises(WeightsNotFoundError, match='neither model.params nor a valid'):
        PretrainedBERT(str(tmp_path))
    with pytest.raises(WeightsNotFoundError, match='no such directory; expected a HuggingFace'):
        PretrainedBERT(str(tmp_path / 'nowhere'))


def _cli(*args):
    return subprocess.run([sys.executable, '-m', 'gluonbert.cli', *args], capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_cli_fill_mask_and_next_sentence(memorised_run):
    done = _cli('fill-mask', '--model-dir', memorised_run, '--top-k', '2',
                'the capital of france is [MASK] .', '--next', 'paris lies on the seine river .')
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith('[MASK] 1'))
    assert lines[first + 1].split()[:2] == ['1.', 'paris']
    nsp = next(line for line in lines if line.startswith('next sentence'))
    is_next = float(nsp.split('IsNext')[1].split()[0])
    assert is_next > 0.5
    bad = _cli('fill-mask', '--model-dir', memorised_run, 'no mask here')
    assert bad.returncode == 2 and 'no [MASK]' in bad.stderr and 'Traceback' not in bad.stderr


@pytest.mark.slow
def test_cli_encode_writes_vectors(memorised_run, tmp_path):
    out = tmp_path / 'crane.npz'
    done = _cli('encode', '--model-dir', memorised_run, 'a crane is flying', '--output',
                str(out), '--json')
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report['tokens'] == ['[CLS]', 'a', 'crane', 'is', 'flying', '[SEP]']
    saved = np.load(out)
    assert saved['sequence'].shape == (6, 32) and saved['pooled'].shape == (32,)
    assert list(saved['tokens']) == report['tokens']


@pytest.mark.slow
def test_demo_ends_with_fill_mask_and_crane_similarity(memorised_run, capsys):
    """The demo's last step (gluonbert.cli.demo.show_learned) on the memorised model."""
    from gluonbert.cli.demo import AMBIGUOUS, show_learned
    learned = show_learned(memorised_run, question='the capital of france is [MASK] .')
    printed = capsys.readouterr().out
    assert learned['answers'][0][0] == 'paris' and len(learned['answers']) == 3
    assert 'fill-mask: "the capital of france is [MASK] ." -> paris (' in printed
    assert learned['word'] == AMBIGUOUS[0] == 'crane'
    assert -1.0 <= learned['similarity'] < 0.999
    assert f'cosine {learned["similarity"]:.4f}' in printed
