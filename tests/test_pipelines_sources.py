"""``gluonbert encode`` and ``fill-mask`` (and PretrainedBERT) on every kind of directory: a
HuggingFace BertModel and BertForPreTraining, a ``gluonbert convert`` output and a fine-tuned
run. Vectors of real HF weights equal HF's own; a model without the masked-LM head is refused
with that reason (exit 2, no traceback). Subprocesses: the command is the point."""
import json
import subprocess
import sys

import numpy as np
import pytest

from .model.test_pretrained import VOCAB, hf_dir


def cli(*args):
    return subprocess.run([sys.executable, '-m', 'gluonbert.cli', *args], capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_encode_hf_bertmodel_and_its_conversion(tmp_path):
    directory, hf = hf_dir(tmp_path, 'BertModel', 'hf_base')
    done = cli('encode', '--model-dir', directory, '--json', 'a crane is flying', 'bird')
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout)
    assert got['tokens'] == ['[CLS]', 'a', 'crane', 'is', 'flying', '[SEP]', 'bird', '[SEP]']
    assert got['segment_ids'] == [0] * 6 + [1] * 2
    import torch
    with torch.no_grad():     # with the segment ids encode used
        out = hf(torch.tensor([[VOCAB.index(t) for t in got['tokens']]]),
                 token_type_ids=torch.tensor([got['segment_ids']]))
    np.testing.assert_allclose(got['sequence'], out.last_hidden_state[0].numpy(), rtol=1e-4,
                               atol=2e-5)
    np.testing.assert_allclose(got['pooled'], out.pooler_output[0].numpy(), rtol=1e-4,
                               atol=2e-5)
    refused = cli('fill-mask', '--model-dir', directory, 'a [MASK] is flying')
    assert refused.returncode == 2 and 'Traceback' not in refused.stderr
    assert 'has no masked-LM head' in refused.stderr and 'fill-mask needs' in refused.stderr
    converted = tmp_path / 'converted'
    assert cli('convert', '--from-hf', directory, '--out-dir', str(converted)).returncode == 0
    again = cli('encode', '--model-dir', str(converted), '--json', 'a crane is flying', 'bird')
    assert again.returncode == 0, again.stderr[-3000:]
    np.testing.assert_allclose(json.loads(again.stdout)['sequence'], got['sequence'],
                               rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_fill_mask_on_hf_bertforpretraining(tmp_path):
    directory, hf = hf_dir(tmp_path, 'BertForPreTraining', 'hf_pre')
    done = cli('fill-mask', '--model-dir', directory, '--top-k', '3', '--json',
               'a [MASK] is flying', '--next', 'the bird')
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    import torch
    tokens = ['[CLS]', 'a', '[MASK]', 'is', 'flying', '[SEP]', 'the', 'bird', '[SEP]']
    with torch.no_grad():
        out = hf(torch.tensor([[VOCAB.index(t) for t in tokens]]),
                 token_type_ids=torch.tensor([[0] * 6 + [1] * 3]))
    logits = out.prediction_logits[0, 2].numpy().astype(np.float64)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    probs[[VOCAB.index(t) for t in ('[PAD]', '[CLS]', '[SEP]', '[MASK]')]] = -1
    best = np.argsort(-probs)[:3]
    [candidates] = result['masks']
    assert [c['token'] for c in candidates] == [VOCAB[i] for i in best]
    np.testing.assert_allclose([c['score'] for c in candidates], probs[best], rtol=1e-4)
    nsp = out.seq_relationship_logits[0].numpy().astype(np.float64)
    is_next = 1 / (1 + np.exp(nsp[1] - nsp[0]))
    assert result['next_sentence']['IsNext'] == pytest.approx(is_next, rel=1e-4)


def test_pretrainedbert_on_a_finetuned_run(tmp_path):
    """Vectors of a fine-tuned run's encoder; fill-mask and next-sentence say what is
    missing."""
    from gluonbert.errors import ConfigError
    from gluonbert.serve.pipelines import FillMask, NextSentence, PretrainedBERT, encode

    from .train.test_predict_errors import write_model_dir
    run = write_model_dir(tmp_path / 'tuned')
    model = PretrainedBERT(run)
    assert model.kind == 'finetuned' and model.heads == ('pooler',)
    vectors = encode(model, 'the cat sat', 'on the mat')
    assert vectors.sequence.shape[1] == model.config.units and vectors.pooled is not None
    with pytest.raises(ConfigError, match=r'\(finetuned\) has no masked-LM head .* which '
                                          r'fill-mask needs'):
        FillMask(model)('the [MASK] sat')
    with pytest.raises(ConfigError, match='has no next-sentence head'):
        NextSentence(model)('the cat sat', 'on the mat')
    done = cli('fill-mask', '--model-dir', run, 'the [MASK] sat')
    assert done.returncode == 2 and 'has no masked-LM head' in done.stderr
    assert 'Traceback' not in done.stderr
