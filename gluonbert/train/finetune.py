"""Fine-tuning BERTClassifier on sentence-pair classification (MRPC and GLUE-format tasks).

:class:`FinetuningTask` is what the training engine (:mod:`gluonbert.train.engine`) runs: the
classifier on a pretrained encoder (:mod:`~gluonbert.model.pretrained`), bucketed batches of the
task's TSV files (:class:`ClassificationBatches`: resumable at any update, each worker taking
its own batches), softmax cross-entropy normalised over the whole update, accuracy. After each
epoch the dev set is scored (accuracy, F1 of class 1); the best epoch's parameters are kept in
``out_dir/model.params`` (with ``finetune.json`` and ``vocab.txt``: what ``gluonbert predict``
needs; those two are also written when the run starts, so that ``predict`` reads a checkpoint
of a run stopped earlier); ``--early-stop N`` ends the run after N epochs without a better dev
accuracy.
Checkpoints, ``--resume`` and every device and cluster flag are the engine's, as for
pretraining. A run is deterministic for a seed.
"""
import dataclasses
import json
import math
import os
import time

import mxnet as mx
import numpy as np

from ..model.optimize import optimize
from ..data.fileio import atomic_write
from ..errors import ConfigError
from ..model import BERTClassifier
from ..model.pretrained import FINETUNE_INFO, check_source, load_backbone
from .engine import Task, Update, train
from .losses import CLASSIFY_STATS, classification_counts, classification_loss
from ..serve.metrics import accuracy, f1_score
from .plot import plot_curves
from ..serve.predict import predict_proba
from ..data.tasks import load_task, task_spec

__all__ = ['finetune', 'evaluate', 'FinetuningTask', 'ClassificationBatches']


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
    accumulate, rank, num_workers : int
    num_buckets : int
    """

    def __init__(self, samples, batch_size, pad_id, seed, accumulate=1, rank=0, num_workers=1,
                 num_buckets=10):
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
        batches = [self._batchify([self.samples[i] for i in indices])
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


class FinetuningTask(Task):
    """A :class:`BERTClassifier` on a pretrained encoder, trained on a classification task.

    Parameters
    ----------
    config : FinetuneConfig
    """
    name = 'finetune'
    stats = CLASSIFY_STATS
    num_counts = 1
    unit = 'sequences'
    log_epoch = True

    def __init__(self, config):
        check_source(config)
        self.config = config
        self.spec = task_spec(config)
        self.epochs, self.best, self.stale = [], None, 0
        self._epoch_sums = np.zeros(len(CLASSIFY_STATS))
        self._epoch_rows, self._epoch_seconds, self._tick = 0, 0.0, None

    def build(self, run):
        from ..data import BERTDatasetTransform, get_tokenizer
        config = self.config
        train_records, dev_records, self.split = load_task(config, self.spec)
        self.backbone = load_backbone(config)
        positions = self.backbone.bert.config.max_length
        if config.max_seq_length > positions:
            raise ConfigError(f'--max-seq-length {config.max_seq_length}: the model '
                              f'({self.backbone.source}) has a position table of {positions} '
                              f'rows; expected at most {positions}')
        self.transform = BERTDatasetTransform(
            get_tokenizer(self.backbone.vocab, lower=self.backbone.lower),
            config.max_seq_length, class_labels=self.spec.labels, pad=False, pair=self.spec.pair)
        self.train = [self.transform(r.example()) for r in train_records]
        self.dev = [self.transform(r.example()) for r in dev_records]
        self.batches = ClassificationBatches(
            self.train, config.batch_size, self.transform.pad_id, config.seed,
            config.optimizer.accumulate, run.cluster.rank, run.cluster.num_workers)
        self.total_steps = config.epochs * self.batches.updates_per_epoch
        net = BERTClassifier(self.backbone.bert, num_classes=len(self.spec.labels),
                             dropout=config.dropout)
        if run.cluster.is_main and not os.path.isfile(os.path.join(run.out_dir, FINETUNE_INFO)):
            # what predict needs beside a checkpoint, so that a run stopped before its first
            # epoch ended is usable; the best epoch rewrites it (with its record)
            self._write_info(run.out_dir, net, None)
        net.classifier.initialize(ctx=mx.cpu())
        net.collect_params().reset_ctx(run.contexts)
        # Not static_shape: bucketed batches change shape from one update to the next.
        return optimize(net, training=True, static_shape=False)

    def describe(self):
        return (f'{self.backbone.source}, {self.split}; {len(self.train)} train / '
                f'{len(self.dev)} dev, batch {self.config.batch_size} x '
                f'{self.config.optimizer.accumulate}, {self.batches.updates_per_epoch} updates '
                'per epoch')

    def next_update(self):
        if self._tick is None:
            self._tick = time.time()
        update = self.batches.next_update()
        self._epoch_rows += sum(len(b[0]) for b in update.batches)
        return update

    counts = staticmethod(classification_counts)

    def loss(self, net, *shard_and_totals):
        return classification_loss(net, *shard_and_totals)

    def metrics(self, sums):
        self._epoch_sums += [sums[k] for k in CLASSIFY_STATS]
        count = max(sums['count'], 1)
        return {'loss': sums['loss_sum'] / count, 'accuracy': sums['correct'] / count}

    def data_state(self):
        return self.batches.state_dict()

    def load_data_state(self, state, rank, step):
        self.batches.load_state_dict(state)

    def state_dict(self):
        return {'epochs': self.epochs, 'best': self.best, 'stale': self.stale,
                'epoch_sums': self._epoch_sums.tolist(), 'epoch_rows': self._epoch_rows,
                'epoch_seconds': self._epoch_seconds + self._elapsed()}

    def load_state_dict(self, state):
        self.epochs, self.best, self.stale = state['epochs'], state['best'], state['stale']
        self._epoch_sums = np.array(state['epoch_sums'])
        self._epoch_rows, self._epoch_seconds = state['epoch_rows'], state['epoch_seconds']

    def _elapsed(self):
        return time.time() - self._tick if self._tick is not None else 0.0

    def end_epoch(self, net, epoch, run):
        """Scores the dev set, keeps the best epoch's model, decides on early stopping."""
        config = self.config
        seconds, self._tick = self._epoch_seconds + self._elapsed(), None
        loss_sum, correct, count = self._epoch_sums
        metrics = evaluate(net, self.dev, config.eval_batch_size, run.contexts,
                           self.transform.pad_id)
        record = {'epoch': epoch, 'dev_accuracy': metrics['accuracy'], 'dev_f1': metrics['f1'],
                  'dev_loss': metrics['loss'], 'train_loss': loss_sum / max(count, 1),
                  'train_accuracy': correct / max(count, 1), 'train_count': int(count),
                  'seconds': seconds,
                  'sequences_per_s': self._epoch_rows / max(seconds, 1e-9)}
        self.epochs.append(record)
        self._epoch_sums[:] = 0
        self._epoch_rows, self._epoch_seconds = 0, 0.0
        run.progress.message(
            f'epoch {epoch}: dev accuracy {metrics["accuracy"]:.4f} F1 {metrics["f1"]:.4f} '
            f'(dev loss {metrics["loss"]:.4f}; train loss {record["train_loss"]:.4f} acc '
            f'{record["train_accuracy"]:.4f} over {record["train_count"]}; {seconds:.1f} s, '
            f'{record["sequences_per_s"]:.1f} seq/s)')
        if self.best is None or metrics['accuracy'] > self.best['dev_accuracy']:
            self.best, self.stale = record, 0
            if run.cluster.is_main:
                self._write_model(run.out_dir, net, record)
            return False
        self.stale += 1
        if config.early_stop and self.stale >= config.early_stop:
            run.progress.message(f'early stop: {self.stale} epochs without a better dev '
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

    def finish(self, net, run, summary):
        out = run.out_dir
        if run.cluster.is_main:         # the kept epoch (other ranks may not see rank 0's disk)
            net.load_parameters(os.path.join(out, 'model.params'), ctx=run.contexts)
        summary.update({'epochs': self.epochs, 'best': self.best, 'split': self.split,
                        'source': self.backbone.source, 'train_size': len(self.train),
                        'dev_size': len(self.dev)})
        if run.cluster.is_main:
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
        ``net`` (on rank 0 the best epoch's classifier, elsewhere the last one) and the
        engine's summary (``history``...).
    """
    return train(FinetuningTask(config), config)
