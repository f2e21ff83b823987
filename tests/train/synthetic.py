"""Tiny synthetic data for the training tests: a vocabulary, a learnable corpus, shards and
paraphrase TSVs. Everything is generated with a seeded numpy generator.

The corpus has structure a tiny BERT can learn in a few hundred steps: each document belongs
to one of several "topics", a topic is a cycle of 8 words, and every sentence walks that cycle
from a random offset. A masked word is then predictable from its neighbours (MLM), and a
random "next sentence" from another document usually comes from another topic (NSP).
"""
import numpy as np

SPECIALS = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']
NUM_TOPICS, TOPIC_WORDS = 8, 8
WORDS = [f'w{t}x{i}' for t in range(NUM_TOPICS) for i in range(TOPIC_WORDS)]
VOCAB = SPECIALS + WORDS + ['and', 'the', '.']


def write_vocab(path):
    """Writes a HuggingFace-style ``vocab.txt`` (``len(VOCAB)`` = 72 tokens)."""
    path.write_text('\n'.join(VOCAB) + '\n', encoding='utf-8')
    return str(path)


def write_corpus(path, num_docs=120, seed=0):
    """One sentence per line, blank lines between documents (BERT's raw-text layout)."""
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(num_docs):
        topic = int(rng.integers(NUM_TOPICS))
        for _ in range(int(rng.integers(4, 8))):
            start, length = int(rng.integers(TOPIC_WORDS)), int(rng.integers(4, 8))
            words = [WORDS[topic * TOPIC_WORDS + (start + k) % TOPIC_WORDS]
                     for k in range(length)]
            lines.append(' '.join(words) + ' .')
        lines.append('')
    path.write_text('\n'.join(lines) + '\n', encoding='utf-8')
    return str(path)


def write_random_shards(directory, num_shards=2, per_shard=32, length=16, predictions=4,
                        vocab_size=72, seed=0):
    """``.npz`` shards of random (unlearnable) examples in the loader's format."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for shard in range(num_shards):
        n = per_shard
        valid = rng.integers(length // 2, length + 1, size=n).astype(np.int32)
        ids = rng.integers(5, vocab_size, size=(n, length)).astype(np.int32)
        segments = np.zeros((n, length), np.int32)
        positions = np.zeros((n, predictions), np.int32)
        weights = np.zeros((n, predictions), np.float32)
        for row, v in enumerate(valid):
            ids[row, 0], ids[row, v - 1], ids[row, v:] = 2, 3, 0
            segments[row, v // 2:v] = 1
            k = int(rng.integers(1, predictions + 1))
            positions[row, :k] = np.sort(rng.choice(np.arange(1, v - 1), k, replace=False))
            weights[row, :k] = 1.0
        masked = np.where(weights > 0, np.take_along_axis(ids, positions, 1), 0).astype(np.int32)
        np.savez(directory / f'part-0-{shard:05d}.npz', input_ids=ids, segment_ids=segments,
                 valid_length=valid, masked_positions=positions, masked_ids=masked,
                 masked_weights=weights,
                 nsp_label=rng.integers(0, 2, size=n).astype(np.int32))
    return str(directory)


def write_paraphrase_tsv(path, num_pairs=64, seed=0):
    """A GLUE MRPC-format TSV whose label is 1 when both sentences share a topic."""
    rng = np.random.default_rng(seed)
    rows = ['Quality\t#1 ID\t#2 ID\t#1 String\t#2 String']
    for index in range(num_pairs):
        topic_a = int(rng.integers(NUM_TOPICS))
        label = int(rng.integers(2))
        topic_b = topic_a if label else (topic_a + 1 + int(rng.integers(NUM_TOPICS - 1))) \
            % NUM_TOPICS

        def sentence(topic):
            start = int(rng.integers(TOPIC_WORDS))
            return ' '.join(WORDS[topic * TOPIC_WORDS + (start + k) % TOPIC_WORDS]
                            for k in range(int(rng.integers(3, 7))))
        rows.append(f'{label}\t{2 * index}\t{2 * index + 1}\t{sentence(topic_a)}\t'
                    f'{sentence(topic_b)}')
    path.write_text('\n'.join(rows) + '\n', encoding='utf-8')
    return str(path)


def write_converted(directory):
    """A randomly initialised ``bert_tiny_test`` saved like ``gluonbert convert`` output
    (``model.params`` without a pooler, ``gluonbert_config.json``, ``vocab.txt``), as a
    sentence-embedding checkpoint: fine-tuning must add a fresh pooler."""
    import json

    import mxnet as mx

    from gluonbert.model import BERTModel, get_config
    from gluonbert.model.init import TruncNorm
    directory.mkdir()
    config = get_config('bert_tiny_test', vocab_size=len(VOCAB))
    mx.random.seed(1)
    bert = BERTModel(config, use_pooler=False, use_decoder=False, use_classifier=False)
    bert.initialize(TruncNorm(0.02))
    bert(mx.nd.ones((1, 4), dtype='int32'), mx.nd.zeros((1, 4), dtype='int32'))
    bert.save_parameters(str(directory / 'model.params'))
    (directory / 'gluonbert_config.json').write_text(json.dumps(config.to_dict()))
    write_vocab(directory / 'vocab.txt')
    return str(directory)


def make_batch(rng, batch=8, length=16, predictions=4, vocab=100, all_weights=False):
    """A random :class:`~gluonbert.data.PretrainingBatch` (host arrays) for a tiny BERT."""
    from gluonbert.data import PretrainingBatch
    valid = rng.integers(8, length + 1, size=batch).astype('int32')
    ids = rng.integers(5, vocab, size=(batch, length)).astype('int32')
    segments = np.zeros((batch, length), 'int32')
    segments[:, length // 2:] = 1
    positions = rng.integers(1, 8, size=(batch, predictions)).astype('int32')
    targets = rng.integers(5, vocab, size=(batch, predictions)).astype('int32')
    weights = np.ones((batch, predictions), 'float32') if all_weights else \
        (rng.random((batch, predictions)) < 0.7).astype('float32')
    nsp = rng.integers(0, 2, size=batch).astype('int32')
    return PretrainingBatch(ids, segments, valid, positions, targets, weights, nsp)


def make_engine(net, num_devices=1, optimizer='bertadam', accumulate=1, lr=1e-3,
                total_updates=100, seed=0, cluster=None):
    """The training engine over ``num_devices`` CPU contexts with the pretraining loss, as
    :func:`gluonbert.train.engine.train` makes it (no run directory)."""
    from gluonbert.train.config import DeviceConfig, OptimizerConfig, RunConfig
    from gluonbert.train.engine import Engine
    from gluonbert.train.pretrain import PretrainingLoss
    config = RunConfig(seed=seed, devices=DeviceConfig(cpus=num_devices),
                       optimizer=OptimizerConfig(name=optimizer, lr=lr, accumulate=accumulate,
                                                 warmup_ratio=0.0))
    engine = Engine(config, cluster)
    engine.attach(net, PretrainingLoss(), total_updates)
    return engine
