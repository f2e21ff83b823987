"""Coming from GluonNLP 0.10 and d2l.ai (docs/migrating.md): their code runs on gluonbert with
the changes that page lists, and gives the numbers the original gives.

* GluonNLP's fine-tuning tutorial, transcribed cell by cell (its model, data and training
  lines: ``get_model``, ``BERTClassifier``, ``BERTTokenizer``, ``TSVDataset``,
  ``FixedBucketSampler``, a hand-written ``Trainer`` loop with ``clip_grad_global_norm``), runs
  once with ``import gluonnlp as nlp`` and once with ``import gluonbert as nlp``: the losses of
  every batch agree, and each run's checkpoint loads into the other library's classifier.
* d2l.ai's BERT pretraining loop, as docs/migrating.md writes it (executed from the page),
  trains a gluonbert model on gluonbert's batches.
* ``import gluonbert as nlp`` reaches the model, data and utils names whichever is touched
  first.

Tiny configuration, synthetic data, no network.
"""
import os
import re
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPECIALS = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']
WORDS = ('the a cat dog sat on mat is it not no this that and said he she was in of to red '
         'blue green day night fast slow ran jumped slept big small old new').split()

# GluonNLP's "Fine-tuning Sentence Pair Classification with BERT" (0.10), cell by cell, with
# its sizes moved into the names of the first cell (a tiny model, 2 epochs, no dropout so that
# both libraries draw nothing at random during training). {import_nlp} and {import_data} are
# the only lines that differ between the two runs.
TUTORIAL = [
    '''
import io
import random
import numpy as np
import mxnet as mx
{import_nlp}
{import_data}

np.random.seed(100)
random.seed(100)
mx.random.seed(10000)
ctx = mx.cpu()
''', '''
bert_base, vocabulary = nlp.model.get_model('bert_12_768_12',
                                             dataset_name=None, vocab=VOCAB,
                                             pretrained=False, ctx=ctx, use_pooler=True,
                                             use_decoder=False, use_classifier=False,
                                             hparam_allow_override=True, **HPARAMS)
bert_base.load_parameters(START, ctx=ctx)
''', '''
bert_classifier = nlp.model.BERTClassifier(bert_base, num_classes=2, dropout=DROPOUT)
# only need to initialize the classifier layer.
bert_classifier.classifier.initialize(init=mx.init.Normal(0.02), ctx=ctx)
bert_classifier.hybridize(static_alloc=True)

# softmax cross entropy loss for classification
loss_function = mx.gluon.loss.SoftmaxCELoss()
loss_function.hybridize(static_alloc=True)

metric = mx.metric.Accuracy()
''', '''
# Skip the first line, which is the schema
num_discard_samples = 1
# Split fields by tabs
field_separator = nlp.data.Splitter('\\t')
# Fields to select from the file
field_indices = [3, 4, 0]
data_train_raw = nlp.data.TSVDataset(filename=TSV,
                                 field_separator=field_separator,
                                 num_discard_samples=num_discard_samples,
                                 field_indices=field_indices)

# Use the vocabulary from pre-trained model for tokenization
bert_tokenizer = nlp.data.BERTTokenizer(vocabulary, lower=True)

# The maximum length of an input sequence
max_len = MAX_LEN

# The labels for the two classes [(0 = not similar) or  (1 = similar)]
all_labels = ["0", "1"]

pair = True
transform = data.transform.BERTDatasetTransform(bert_tokenizer, max_len,
                                                class_labels=all_labels,
                                                has_label=True,
                                                pad=True,
                                                pair=pair)
data_train = data_train_raw.transform(transform)
''', '''
# The hyperparameters
batch_size = BATCH_SIZE
lr = LR

# The FixedBucketSampler and the DataLoader for making the mini-batches
train_sampler = nlp.data.FixedBucketSampler(lengths=[int(item[2]) for item in data_train],
                                            batch_size=batch_size,
                                            shuffle=True)
bert_dataloader = mx.gluon.data.DataLoader(data_train, batch_sampler=train_sampler)

trainer = mx.gluon.Trainer(bert_classifier.collect_params(), 'adam',
                           {'learning_rate': lr, 'epsilon': 1e-9})

# Collect all differentiable parameters
params = [p for p in bert_classifier.collect_params().values() if p.grad_req != 'null']
grad_clip = 1

log_interval = 4
num_epochs = NUM_EPOCHS
for epoch_id in range(num_epochs):
    metric.reset()
    step_loss = 0
    for batch_id, (token_ids, segment_ids, valid_length, label) in enumerate(bert_dataloader):
        with mx.autograd.record():

            # Load the data to the GPU
            token_ids = token_ids.as_in_context(ctx)
            valid_length = valid_length.as_in_context(ctx)
            segment_ids = segment_ids.as_in_context(ctx)
            label = label.as_in_context(ctx)

            # Forward computation
            out = bert_classifier(token_ids, segment_ids, valid_length.astype('float32'))
            ls = loss_function(out, label).mean()

        # And backwards computation
        ls.backward()

        # Gradient clipping
        trainer.allreduce_grads()
        nlp.utils.clip_grad_global_norm(params, 1)
        trainer.update(1)

        step_loss += ls.asscalar()
        LOSSES.append(ls.asscalar())
        metric.update([label], [out])
''']


def _write_tsv(path, rows=48, seed=0):
    """MRPC's dev.tsv layout; label 1 when both sentences start with the same word."""
    rng = np.random.RandomState(seed)
    lines = ['Quality\t#1 ID\t#2 ID\t#1 String\t#2 String']
    for index in range(rows):
        a = ' '.join(rng.choice(WORDS, rng.randint(3, 9)))
        b = ' '.join(rng.choice(WORDS, rng.randint(3, 9)))
        label = int(a.split()[0] == b.split()[0])
        lines.append(f'{label}\t{2 * index}\t{2 * index + 1}\t{a}\t{b}')
    path.write_text('\n'.join(lines) + '\n', encoding='utf-8')
    return str(path)


@pytest.fixture(scope='module')
def tutorial_inputs(tmp_path_factory):
    """Vocabulary, TSV and starting weights (GluonNLP names) shared by both runs."""
    from gluonbert.data import load_vocab
    from gluonbert.model import BERTModel, get_config
    tmp = tmp_path_factory.mktemp('tutorial')
    (tmp / 'vocab.txt').write_text('\n'.join(SPECIALS + WORDS) + '\n', encoding='utf-8')
    vocab = load_vocab(str(tmp / 'vocab.txt'))
    hparams = dict(num_layers=2, units=32, hidden_size=64, num_heads=4, max_length=64,
                   embed_size=32, dropout=0.0)
    config = get_config('bert_tiny_test', vocab_size=len(vocab), units=32, hidden_size=64,
                        num_layers=2, num_heads=4, max_length=64, dropout=0.0)
    mx.random.seed(3)
    start = BERTModel(config, use_decoder=False, use_classifier=False)
    start.initialize()
    start.save_parameters(str(tmp / 'start.params'))
    return {'VOCAB': vocab, 'HPARAMS': hparams, 'START': str(tmp / 'start.params'),
            'TSV': _write_tsv(tmp / 'dev.tsv'), 'DROPOUT': 0.0, 'MAX_LEN': 32,
            'BATCH_SIZE': 8, 'LR': 1e-3, 'NUM_EPOCHS': 2}


def run_tutorial(library, inputs, classifier_weight):
    """Runs the transcribed tutorial with ``import <library> as nlp``; returns its namespace.

    Both runs start from the same weights: the encoder's file (a cell of the script) and,
    between the cells, the classifier's output layer (gluonbert initialises it with its
    truncated normal whatever ``init`` says, GluonNLP with the ``Normal(0.02)`` given).
    """
    namespace = dict(inputs, LOSSES=[])
    imports = {'import_nlp': f'import {library} as nlp',
               # the tutorial's scripts/bert package; gluonbert's follows its contract
               'import_data': 'from gluonbert import data'}
    for index, cell in enumerate(TUTORIAL):
        for name, line in imports.items():
            cell = cell.replace('{' + name + '}', line)
        exec(compile(cell, f'<tutorial cell {index} ({library})>', 'exec'), namespace)
        if index == 2:
            dense = namespace['bert_classifier'].classifier[-1]
            dense.weight.set_data(mx.nd.array(classifier_weight))
            dense.bias.set_data(mx.nd.zeros(2))
    return namespace


def test_tutorial_runs_with_only_the_import_changed(tutorial_inputs):
    """Same losses batch by batch, and checkpoints that load both ways with equal scores."""
    import gluonnlp
    weight = np.random.RandomState(5).normal(0, 0.02, (2, 32))
    ours = run_tutorial('gluonbert', tutorial_inputs, weight)
    theirs = run_tutorial('gluonnlp', tutorial_inputs, weight)
    assert isinstance(ours['bert_classifier'].bert, __import__('gluonbert').model.BERTModel)
    assert isinstance(theirs['bert_classifier'].bert, gluonnlp.model.BERTModel)
    assert len(ours['LOSSES']) == len(theirs['LOSSES']) >= 12     # 2 epochs of 48 / 8
    np.testing.assert_allclose(ours['LOSSES'], theirs['LOSSES'], rtol=2e-4, atol=2e-5)
    assert np.mean(ours['LOSSES'][-4:]) < np.mean(ours['LOSSES'][:4])   # it trains
    # each library's fine-tuned classifier loads into the other's
    ids, segments, valid, _ = next(iter(ours['bert_dataloader']))
    for source, target in ((ours, theirs), (theirs, ours)):
        path = os.path.join(os.path.dirname(tutorial_inputs['START']), 'tuned.params')
        source['bert_classifier'].save_parameters(path)
        target['bert_classifier'].load_parameters(path)
        np.testing.assert_allclose(
            target['bert_classifier'](ids, segments, valid.astype('float32')).asnumpy(),
            source['bert_classifier'](ids, segments, valid.astype('float32')).asnumpy(),
            rtol=1e-4, atol=4e-6)


@pytest.mark.parametrize('first', [
    'model.get_model', 'BERTClassifier',
    # a fresh interpreter each (~2.5 s): the others in the full suite only
    *(pytest.param(name, marks=pytest.mark.slow) for name in
      ('model.BERTClassifier', 'data.BERTTokenizer', 'utils.clip_grad_global_norm'))])
def test_names_reachable_whichever_is_touched_first(first):
    """A fresh interpreter per order: ``import gluonbert as nlp`` then the names of a
    GluonNLP script, starting with ``first``."""
    names = [first, 'model.get_model', 'model.BERTClassifier', 'model.BERTModel',
             'model.BERTEncoder', 'data.BERTDatasetTransform', 'data.BERTSentenceTransform',
             'data.FixedBucketSampler', 'data.batchify.Pad', 'data.TSVDataset',
             'data.Splitter', 'data.transform.BERTDatasetTransform',
             'utils.clip_grad_global_norm', 'utils.check_version',
             'get_model', 'load_pretrained', 'model.load_pretrained']
    code = ('import gluonbert as nlp\n'
            + ''.join(f'assert callable(nlp.{name}), {name!r}\n' for name in names)
            + 'import gluonnlp\n'
            'assert nlp.data.BERTTokenizer is gluonnlp.data.BERTTokenizer\n'
            'assert nlp.model.get_model is nlp.get_model\n'
            'assert nlp.model.BERTClassifier is nlp.BERTClassifier\n'
            'nlp.utils.check_version("0.8.1")\n')
    done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_unknown_names_are_errors():
    import gluonbert
    with pytest.raises(AttributeError, match='no attribute'):
        gluonbert.data.NoSuchThing
    with pytest.raises(AttributeError, match='GluonNLP helpers here'):
        gluonbert.utils.no_such_helper


def test_get_model_takes_gluonnlp_hyperparameters(tutorial_inputs):
    import gluonbert
    from gluonbert.errors import ConfigError
    net, _ = gluonbert.model.get_model('bert_12_768_12', vocab=tutorial_inputs['VOCAB'],
                                       pretrained=False, use_decoder=False,
                                       use_classifier=False, word_embed=None,
                                       **tutorial_inputs['HPARAMS'])
    assert net.config.units == 32 and net.config.num_layers == 2
    hparams = dict(tutorial_inputs['HPARAMS'], embed_size=16)
    with pytest.raises(ConfigError, match='embed_size=16 but units=32'):
        gluonbert.model.get_model('bert_12_768_12', vocab=tutorial_inputs['VOCAB'],
                                  pretrained=False, **hparams)


def test_d2l_special_tokens_map_to_bert_ones(tutorial_inputs):
    """d2l writes ['<cls>'] + tokens + ['<sep>'] and looks them up: the BERT specials' ids, not
    [UNK]; the vocabulary itself (length, JSON) is unchanged."""
    import json
    import pickle
    vocab = tutorial_inputs['VOCAB']
    ids = vocab[['<cls>', 'the', 'cat', '<sep>', '<pad>', '<mask>', '<unk>', 'zebra']]
    assert ids == vocab[['[CLS]', 'the', 'cat', '[SEP]', '[PAD]', '[MASK]', '[UNK]', '[UNK]']]
    assert ids[0] != vocab['[UNK]'] and len(vocab) == len(SPECIALS) + len(WORDS)
    assert '<cls>' not in vocab and '<cls>' not in json.loads(vocab.to_json())['token_to_idx']
    assert pickle.loads(pickle.dumps(vocab))['<sep>'] == vocab['[SEP]']   # DataLoader workers


def _d2l_code():
    """The d2l loop of docs/migrating.md (the python block after the marker)."""
    with open(os.path.join(ROOT, 'docs', 'migrating.md'), encoding='utf-8') as f:
        text = f.read()
    block = re.search(r'<!-- tested: d2l loop -->\s*```python\n(.*?)```', text, re.S)
    assert block, 'docs/migrating.md lost its tested d2l block'
    return block.group(1)


@pytest.mark.slow
def test_d2l_pretraining_loop_from_the_docs(tmp_path):
    """d2l's train_bert with the edits docs/migrating.md lists, on gluonbert's batches of a
    learnable corpus: the masked-LM loss falls."""
    from gluonbert.data import PretrainingDataConfig, prepare_pretraining_data

    from .train.synthetic import write_corpus, write_vocab
    vocab_path = write_vocab(tmp_path / 'vocab.txt')
    prepare_pretraining_data([write_corpus(tmp_path / 'corpus.txt')], vocab_path,
                             str(tmp_path / 'shards'),
                             PretrainingDataConfig(max_seq_length=32, max_predictions_per_seq=5,
                                                   dupe_factor=2, seed=1), progress=False)
    namespace = {'SHARDS': str(tmp_path / 'shards'), 'VOCAB': vocab_path}
    mx.random.seed(0)
    np.random.seed(0)
    exec(compile(_d2l_code(), 'docs/migrating.md (d2l loop)', 'exec'), namespace)
    mlm, nsp = namespace['train_bert'](namespace['train_iter'], namespace['net'],
                                       namespace['loss'], len(namespace['vocab']),
                                       namespace['devices'], 80)
    assert len(mlm) == 80 and np.isfinite(mlm).all() and np.isfinite(nsp).all()
    assert np.mean(mlm[-10:]) < 0.85 * np.mean(mlm[:10]), (mlm[:10], mlm[-10:])
