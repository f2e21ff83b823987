"""Fine-tuning BERTClassifier on sentence-pair classification (MRPC and GLUE-format tasks).

:class:`FinetuningTask` is what the training engine (:mod:`gluonbert.train.engine`) runs: the
classifier on a pretrained encoder (:mod:`~gluonbert.model.pretrained`), bucketed batches of the
task's TSV files (:class:`ClassificationBatches`: resumable at any update, each worker taking
its own batches), softmax cross-entropy normalised over the whole update, accuracy. After each
epoch the dev set is scored (accuracy, F1 of class 1); the best epoch's parameters are kept in
``out_dir/model.params`` (with ``finetune.json`` and ``vocab.txt``: what ``gluonbert predict``
needs; those two are also written when the run starts, so that ``predict`` reads a checkpoint
of a run stopped earlier); ``--early-stop N`` ends the run after N epochs without a better dev
accuracy. Past half of the schedule, an epoch whose train accuracy is within
:data:`DEGENERATE_MARGIN` of the majority class's share is logged as a warning: the classifier
has collapsed to one class.
Checkpoints, ``--resume`` and every device and cluster flag are the engine's, as for
pretraining. A run is deterministic for a seed.
"""
import dataclasses
import json
import math
import os
import typing

import mxnet as mx
import numpy as np

from ..dist.cluster import on_cpu
from ..data.fileio import atomic_write
from ..errors import ConfigError, DataFormatError
from ..model import BERTClassifier
from ..model.pretrained import FINETUNE_INFO, check_source, load_backbone, source_config
from ..serve.metrics import accuracy, f1_score
from .engine import Task, Update, train
from .plot import plot_curves
from ..serve.predict import predict_proba
from ..data.tasks import load_task, task_spec

__all__ = ['finetune', 'evaluate', 'majority_share', 'FinetuningTask', 'ClassificationBatch',
           'ClassificationBatches', 'ClassificationLoss', 'DEGENERATE_MARGIN']

#: A run whose train accuracy stays within this of the majority-class share has learned nothing
#: a constant prediction would not (the criterion of ``benchmarks/finetune_seeds.py``).
DEGENERATE_MARGIN = 0.02


def majority_share(samples):
    """Share of the most frequent label among transformed samples (0.0 for none): the accuracy
    of always predicting it."""
    if not samples:
        return 0.0
    counts = np.bincount([int(s[3][0]) for s in samples])
    return float(counts.max() / len(samples))


def evaluate(net, samples, batch_size, contexts, pad_id):
    """Dev metrics of labelled transformed samples.

    Outputs
    -------
    dict
        ``accuracy``, ``f1`` (class 1 positive), ``loss`` (mean cross-entropy), ``count``.
    """
    probs = predict_proba(net, samples, batch_size, contexts, pad_id)
    labels = np.array([int(s[3][0]) for s in samples])
    predicted = probs.argmax(axis=1)
    loss = float(-np.log(np.maximum(probs[np.arange(len(labels)), labels], 1e-12)).mean())
    return {'accuracy': accuracy(predicted, labels), 'f1': f1_score(predicted, labels),
            'loss': loss, 'count': len(labels)}


class ClassificationBatch(typing.NamedTuple):
    """One micro-batch of a classification task (host arrays, padded to its longest row).

    Attributes
    ----------
    input_ids, segment_ids : int32, shape (B, T)
    valid_length : int32, shape (B,)
    label : int32, shape (B,)
    """
    input_ids: object
    segment_ids: object
    valid_length: object
    label: object


class ClassificationBatches:
    """Length-bucketed training batches, epoch after epoch, resumable at any update.

    Epoch ``e`` orders the batches of ``gluonnlp.data.FixedBucketSampler`` (shuffled within
    and across buckets) with a generator seeded from ``(seed, e)``, so any position can be
    rebuilt. An update takes the next ``accumulate x num_workers`` batches of the epoch;
    worker ``rank`` takes every ``num_workers``-th of them. The last update of an epoch may
    hold fewer (a worker may then have none): every example is used once per epoch.

    Parameters
    ----------
    samples : list of tuple
        :class:`~gluonbert.data.BERTDatasetTransform` outputs with labels.
    batch_size : int
    pad_id : int
    seed : int
    epochs : int
        Length of the run: :attr:`total_updates` is ``epochs x updates_per_epoch``.
    accumulate, rank, num_workers : int
    num_buckets : int
    """
    #: What one row is, for the throughput column of the log.
    unit = 'sequences'

    def __init__(self, samples, batch_size, pad_id, seed, epochs=1, accumulate=1, rank=0,
                 num_workers=1, num_buckets=10):
        from gluonnlp.data import FixedBucketSampler

        from ..data import ClassificationBatchify
        self.samples = samples
        self.seed = seed
        self.group = accumulate * num_workers
        self.rank, self.num_workers = rank, num_workers
        lengths = [int(s[2]) for s in samples]
        self._sampler = FixedBucketSampler(
            lengths, batch_size=batch_size, shuffle=True,
            num_buckets=max(1, min(num_buckets, len(set(lengths)))))
        self._batchify = ClassificationBatchify(pad_id=pad_id, as_numpy=True)
        self.num_batches = len(self._sampler)
        self.updates_per_epoch = math.ceil(self.num_batches / self.group)
        self.total_updates = epochs * self.updates_per_epoch
        self.epoch, self.index = 1, 0        # the next update: epoch, update within it
        self._order = None

    def _epoch_order(self, epoch):
        saved = np.random.get_state()        # the sampler shuffles with numpy's global state
        np.random.seed((self.seed * 1_000_003 + epoch) % (2 ** 32))
        try:
            order = list(self._sampler)
        finally:
            np.random.set_state(saved)
        return order

    def next_update(self):
        """The next :class:`~gluonbert.train.engine.Update` of this worker."""
        if self._order is None:
            self._order = self._epoch_order(self.epoch)
        group = self._order[self.index * self.group:(self.index + 1) * self.group]
        batches = [ClassificationBatch(*self._batchify([self.samples[i] for i in indices]))
                   for indices in group[self.rank::self.num_workers]]
        update = Update(batches, self.epoch, self.index + 1 == self.updates_per_epoch)
        self.index += 1
        if update.epoch_end:
            self.epoch, self.index, self._order = self.epoch + 1, 0, None
        return update

    def state_dict(self):
        return {'epoch': self.epoch, 'index': self.index}

    def load_state_dict(self, state):
        self.epoch, self.index, self._order = state['epoch'], state['index'], None


class ClassificationLoss:
    """Softmax cross-entropy of a classifier, averaged over every sentence of the update.

    A shard's loss is its cross-entropy sum divided by the update's sentence count over every
    micro-batch, device and worker (``totals[0]``), so the shards' gradients add up to the
    gradient of the update's mean. Statistics: the loss sum, correct predictions, sentences.
    """
    names = ('loss_sum', 'correct', 'count')
    count_names = ('sentences',)

    def counts(self, batch):
        return [float(len(batch.valid_length))]

    def __call__(self, net, batch, totals):
        """``(loss (1,), statistics (3,))`` of one device's shard (NDArrays on its device)."""
        scores = net(batch.input_ids, batch.segment_ids, batch.valid_length)        # (b, K)
        labels = batch.label.astype('float32', copy=False)
        ce = -mx.nd.pick(mx.nd.log_softmax(scores, axis=-1), labels, axis=-1)       # (b,)
        total = mx.nd.sum(ce)
        with mx.autograd.pause():
            correct = mx.nd.sum(mx.nd.argmax(scores, axis=-1) == labels)
            stats = mx.nd.concat(total.reshape((1,)), correct.reshape((1,)),
                                 mx.nd.array([len(ce)], ctx=ce.context), dim=0)
        return (total / float(totals[0])).reshape((1,)), stats

    def metrics(self, sums):
        count = max(sums['count'], 1)
        return {'loss': sums['loss_sum'] / count, 'accuracy': sums['correct'] / count}


class FinetuningTask(Task):
    """A :class:`BERTClassifier` on a pretrained encoder, trained on a classification task.

    Parameters
    ----------
    config : FinetuneConfig
    """
    name = 'finetune'

    def __init__(self, config):
        check_source(config)
        self.config = config
        self.spec = task_spec(config)
        self.loss = ClassificationLoss()
        self.epochs, self.best, self.stale = [], None, 0

    def check(self, engine):
        """The task's files and the starting point's sizes, read before anything is written:
        both TSV files parse, the dev set is not empty, ``--max-seq-length`` fits the
        model's position table and leaves room for text."""
        config = self.config
        self._records = load_task(config, self.spec)
        train_records, dev_records, split = self._records
        for name, records in (('training', train_records), ('dev', dev_records)):
            if not records:
                raise DataFormatError(split.split(':')[0], None, f'no {name} examples ({split}); '
                                      f'expected a {name} set of at least one labelled pair')
        positions = source_config(config).max_length
        if config.max_seq_length > positions:
            raise ConfigError(f'--max-seq-length {config.max_seq_length}: the model has a '
                              f'position table of {positions} rows; expected at most '
                              f'{positions}')
        shortest = 5 if self.spec.pair else 3       # [CLS] A [SEP] B [SEP]: a token of each
        if config.max_seq_length < shortest:
            raise ConfigError(f'--max-seq-length {config.max_seq_length}: leaves no room for '
                              f'text beside the {shortest - 2 if self.spec.pair else 2} special '
                              f'tokens; expected at least {shortest}')

    def build(self, engine):
        from ..data import BERTDatasetTransform, get_tokenizer
        config = self.config
        if not hasattr(self, '_records'):
            self.check(engine)
        train_records, dev_records, self.split = self._records
        self.backbone = load_backbone(config, kernels=on_cpu(engine.contexts))
        self.transform = BERTDatasetTransform(
            get_tokenizer(self.backbone.vocab, lower=self.backbone.lower),
            config.max_seq_length, class_labels=self.spec.labels, pad=False, pair=self.spec.pair)
        self.train = [self.transform(r.example()) for r in train_records]
        self.dev = [self.transform(r.example()) for r in dev_records]
        self.train_majority = majority_share(self.train)
        self.dev_majority = majority_share(self.dev)
        self.batches = ClassificationBatches(
            self.train, config.batch_size, self.transform.pad_id, config.seed, config.epochs,
            config.optimizer.accumulate, engine.cluster.rank, engine.cluster.num_workers)
        net = BERTClassifier(self.backbone.bert, num_classes=len(self.spec.labels),
                             dropout=config.dropout)
        info_path = os.path.join(engine.out_dir, FINETUNE_INFO)
        if engine.cluster.is_main and not os.path.isfile(info_path):
            # what predict needs beside a checkpoint, so that a run stopped before its first
            # epoch ended is usable; the best epoch rewrites it (with its record)
            self._write_info(engine.out_dir, net, None)
        net.classifier.initialize(ctx=mx.cpu())
        net.collect_params().reset_ctx(engine.contexts)
        # Static memory; not static_shape: bucketed batches change shape between updates.
        net.hybridize(static_alloc=True)
        return net

    def __str__(self):
        return (f'{self.backbone.source}, {self.split}; {len(self.train)} train / '
                f'{len(self.dev)} dev, batch {self.config.batch_size} x '
                f'{self.config.optimizer.accumulate}, {self.batches.updates_per_epoch} updates '
                'per epoch')

    def state_dict(self):
        return {'epochs': self.epochs, 'best': self.best, 'stale': self.stale}

    def load_state_dict(self, state):
        self.epochs, self.best, self.stale = state['epochs'], state['best'], state['stale']

    def end_epoch(self, net, epoch, train_metrics, engine):
        """Scores the dev set, keeps the best epoch's model, decides on early stopping."""
        config = self.config
        metrics = evaluate(net, self.dev, config.eval_batch_size, engine.contexts,
                           self.transform.pad_id)
        seconds = train_metrics['seconds']
        record = {'epoch': epoch, 'dev_accuracy': metrics['accuracy'], 'dev_f1': metrics['f1'],
                  'dev_loss': metrics['loss'], 'train_loss': train_metrics['loss'],
                  'train_accuracy': train_metrics['accuracy'],
                  'train_count': int(train_metrics['count']), 'seconds': seconds,
                  'sequences_per_s': train_metrics['sequences_per_s']}
        self.epochs.append(record)
        engine.progress.message(
            f'epoch {epoch}: dev accuracy {metrics["accuracy"]:.4f} (majority class '
            f'{self.dev_majority:.4f}) F1 {metrics["f1"]:.4f} '
            f'(dev loss {metrics["loss"]:.4f}; train loss {record["train_loss"]:.4f} acc '
            f'{record["train_accuracy"]:.4f} over {record["train_count"]}; {seconds:.1f} s, '
            f'{record["sequences_per_s"]:.1f} seq/s)')
        if (2 * epoch > config.epochs
                and record['train_accuracy'] <= self.train_majority + DEGENERATE_MARGIN):
            engine.progress.message(
                f'WARNING: epoch {epoch} of {config.epochs}: train accuracy '
                f'{record["train_accuracy"]:.4f} is still the majority class\'s share '
                f'({self.train_majority:.4f}): the classifier predicts one class. Try another '
                '--seed, --optimizer adamw or a lower --lr (docs/finetuning.md)')
        if self.best is None or metrics['accuracy'] > self.best['dev_accuracy']:
            self.best, self.stale = record, 0
            if engine.cluster.is_main:
                self._write_model(engine.out_dir, net, record)
            return False
        self.stale += 1
        if config.early_stop and self.stale >= config.early_stop:
            engine.progress.message(f'early stop: {self.stale} epochs without a better dev '
                                    'accuracy')
            return True
        return False

    def _write_model(self, out, net, record):
        """The best model so far: parameters, then the files ``predict`` reads with them."""
        net.save_parameters(os.path.join(out, 'model.params'))
        self._write_info(out, net, record)

    def _write_info(self, out, net, record):
        """``vocab.txt`` and ``finetune.json`` (``best``: the kept epoch's record, or None)."""
        from ..data import write_hf_vocab_txt
        write_hf_vocab_txt(self.backbone.vocab, os.path.join(out, 'vocab.txt'))
        info = {'bert': net.bert.config.to_dict(), 'task': dataclasses.asdict(self.spec),
                'lower': self.backbone.lower, 'max_seq_length': self.config.max_seq_length,
                'dropout': self.config.dropout, 'source': self.backbone.source, 'best': record}
        with atomic_write(os.path.join(out, FINETUNE_INFO), newline='\n') as f:
            json.dump(info, f, indent=2)

    def finish(self, net, engine, summary):
        out = engine.out_dir
        is_main = engine.cluster.is_main
        if is_main:         # the kept epoch (other ranks may not see rank 0's disk)
            net.load_parameters(os.path.join(out, 'model.params'), ctx=engine.contexts)
        summary.update({'epochs': self.epochs, 'best': self.best, 'split': self.split,
                        'source': self.backbone.source, 'train_size': len(self.train),
                        'dev_size': len(self.dev), 'train_majority': self.train_majority,
                        'dev_majority': self.dev_majority})
        if is_main:
            plot_curves(summary['history'], os.path.join(out, 'loss_curve.png'),
                        ('loss', 'accuracy'), title='fine-tuning (train, per log interval)')
            with atomic_write(os.path.join(out, 'metrics.json'), newline='\n') as f:
                json.dump({k: v for k, v in summary.items() if k != 'history'}, f, indent=2)
        summary['net'] = net
        return summary


def finetune(config):
    """Fine-tunes (or resumes fine-tuning) a classifier on the training engine.

    Parameters
    ----------
    config : FinetuneConfig

    Outputs
    -------
    dict
        ``epochs`` (per-epoch dev metrics, train loss/accuracy over every training example,
        seconds, sequences/s), ``best`` (the kept epoch), ``split``, ``source``, ``out_dir``,
        ``train_majority``/``dev_majority`` (accuracy of predicting the most frequent label),
        ``net`` (on rank 0 the best epoch's classifier, elsewhere the last one) and the
        engine's summary (``history``...).
    """
    return train(FinetuningTask(config), config)
