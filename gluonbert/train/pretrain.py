"""BERT pretraining (masked LM + next sentence prediction), data-parallel over devices.

Reads ``.npz`` shards through :class:`~gluonbert.data.PretrainingBatches` (resumable, each
worker reading its own shards, optional dynamic re-masking), or raw text, which is first
turned into shards under ``out_dir/data`` (prepared once, rebuilt when the text changes).
:class:`PretrainingTask` is what the training engine (:mod:`gluonbert.train.engine`) runs.
Writes into ``out_dir``: ``gluonbert_config.json``, ``vocab.txt`` and
``tokenizer_config.json`` at the start (fine-tuning can start from any checkpoint), then
``train.log``, ``checkpoints/step-*``, and at the end ``model.params`` (with both heads),
``loss_curve.png`` and ``summary.json``. Only rank 0 writes.
"""
import json
import os

from mxnet.gluon import HybridBlock

from .. import kernels
from ..data.fileio import atomic_write
from ..dist.cluster import on_cpu
from ..errors import ConfigError
from ..model import BERTModel, get_config
from ..model.convert import CONFIG_FILE
from ..model.init import TruncNorm
from .engine import Task, Update, train
from .plot import plot_curves

__all__ = ['pretrain', 'PretrainingTask', 'PretrainingLoss', 'PretrainingSums', 'PretrainingUpdates',
           'pretraining_config', 'check_pretraining_data', 'load_pretraining_data',
           'prepare_text', 'build_pretraining_model']


#: Length of the examples made from raw text when ``--max-seq-length`` is not given.
DEFAULT_SEQ_LENGTH = 128


def _is_text(data):
    return all(p.endswith('.txt') or p.endswith('.raw') for p in data.split(','))


def _text_options(config):
    from ..data import PretrainingDataConfig
    return PretrainingDataConfig(
        max_seq_length=config.max_seq_length or DEFAULT_SEQ_LENGTH, seed=config.seed,
        max_predictions_per_seq=config.max_predictions_per_seq)


def check_pretraining_data(config, bert_config, rank=0, num_workers=1):
    """Checks the data of a run before anything is written; returns what it read.

    The example length must fit the model's position table (``bert_config.max_length``); raw
    text needs a vocabulary and existing files, and a run resumed from a checkpoint needs
    the text it was trained on: text edited since its data was prepared is refused here,
    before the prepared data is touched (so restoring the text makes the resume work).
    Shards must be complete (:func:`~gluonbert.data.list_shards`), hold at least one batch
    for this worker, have the given length and ids the model can embed.

    Outputs
    -------
    (PretrainingBatches or None, gluonnlp.vocab.BERTVocab or None)
        The batches of shard input (None for raw text, prepared later by
        :func:`load_pretraining_data`) and the vocabulary.
    """
    from ..data import load_vocab
    from ..data.pretraining import MANIFEST_NAME, prepared_changes
    from ..errors import DataFormatError
    from ..runs import find_latest
    text = _is_text(config.data)
    seq_length = config.max_seq_length or (DEFAULT_SEQ_LENGTH if text else None)
    if seq_length and seq_length > bert_config.max_length:
        raise ConfigError(f'--max-seq-length {seq_length}: the model has a position table of '
                          f'{bert_config.max_length} rows; expected at most '
                          f'{bert_config.max_length}')
    vocab = load_vocab(config.vocab) if config.vocab else None
    if not text:
        if vocab is None and os.path.isfile(os.path.join(config.data, MANIFEST_NAME)):
            with open(os.path.join(config.data, MANIFEST_NAME), encoding='utf-8') as f:
                recorded = json.load(f).get('vocab')   # the vocabulary of the shards
            if recorded and os.path.exists(recorded):
                vocab = load_vocab(recorded)
        return _shard_batches(config, config.data, bert_config, vocab, rank, num_workers), vocab
    if vocab is None:
        raise ConfigError(f'pretraining on raw text {config.data}: pass --vocab (a '
                          'vocab.txt, GluonNLP .vocab or HuggingFace model directory)')
    inputs = config.data.split(',')
    for path in inputs:
        if not os.path.isfile(path):
            raise DataFormatError(path, None, 'input text file not found')
    shards = os.path.join(config.out_dir, 'data')
    resuming = config.resume or config.resume_if_possible
    checkpoints = os.path.join(config.out_dir, 'checkpoints')
    if rank == 0 and resuming and find_latest(checkpoints) is not None:
        reasons = prepared_changes(inputs, config.vocab, shards, _text_options(config),
                                   config.lower)
        if reasons:
            raise ConfigError(f'{config.data}: {"; ".join(reasons)} since {shards} was '
                              f'prepared; the checkpoints in {checkpoints} were trained on the '
                              'old data, so the run cannot resume. Restore the old input, or '
                              'use --overwrite to start again on the new data')
    if rank != 0 and not os.path.isfile(os.path.join(shards, MANIFEST_NAME)):
        raise ConfigError(f'{os.path.join(shards, MANIFEST_NAME)}: not found; with several '
                          'workers, prepare the shards first (gluonbert '
                          'prepare-pretraining) and pass them')
    return None, vocab


def _shard_batches(config, shards, bert_config, vocab, rank, num_workers):
    """The batch stream of ``shards``, checked: a full batch, the length, the ids."""
    from ..data import Masker, PretrainingBatches, load_shard
    masker = None
    if config.dynamic_masking and vocab is not None:
        masker = Masker.from_vocab(vocab, max_predictions_per_seq=config.max_predictions_per_seq)
    batches = PretrainingBatches(shards, config.batch_size, rank=rank, num_workers=num_workers,
                                 shuffle=True, seed=config.seed, drop_last=True, masker=masker)
    if len(batches) == 0:
        raise ConfigError(f'{config.data}: {batches.num_examples} examples for this worker, '
                          f'fewer than batch_size={config.batch_size}; expected at least one '
                          'full batch')
    text = _is_text(config.data)
    width = load_shard(batches.files[0])['input_ids'].shape[1]
    if width > bert_config.max_length or (config.max_seq_length and not text
                                          and width != config.max_seq_length):
        raise ConfigError(f'{batches.files[0]}: examples of {width} tokens; expected '
                          + (f'--max-seq-length {config.max_seq_length} (shards keep the '
                             'length they were made with: omit --max-seq-length, or prepare '
                             'them again)' if width <= bert_config.max_length else
                             f'at most the model\'s {bert_config.max_length} positions'))
    check_ids_fit(batches, len(vocab) if vocab is not None else bert_config.vocab_size)
    return batches


def load_pretraining_data(config, bert_config, rank=0, num_workers=1):
    """The batch stream and vocabulary of a run (raw text is prepared into shards first).

    :func:`check_pretraining_data` first; then raw text is turned into shards under
    ``out_dir/data`` by :func:`~gluonbert.data.pretraining.ensure_prepared`: prepared once,
    reused while the text, the vocabulary and the options are unchanged, rebuilt (with a
    message) otherwise. ``config.max_seq_length`` (default 128) is the examples' length for
    raw text; shards keep the length they were made with, and a different
    ``max_seq_length`` is refused.

    Outputs
    -------
    (PretrainingBatches, gluonnlp.vocab.BERTVocab or None)
    """
    batches, vocab = check_pretraining_data(config, bert_config, rank, num_workers)
    if batches is None:
        batches = prepare_text(config, bert_config, vocab, rank, num_workers)
    return batches, vocab


def prepare_text(config, bert_config, vocab, rank=0, num_workers=1):
    """Raw text into ``out_dir/data`` (rank 0; see :func:`load_pretraining_data`), and its
    checked batch stream."""
    from ..data.pretraining import ensure_prepared
    shards = os.path.join(config.out_dir, 'data')
    if rank == 0:
        ensure_prepared(config.data.split(','), config.vocab, shards, _text_options(config),
                        lower=config.lower, progress=config.progress)
    return _shard_batches(config, shards, bert_config, vocab, rank, num_workers)


def check_ids_fit(batches, vocab_size):
    """Raises :class:`ConfigError` when the first shard holds ids the model cannot embed."""
    from ..data import load_shard
    arrays = load_shard(batches.files[0])
    largest = int(max(arrays['input_ids'].max(), arrays['masked_ids'].max()))
    if largest >= vocab_size:
        raise ConfigError(f'{batches.files[0]} holds token id {largest} but the model has '
                          f'vocab_size={vocab_size}; pass the --vocab the shards were made with')


def pretraining_config(config):
    """The :class:`BERTConfig` of a :class:`PretrainConfig` (``--model`` or ``--config``, with
    its dropout and tying options; the vocabulary size is set from the data later)."""
    if config.model_config:
        from ..model.convert import read_config
        bert_config = read_config(config.model_config)
    else:
        bert_config = get_config(config.model)
    changes = {}
    if config.dropout is not None:
        changes['dropout'] = config.dropout
    if config.untie_embeddings:
        changes['tie_word_embeddings'] = False
    return bert_config.replace(**changes)


def build_pretraining_model(bert_config, contexts):
    """A :class:`BERTModel` with MLM and NSP heads, initialised on ``contexts`` (on gluonbert's
    CPU kernels when they are CPUs), hybridized with static memory (not static shapes: a
    resumed run's first batch may differ in shape)."""
    net = BERTModel(bert_config, use_pooler=True, use_decoder=True, use_classifier=True,
                    kernels=on_cpu(contexts))
    net.initialize(TruncNorm(0.02), ctx=contexts)
    net.hybridize(static_alloc=True)
    return net


class PretrainingSums(HybridBlock):
    """Weighted MLM and NSP cross-entropy sums and their statistics, as one cached graph.

    Hybridized with static memory: the (b, P, V) gradient reuses the same buffers every step
    instead of being allocated (and, for a large vocabulary, page-faulted in) anew. With
    ``kernel`` (CPU) the MLM cross-entropy is gluonbert's ``gluonbert_softmax_ce``
    (:mod:`gluonbert.kernels`), which keeps no (b, P, V) log-probabilities for the
    backward pass and whose row maxima give the accuracy statistic, so no ``argmax`` makes a
    second pass over the (b, P, V) scores; otherwise ``log_softmax``, ``pick`` and ``argmax``.

    Parameters
    ----------
    kernel : bool

    Inputs
    ------
    nsp_scores : (b, 2)
    mlm_scores : (b, P, V)
    masked_ids : (b, P) int
    masked_weights : (b, P)
    nsp_label : (b,) int

    Outputs
    -------
    mlm_sum : (1,)
        ``sum(masked_weights * ce_mlm)``.
    nsp_sum : (1,)
        ``sum(ce_nsp)``.
    stats : (6,)
        Sums named by :data:`PRETRAIN_STATS` (no gradient).
    """

    def __init__(self, kernel=False):
        super().__init__()
        self._kernel = kernel

    def hybrid_forward(self, F, nsp_scores, mlm_scores, masked_ids, masked_weights, nsp_label):
        ids = F.cast(masked_ids, 'float32')
        labels = F.cast(nsp_label, 'float32')
        weights = F.cast(masked_weights, 'float32')
        if self._kernel:
            # No identity before the kernel (unlike LayerNorm's parameters): the scores are
            # the model's output, never a parameter with grad_req='add', and copying the
            # (b, P, V) scores and their gradient costs more than the cross-entropy itself.
            mlm_ce, _, mlm_top = F.gluonbert_softmax_ce(mlm_scores, ids)             # (b, P)
        else:
            mlm_ce = -F.pick(F.log_softmax(mlm_scores, axis=-1), ids, axis=-1)      # (b, P)
            mlm_top = F.argmax(mlm_scores, axis=-1)
        nsp_ce = -F.pick(F.log_softmax(nsp_scores, axis=-1), labels, axis=-1)       # (b,)
        mlm_sum = F.reshape(F.sum(mlm_ce * weights), shape=(1,))
        nsp_sum = F.reshape(F.sum(nsp_ce), shape=(1,))
        mlm_hit = F.broadcast_equal(mlm_top, ids)
        nsp_hit = F.broadcast_equal(F.argmax(nsp_scores, axis=-1), labels)
        sums = [mlm_sum, F.sum(mlm_hit * weights), F.sum(weights), nsp_sum, F.sum(nsp_hit),
                F.sum(F.ones_like(nsp_ce))]
        stats = F.BlockGrad(F.concat(*[F.reshape(x, shape=(1,)) for x in sums], dim=0))
        return mlm_sum, nsp_sum, stats


class PretrainingLoss:
    """Masked-LM plus next-sentence loss, normalised over the whole update.

    ``loss = sum(w * ce_mlm) / totals[0] + sum(ce_nsp) / totals[1]``: the denominators are the
    masked-token weight and the sentence pairs of every micro-batch, device and worker of the
    update, so the shards' gradients add up to the gradient of the update's mean.
    Statistics (:attr:`names`): weighted MLM loss, weighted MLM hits, weight total, NSP loss,
    NSP hits, sentence pairs.
    """
    names = ('mlm_loss_sum', 'mlm_correct', 'mlm_weight', 'nsp_loss_sum', 'nsp_correct',
             'nsp_count')
    count_names = ('masked_weight', 'pairs')

    def __init__(self):
        self._sums = {}           # the hybridized PretrainingSums, with and without the kernel

    def counts(self, batch):
        return [float(batch.masked_weights.sum()), float(len(batch.nsp_label))]

    def _sums_on(self, ctx):
        kernel = ctx.device_type == 'cpu' and kernels.available()
        if kernel not in self._sums:
            self._sums[kernel] = PretrainingSums(kernel)
            self._sums[kernel].hybridize(static_alloc=True)
        return self._sums[kernel]

    def __call__(self, net, batch, totals):
        """``(loss (1,), statistics (6,))`` of one device's shard.

        Parameters
        ----------
        net : BERTModel
            With the MLM and NSP heads.
        batch : PretrainingBatch
            NDArrays on one device: ``input_ids``, ``segment_ids`` (b, T), ``valid_length``
            (b,), ``masked_positions``, ``masked_ids`` (b, P) int32, ``masked_weights`` (b, P)
            float32 (0 for padding), ``nsp_label`` (b,) (0 IsNext, 1 NotNext).
        totals : (2,) array
            The update's masked-token weight and sentence pairs (:meth:`counts` summed).
        """
        outputs = net(batch.input_ids, batch.segment_ids, batch.valid_length,
                      batch.masked_positions)
        nsp_scores, mlm_scores = outputs[-2], outputs[-1]
        mlm_sum, nsp_sum, stats = self._sums_on(mlm_scores.context)(
            nsp_scores, mlm_scores, batch.masked_ids, batch.masked_weights, batch.nsp_label)
        loss = mlm_sum / max(float(totals[0]), 1.0) + nsp_sum / max(float(totals[1]), 1.0)
        return loss, stats

    def metrics(self, sums):
        mlm_w, nsp_n = max(sums['mlm_weight'], 1e-12), max(sums['nsp_count'], 1)
        return {'mlm_loss': sums['mlm_loss_sum'] / mlm_w, 'mlm_acc': sums['mlm_correct'] / mlm_w,
                'nsp_loss': sums['nsp_loss_sum'] / nsp_n, 'nsp_acc': sums['nsp_correct'] / nsp_n}


class PretrainingUpdates:
    """The updates of a pretraining run: ``accumulate`` batches of this worker's endless
    stream each (epochs follow one another), ``total_updates`` of them; resumable.

    Parameters
    ----------
    batches : PretrainingBatches
    accumulate : int
    total_updates : int
    """
    unit = 'pairs'

    def __init__(self, batches, accumulate, total_updates):
        self.batches, self.accumulate = batches, accumulate
        self.total_updates = total_updates
        self.updates = 0
        self._stream = None

    def _forever(self):
        while True:
            yield from self.batches

    def next_update(self):
        if self._stream is None:
            self._stream = self._forever()
        self.updates += 1
        return Update([next(self._stream) for _ in range(self.accumulate)])

    def state_dict(self):
        return {'updates': self.updates, **self.batches.state_dict()}

    def load_state_dict(self, state):
        """Continues after ``state['updates']``; ``state`` is rank 0's (only rank 0 saves):
        another rank, which read as many batches, finds its own position from the count."""
        self.updates, self._stream = state['updates'], None
        if self.batches.rank == state.get('rank', 0):
            self.batches.load_state_dict(state)
        else:
            self.batches.seek(self.updates * self.accumulate)


class PretrainingTask(Task):
    """Masked LM + next sentence prediction on :class:`~gluonbert.data.PretrainingBatches`."""
    name = 'pretrain'

    def __init__(self, config):
        self.config = config
        self.loss = PretrainingLoss()

    def __str__(self):
        return (f'{self.net.config} from {self.batches.batches.num_examples} examples, batch '
                f'{self.config.batch_size} x {self.config.optimizer.accumulate}')

    def check(self, engine):
        self.bert_config = pretraining_config(self.config)
        self._checked = check_pretraining_data(self.config, self.bert_config,
                                               engine.cluster.rank, engine.cluster.num_workers)

    def build(self, engine):
        config = self.config
        if not hasattr(self, '_checked'):
            self.check(engine)
        batches, self.vocab = self._checked
        bert_config = self.bert_config
        if batches is None:                 # raw text: prepared (or reused) now
            batches = prepare_text(config, bert_config, self.vocab, engine.cluster.rank,
                                   engine.cluster.num_workers)
        self.batches = PretrainingUpdates(batches, config.optimizer.accumulate, config.num_steps)
        if self.vocab is not None:
            bert_config = bert_config.replace(vocab_size=len(self.vocab))
        self.net = build_pretraining_model(bert_config, engine.contexts)
        if engine.cluster.is_main:  # beside the checkpoints: fine-tuning can start from them
            _write_run_files(engine.out_dir, bert_config, self.vocab, config.lower)
        return self.net

    def finish(self, net, engine, summary):
        out = engine.out_dir
        if engine.cluster.is_main:
            net.save_parameters(os.path.join(out, 'model.params'))
            summary['plot'] = plot_curves(summary['history'], os.path.join(out, 'loss_curve.png'),
                                          ('mlm_loss', 'nsp_loss', 'mlm_acc', 'nsp_acc'),
                                          title=f'pretraining {self.config.model}')
            with atomic_write(os.path.join(out, 'summary.json')) as f:
                json.dump({k: v for k, v in summary.items() if k != 'history'}, f, indent=2)
        return summary


def pretrain(config):
    """Runs (or resumes) a pretraining run on the training engine.

    Parameters
    ----------
    config : PretrainConfig

    Outputs
    -------
    dict
        Summary: ``first`` and ``last`` logged records, ``steps``, ``seconds``, ``history``
        and the output paths (see :func:`gluonbert.train.engine.train`).
    """
    return train(PretrainingTask(config), config)


def _write_run_files(out, bert_config, vocab, lower):
    """Config, vocabulary and casing beside the checkpoints: fine-tuning starts from them."""
    with atomic_write(os.path.join(out, CONFIG_FILE), newline='\n') as f:
        json.dump(bert_config.to_dict(), f, indent=2)
    with atomic_write(os.path.join(out, 'tokenizer_config.json'), newline='\n') as f:
        json.dump({'do_lower_case': bool(lower)}, f)
    if vocab is not None:
        from ..data import write_hf_vocab_txt
        write_hf_vocab_txt(vocab, os.path.join(out, 'vocab.txt'))
