"""Predictions of a fine-tuned classifier: class probabilities in input order, and the
``gluonbert predict`` function that writes them to a TSV file (atomically).

A fine-tuned model directory (written by :func:`gluonbert.train.finetune.finetune`) holds
``model.params`` (a BERTClassifier), ``finetune.json`` (BERT config, task, casing, max length)
and ``vocab.txt``.
"""
import dataclasses
import json
import os

import mxnet as mx
import numpy as np

from .. import perf
from ..data.fileio import atomic_write
from ..errors import ConfigError, InputError, WeightsNotFoundError
from .loop import split_batch

__all__ = ['predict_proba', 'load_classifier', 'predict', 'DEFAULT_BATCH_SIZE']


def _batches_by_length(samples, batch_size=None, max_batch_tokens=None, describe=None):
    """Index lists of similar-length samples (less padding), covering every sample once.

    The samples are sorted by length (stable: ties keep their order) and cut greedily into
    consecutive batches of at most ``batch_size`` rows and at most ``max_batch_tokens`` padded
    tokens (rows x the longest row of the batch); either limit may be None (not both).

    Parameters
    ----------
    samples : list of tuple
        Transformed samples; ``len(sample[0])`` is the length a batch pads to.
    batch_size : int or None
    max_batch_tokens : int or None
    describe : callable, optional
        ``describe(i)`` names sample ``i`` in the error (e.g. its file and line).

    Outputs
    -------
    list of (n_b,) int np.ndarray

    Raises
    ------
    ConfigError
        A limit below 1, or a sample longer than ``max_batch_tokens`` (it fits no batch).
    """
    if batch_size is None and max_batch_tokens is None:
        raise ConfigError('batch_size and max_batch_tokens are both None; expected at least one')
    for name, value in (('batch_size', batch_size), ('max_batch_tokens', max_batch_tokens)):
        if value is not None and value < 1:
            raise ConfigError(f'{name}={value}: expected >= 1')
    lengths = np.array([len(s[0]) for s in samples], dtype=np.int64)
    order = np.argsort(lengths, kind='stable')
    if max_batch_tokens is None:
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if len(order) and lengths[order[-1]] > max_batch_tokens:
        longest = int(order[-1])
        where = describe(longest) if describe else f'sample {longest}'
        raise ConfigError(f'{where}: {int(lengths[longest])} tokens, more than max_batch_tokens='
                          f'{max_batch_tokens}; expected a budget of at least the longest '
                          'input (the maximum sequence length always fits)')
    rows = batch_size or len(order)
    batches, start = [], 0
    for end in range(1, len(order) + 1):
        # sorted: order[end - 1] is the longest of the batch [start, end)
        if end - start > rows or (end - start) * lengths[order[end - 1]] > max_batch_tokens:
            batches.append(order[start:end - 1])
            start = end - 1
    if start < len(order):
        batches.append(order[start:])
    return batches


def predict_proba(net, samples, batch_size, contexts, pad_id=0, max_batch_tokens=None,
                  describe=None):
    """Class probabilities of transformed samples, in the order of ``samples``.

    Parameters
    ----------
    net : BERTClassifier
        Parameters on ``contexts`` (or the graph of a deployment directory).
    samples : list of tuple
        :class:`~gluonbert.data.BERTDatasetTransform` outputs (labels, if any, are ignored).
    batch_size : int or None
        At most this many samples per batch, split over ``contexts`` (None: no row limit,
        only with ``max_batch_tokens``).
    contexts : list of mx.Context
    pad_id : int
    max_batch_tokens : int, optional
        At most this many padded tokens (rows x longest row) per batch: short inputs go in
        larger batches, long ones in smaller; must be at least the longest sample's length.
    describe : callable, optional
        ``describe(i)`` names sample ``i`` in errors.

    Outputs
    -------
    probs : (N, K) float32 np.ndarray
    """
    from ..data import ClassificationBatchify
    batchify = ClassificationBatchify(pad_id=pad_id, as_numpy=True)
    out = None
    for index in _batches_by_length(samples, batch_size, max_batch_tokens, describe):
        arrays = batchify([samples[i][:3] for i in index])
        shards = split_batch(arrays, contexts)
        scores = [mx.nd.softmax(net(*shard), axis=-1) for shard in shards]
        probs = np.concatenate([s.asnumpy() for s in scores])
        if out is None:
            out = np.zeros((len(samples), probs.shape[1]), dtype=np.float32)
        out[index] = probs
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


#: Keys of ``finetune.json`` that ``predict`` reads, with their JSON types.
_INFO_KEYS = {'bert': dict, 'task': dict, 'lower': bool, 'max_seq_length': int,
              'dropout': (int, float)}


def _read_info(path):
    """``finetune.json``, with a :class:`ConfigError` naming the file, the line and what is
    wrong when it is not the JSON ``finetune`` writes."""
    try:
        with open(path, encoding='utf-8') as f:
            info = json.load(f)
    except json.JSONDecodeError as err:
        raise ConfigError(f'{path}:{err.lineno}: not valid JSON ({err.msg}, column {err.colno}); '
                          'expected the finetune.json written by gluonbert finetune') from None
    except UnicodeDecodeError as err:
        raise ConfigError(f'{path}: not UTF-8 text ({err.reason} at byte {err.start}); '
                          'expected the finetune.json written by gluonbert finetune') from None
    if not isinstance(info, dict):
        raise ConfigError(f'{path}: holds a JSON {type(info).__name__}; expected an object '
                          f'with the keys {sorted(_INFO_KEYS)}')
    for key, kind in _INFO_KEYS.items():
        if not isinstance(info.get(key), kind):
            raise ConfigError(f'{path}: "{key}" is {info.get(key)!r}; expected a JSON '
                              f'{getattr(kind, "__name__", "number")} (written by gluonbert '
                              'finetune)')
    labels = info['task'].get('labels')
    if not (isinstance(labels, list) and labels and all(isinstance(x, str) for x in labels)):
        raise ConfigError(f'{path}: "task.labels" is {labels!r}; expected a list of label '
                          'strings')
    from .tasks import TaskSpec
    unknown = set(info['task']) - {f.name for f in dataclasses.fields(TaskSpec)}
    if unknown:
        raise ConfigError(f'{path}: "task" has unknown keys {sorted(unknown)}; expected those '
                          'of gluonbert.train.tasks.TaskSpec')
    return info


def _check_output_path(path):
    if os.path.isdir(path):
        example = os.path.join(path, 'predictions.tsv')
        raise ConfigError(f'--output {path} is a directory; expected the path of the '
                          f'predictions file to write (e.g. {example})')


def load_classifier(model_dir, contexts, kernels='auto'):
    """Rebuilds a fine-tuned classifier and its input transform from ``model_dir``, or loads
    the exported graph of a deployment directory (``gluonbert quantize``, fp32 or INT8).

    The rebuilt classifier is prepared for inference by :func:`gluonbert.perf.optimize`
    (``kernels``: gluonbert's CPU kernels on CPU contexts by default; ``False`` keeps MXNet's
    operators, which an export needs).

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
    info = _read_info(info_path)
    spec = TaskSpec(**info['task'])
    from ..deploy import DEPLOY_INFO, load_exported
    if os.path.isfile(os.path.join(model_dir, DEPLOY_INFO)):  # gluonbert quantize's output
        net = load_exported(model_dir, contexts)
    else:
        bert = BERTModel(BERTConfig.from_dict(info['bert'], source=info_path), use_pooler=True,
                         use_decoder=False, use_classifier=False)
        net = BERTClassifier(bert, num_classes=len(spec.labels), dropout=info['dropout'])
        net.load_parameters(os.path.join(model_dir, 'model.params'), ctx=contexts)
        perf.optimize(net, training=False, kernels=kernels, static_shape=False)
    vocab = load_vocab(os.path.join(model_dir, 'vocab.txt'))
    transform = BERTDatasetTransform(get_tokenizer(vocab, lower=info['lower']),
                                     info['max_seq_length'], class_labels=spec.labels,
                                     pad=False, pair=spec.pair, has_label=False)
    return net, transform, spec


#: Rows per batch of :func:`predict` when neither limit is given.
DEFAULT_BATCH_SIZE = 64


def predict(model_dir, input_path, output_path, batch_size=None, gpus=None, cpus=None,
            max_batch_tokens=None):
    """Writes ``index, prediction, prob_<label>...`` (and ``label`` when known) as TSV.

    Parameters
    ----------
    model_dir : str
        A fine-tuned model directory.
    input_path : str
        A file in the task's format (MRPC: GLUE train/dev/test.tsv or an MSR file).
    output_path : str
        Output TSV, written to a temporary file and renamed.
    batch_size : int, optional
        At most this many rows per batch (default :data:`DEFAULT_BATCH_SIZE` without
        ``max_batch_tokens``; no row limit with it).
    gpus, cpus
        Devices, as for training.
    max_batch_tokens : int, optional
        At most this many padded tokens (rows x longest row) per batch: the inputs are sorted
        by length and cut into batches under this budget (short inputs in larger batches).
        Must be at least the longest input's token count (``max_seq_length`` always is).
        The output is in input order either way, with the same labels and probabilities
        (to float rounding).

    Outputs
    -------
    dict
        ``{'count': N, 'output': path, 'accuracy': ..., 'f1': ...}`` (metrics only when the
        input has labels).
    """
    from .devices import parse_devices
    from .metrics import classification_report
    from .tasks import read_examples
    if batch_size is None and max_batch_tokens is None:
        batch_size = DEFAULT_BATCH_SIZE
    for name, value in (('batch_size', batch_size), ('max_batch_tokens', max_batch_tokens)):
        if value is not None and value < 1:
            raise ConfigError(f'{name}={value}: expected >= 1')
    _check_output_path(output_path)      # before any work
    contexts = parse_devices(gpus, cpus)
    net, transform, spec = load_classifier(model_dir, contexts)
    records = read_examples(input_path, spec)
    texts = [(r.text_a, r.text_b) if spec.pair else (r.text_a,) for r in records]
    try:
        probs = predict_proba(net, [transform(t) for t in texts], batch_size, contexts,
                              transform.pad_id, max_batch_tokens,
                              describe=lambda i: f'{input_path}:{records[i].line}')
    except InputError as err:       # the model's input check: say which files
        raise InputError(f'{input_path} with the model in {model_dir}: {err}') from None
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
