"""Sentence(-pair) classification inputs: ``BERTDatasetTransform``, batchify and a bucketed loader.

``BERTDatasetTransform`` keeps the contract of GluonNLP 0.10's
``scripts/bert/data/transform.py``: same constructor arguments, and ``__call__`` returns
``(input_ids, segment_ids, valid_length, label)``. (GluonNLP's docstring lists
``input ids, valid length, type ids``, but its code returns segment ids second and the valid
length third; this module follows the code.)

Example
-------
>>> transform = BERTDatasetTransform(tokenizer, 128, class_labels=['0', '1'], pad=False)
>>> dataset = gluon.data.SimpleDataset(examples).transform(transform, lazy=False)  # doctest: +SKIP
>>> loader = classification_dataloader(dataset, batch_size=32, shuffle=True)  # doctest: +SKIP
>>> for input_ids, segment_ids, valid_length, label in loader: ...           # doctest: +SKIP
"""
import math

import numpy as np

from ..errors import InputError

__all__ = ['BERTDatasetTransform', 'ClassificationBatchify', 'batchify_classification',
           'classification_dataloader']


def _truncate_longest_first(tokens_a, tokens_b, max_length):
    """Drops tokens from the end of the longer list (B on ties) until both fit ``max_length``."""
    while len(tokens_a) + len(tokens_b) > max_length:
        if len(tokens_a) > len(tokens_b):
            tokens_a.pop()
        else:
            tokens_b.pop()


class BERTDatasetTransform:
    """Turns ``(text_a[, text_b], label)`` into BERT inputs ``[CLS] A [SEP] (B [SEP])``.

    Parameters
    ----------
    tokenizer : gluonnlp.data.BERTTokenizer
        Tokenizer; its ``vocab`` is used unless ``vocab`` is given.
    max_seq_length : int
        Longest output, special tokens included. Pairs are truncated longest-first (a token
        at a time from the end of the longer text), single texts from the end.
    vocab : gluonnlp.vocab.BERTVocab or None
        Vocabulary with ``cls_token``, ``sep_token`` and ``padding_token``.
    class_labels : list of str or None
        Labels of a classification task, mapped to their index (int32). None: a regression
        task, whose label is parsed as float32.
    label_alias : dict or None
        Extra label strings mapped onto one of ``class_labels`` (e.g. ``{'yes': '1'}``).
    pad : bool
        Pad ``input_ids``/``segment_ids`` to ``max_seq_length`` (padding id, segment 0).
        Use False with :func:`batchify_classification`, which pads to the longest in a batch.
    pair : bool
        Inputs are pairs (text_a, text_b) rather than single texts. A pair always gets two
        ``[SEP]`` tokens, even when text_b is empty (as HuggingFace; GluonNLP drops the second).
    has_label : bool
        The last element of a line is its label.

    Inputs
    ------
    line : tuple of str
        ``(text_a, text_b, label)`` for pairs, ``(text_a, label)`` for single texts, without
        the label when ``has_label`` is False. Given as one tuple or list (``transform(line)``)
        or unpacked (``transform(*line)``, as ``gluon.data.Dataset.transform`` calls it).

    Outputs
    -------
    input_ids : np.ndarray, int32, shape (T,)
        ``T = valid_length``, or ``max_seq_length`` when ``pad``.
    segment_ids : np.ndarray, int32, shape (T,)
        0 for ``[CLS] A [SEP]`` and padding, 1 for ``B [SEP]``.
    valid_length : np.ndarray, int32, shape ()
        Number of real (non-padding) tokens.
    label : np.ndarray, shape (1,)
        int32 class index, or float32 value for regression (only when ``has_label``).
    """

    def __init__(self, tokenizer, max_seq_length, vocab=None, class_labels=None,
                 label_alias=None, pad=True, pair=True, has_label=True):
        min_length = 3 if pair else 2
        if int(max_seq_length) < min_length:
            raise InputError(f'max_seq_length={max_seq_length}: expected at least {min_length} '
                             '(room for [CLS] and [SEP] tokens)')
        self._tokenizer = tokenizer
        self._vocab = tokenizer.vocab if vocab is None else vocab
        self.max_seq_length = int(max_seq_length)
        self.class_labels = list(class_labels) if class_labels else None
        self.pad, self.pair, self.has_label = pad, pair, has_label
        self._label_map = None
        if self.class_labels:
            self._label_map = {label: i for i, label in enumerate(self.class_labels)}
            for alias, target in (label_alias or {}).items():
                if target not in self._label_map:
                    raise InputError(f'label_alias[{alias!r}]={target!r} is not one of '
                                     f'class_labels {self.class_labels}')
                self._label_map[alias] = self._label_map[target]
        self._cls_id = self._vocab[self._vocab.cls_token]
        self._sep_id = self._vocab[self._vocab.sep_token]
        self._pad_id = self._vocab[self._vocab.padding_token]

    @property
    def pad_id(self):
        """Id of the padding token (the value batchify pads ``input_ids`` with)."""
        return self._pad_id

    def _label(self, value):
        if self._label_map is not None:
            if value not in self._label_map:
                raise InputError(f'label {value!r} is not one of {sorted(self._label_map)}')
            return np.array([self._label_map[value]], dtype=np.int32)
        try:
            return np.array([float(value)], dtype=np.float32)
        except (TypeError, ValueError):
            raise InputError(f'label {value!r}: expected a number (regression task, '
                             'class_labels=None)') from None

    def __call__(self, *line):
        # gluon's Dataset.transform calls fn(*item) for tuple items, GluonNLP code fn(item)
        if len(line) == 1 and isinstance(line[0], (tuple, list)):
            line = line[0]
        expected = (2 if self.pair else 1) + (1 if self.has_label else 0)
        if len(line) != expected:
            raise InputError(f'line has {len(line)} fields {tuple(line)!r:.200}; expected '
                             f'{expected} (pair={self.pair}, has_label={self.has_label})')
        tokens_a = self._tokenizer(line[0])
        tokens_b = self._tokenizer(line[1]) if self.pair else []
        if self.pair:
            _truncate_longest_first(tokens_a, tokens_b, self.max_seq_length - 3)
        else:
            tokens_a = tokens_a[:self.max_seq_length - 2]
        ids_a = self._vocab.to_indices(tokens_a)
        ids = [self._cls_id] + ids_a + [self._sep_id]
        segments = [0] * len(ids)
        if self.pair:
            ids += self._vocab.to_indices(tokens_b) + [self._sep_id]
            segments += [1] * (len(tokens_b) + 1)
        valid_length = len(ids)
        if self.pad:
            ids += [self._pad_id] * (self.max_seq_length - valid_length)
            segments += [0] * (self.max_seq_length - valid_length)
        out = (np.array(ids, dtype=np.int32), np.array(segments, dtype=np.int32),
               np.array(valid_length, dtype=np.int32))
        if self.has_label:
            return out + (self._label(line[-1]),)
        return out


class ClassificationBatchify:
    """Stacks transformed samples into a batch, padding to the longest sample in the batch.

    Parameters
    ----------
    pad_id : int
        Value for padded ``input_ids`` (segment ids are padded with 0).
    round_to : int or None
        Round the padded length up to a multiple of this (e.g. 8 for tensor cores).
    as_numpy : bool
        Return numpy arrays instead of ``mx.nd.NDArray``.

    Inputs
    ------
    samples : list of tuple
        Outputs of :class:`BERTDatasetTransform`, with or without labels.

    Outputs
    -------
    input_ids : int32, shape (B, T)
        ``T`` = the longest ``input_ids`` in the batch, rounded up to ``round_to``.
    segment_ids : int32, shape (B, T)
    valid_length : int32, shape (B,)
    label : int32 or float32, shape (B,)
        Only when the samples carry labels.
    """

    def __init__(self, pad_id=0, round_to=None, as_numpy=False):
        if round_to is not None and int(round_to) < 1:
            raise InputError(f'round_to={round_to}: expected a positive integer or None')
        self.pad_id, self.round_to, self.as_numpy = int(pad_id), round_to, as_numpy

    def __call__(self, samples):
        if not samples:
            raise InputError('cannot batchify an empty list of samples')
        width = max(len(sample[0]) for sample in samples)
        if self.round_to:
            width = int(self.round_to) * math.ceil(width / int(self.round_to))
        batch = len(samples)
        input_ids = np.full((batch, width), self.pad_id, dtype=np.int32)
        segment_ids = np.zeros((batch, width), dtype=np.int32)
        for row, sample in enumerate(samples):
            input_ids[row, :len(sample[0])] = sample[0]
            segment_ids[row, :len(sample[1])] = sample[1]
        valid_length = np.array([int(sample[2]) for sample in samples], dtype=np.int32)
        out = [input_ids, segment_ids, valid_length]
        if len(samples[0]) == 4:
            out.append(np.concatenate([np.asarray(s[3]).reshape(-1) for s in samples]))
        if self.as_numpy:
            return tuple(out)
        import mxnet as mx
        return tuple(mx.nd.array(arr, dtype=arr.dtype) for arr in out)


def batchify_classification(pad_id=0, round_to=None, as_numpy=False):
    """Returns a :class:`ClassificationBatchify` (see there for shapes)."""
    return ClassificationBatchify(pad_id=pad_id, round_to=round_to, as_numpy=as_numpy)


def classification_dataloader(dataset, batch_size, shuffle=False, num_buckets=10, pad_id=0,
                              round_to=None, num_workers=0, bucket_ratio=0.0, as_numpy=False):
    """A ``gluon.data.DataLoader`` over transformed samples, bucketed by length.

    Samples of similar length go into the same batch (``gluonnlp.data.FixedBucketSampler``),
    so padding to the longest in the batch wastes little. Shuffling uses numpy's global
    random state: call ``np.random.seed`` first for a reproducible order.

    Parameters
    ----------
    dataset : gluon.data.Dataset or list
        Samples as produced by :class:`BERTDatasetTransform` (``pad=False`` recommended), e.g.
        ``SimpleDataset(examples).transform(transform, lazy=False)``.
    batch_size : int
        Samples per batch (the last batch of a bucket may be smaller).
    shuffle : bool
        Shuffle within and across buckets every epoch.
    num_buckets : int
        Number of length buckets.
    pad_id : int
        Padding id for ``input_ids`` (``transform.pad_id``).
    round_to : int or None
        Round padded lengths up to a multiple of this.
    num_workers : int
        DataLoader worker processes (0: in the main process).
    bucket_ratio : float
        ``FixedBucketSampler(ratio=...)``: >0 gives buckets of short samples larger batches.
    as_numpy : bool
        Yield numpy arrays instead of NDArrays.

    Outputs
    -------
    gluon.data.DataLoader
        Yields ``(input_ids (B, T) int32, segment_ids (B, T) int32, valid_length (B,) int32,
        label (B,))``; the label only when the samples have one.
    """
    from gluonnlp.data import FixedBucketSampler
    from mxnet import gluon
    if len(dataset) == 0:
        raise InputError('classification_dataloader: the dataset is empty')
    lengths = [int(dataset[i][2]) for i in range(len(dataset))]
    num_buckets = max(1, min(int(num_buckets), len(set(lengths))))
    sampler = FixedBucketSampler(lengths, batch_size=batch_size, num_buckets=num_buckets,
                                 ratio=bucket_ratio, shuffle=shuffle)
    return gluon.data.DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers,
                                 batchify_fn=ClassificationBatchify(pad_id, round_to, as_numpy))
