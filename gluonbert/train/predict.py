"""Predictions of a fine-tuned classifier: class probabilities in input order, and the
``gluonbert predict`` function that writes them to a TSV file (atomically).

A fine-tuned model directory (written by :func:`gluonbert.train.finetune.finetune`) holds
``model.params`` (a BERTClassifier), ``finetune.json`` (BERT config, task, casing, max length)
and ``vocab.txt``.
"""
import json
import os

import mxnet as mx
import numpy as np

from ..data.fileio import atomic_write
from ..errors import ConfigError, WeightsNotFoundError
from .loop import split_batch

__all__ = ['predict_proba', 'load_classifier', 'predict']


def _batches_by_length(samples, batch_size):
    """Index lists of similar-length samples (less padding), covering every sample once."""
    order = np.argsort([int(s[2]) for s in samples], kind='stable')
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def predict_proba(net, samples, batch_size, contexts, pad_id=0):
    """Class probabilities of transformed samples, in the order of ``samples``.

    Parameters
    ----------
    net : BERTClassifier
        Parameters on ``contexts``.
    samples : list of tuple
        :class:`~gluonbert.data.BERTDatasetTransform` outputs (labels, if any, are ignored).
    batch_size : int
        Samples per batch, split over ``contexts``.
    contexts : list of mx.Context
    pad_id : int

    Outputs
    -------
    probs : (N, K) float32 np.ndarray
    """
    from ..data import ClassificationBatchify
    batchify = ClassificationBatchify(pad_id=pad_id, as_numpy=True)
    out = None
    for index in _batches_by_length(samples, batch_size):
        arrays = batchify([samples[i][:3] for i in index])
        shards = split_batch(arrays, contexts)
        scores = [mx.nd.softmax(net(*shard), axis=-1) for shard in shards]
        probs = np.concatenate([s.asnumpy() for s in scores])
        if out is None:
            out = np.zeros((len(samples), probs.shape[1]), dtype=np.float32)
        out[index] = probs
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def load_classifier(model_dir, contexts):
    """Rebuilds a fine-tuned classifier and its input transform from ``model_dir``.

    Outputs
    -------
    (BERTClassifier, BERTDatasetTransform, TaskSpec)
    """
    from ..data import BERTDatasetTransform, get_tokenizer, load_vocab
    from ..model import BERTClassifier, BERTConfig, BERTModel
    from .tasks import TaskSpec
    info_path = os.path.join(model_dir, 'finetune.json')
    if not os.path.isfile(info_path):
        raise WeightsNotFoundError(f'{info_path}: not found; expected a directory written by '
                                   'gluonbert finetune')
    with open(info_path, encoding='utf-8') as f:
        info = json.load(f)
    spec = TaskSpec(**info['task'])
    bert = BERTModel(BERTConfig.from_dict(info['bert'], source=info_path), use_pooler=True,
                     use_decoder=False, use_classifier=False)
    net = BERTClassifier(bert, num_classes=len(spec.labels), dropout=info['dropout'])
    net.load_parameters(os.path.join(model_dir, 'model.params'), ctx=contexts)
    net.hybridize(static_alloc=True)
    vocab = load_vocab(os.path.join(model_dir, 'vocab.txt'))
    transform = BERTDatasetTransform(get_tokenizer(vocab, lower=info['lower']),
                                     info['max_seq_length'], class_labels=spec.labels,
                                     pad=False, pair=spec.pair, has_label=False)
    return net, transform, spec


def predict(model_dir, input_path, output_path, batch_size=64, gpus=None, cpus=None):
    """Writes ``index, prediction, prob_<label>...`` (and ``label`` when known) as TSV.

    Parameters
    ----------
    model_dir : str
        A fine-tuned model directory.
    input_path : str
        A file in the task's format (MRPC: GLUE train/dev/test.tsv or an MSR file).
    output_path : str
        Output TSV, written to a temporary file and renamed.
    batch_size : int
    gpus, cpus
        Devices, as for training.

    Outputs
    -------
    dict
        ``{'count': N, 'output': path, 'accuracy': ..., 'f1': ...}`` (metrics only when the
        input has labels).
    """
    from .devices import parse_devices
    from .metrics import classification_report
    from .tasks import read_examples
    if batch_size < 1:
        raise ConfigError(f'batch_size={batch_size}: expected >= 1')
    contexts = parse_devices(gpus, cpus)
    net, transform, spec = load_classifier(model_dir, contexts)
    records = read_examples(input_path, spec)
    texts = [(r.text_a, r.text_b) if spec.pair else (r.text_a,) for r in records]
    probs = predict_proba(net, [transform(t) for t in texts], batch_size, contexts,
                          transform.pad_id)
    predicted = probs.argmax(axis=1) if len(records) else np.zeros(0, dtype=int)
    known = bool(records) and records[0].label is not None
    header = ['index', 'prediction'] + [f'prob_{label}' for label in spec.labels]
    header += ['label'] if known else []
    out_dir = os.path.dirname(os.path.abspath(output_path))
    os.makedirs(out_dir, exist_ok=True)
    with atomic_write(output_path, newline='\n') as f:
        f.write('\t'.join(header) + '\n')
        for i, record in enumerate(records):
            row = [str(i), spec.labels[predicted[i]]] + [f'{p:.6f}' for p in probs[i]]
            f.write('\t'.join(row + ([record.label] if known else [])) + '\n')
    result = {'count': len(records), 'output': output_path}
    if known:
        gold = np.array([spec.labels.index(r.label) for r in records])
        result.update(classification_report(predicted, gold))
    return result
