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

from ..model.optimize import optimize
from ..data.fileio import atomic_write
from ..errors import ConfigError
from ..model import BERTModel, get_config
from ..model.convert import CONFIG_FILE
from ..model.init import TruncNorm
from .engine import Task, Update, train
from .losses import PRETRAIN_STATS, pretraining_counts, pretraining_loss
from .plot import plot_curves

__all__ = ['pretrain', 'PretrainingTask', 'load_pretraining_data', 'build_pretraining_model']


def _is_text(data):
    return all(p.endswith('.txt') or p.endswith('.raw') for p in data.split(','))


def load_pretraining_data(config, rank=0, num_workers=1):
    """The batch stream and vocabulary of a run (raw text is prepared into shards first).

    Raw text is turned into shards under ``out_dir/data`` by
    :func:`~gluonbert.data.pretraining.ensure_prepared`: prepared once, reused while the
    text, the vocabulary and the options are unchanged, rebuilt (with a message) otherwise.

    Outputs
    -------
    (PretrainingBatches, gluonnlp.vocab.BERTVocab or None)
    """
    from ..data import Masker, PretrainingBatches, PretrainingDataConfig, load_vocab
    from ..data.pretraining import MANIFEST_NAME, ensure_prepared
    vocab = load_vocab(config.vocab) if config.vocab else None
    shards = config.data
    if vocab is None and os.path.isfile(os.path.join(shards, MANIFEST_NAME)):
        with open(os.path.join(shards, MANIFEST_NAME), encoding='utf-8') as f:
            recorded = json.load(f).get('vocab')       # the vocabulary the shards were made with
        if recorded and os.path.exists(recorded):
            vocab = load_vocab(recorded)
    if _is_text(config.data):
        if vocab is None:
            raise ConfigError(f'pretraining on raw text {config.data}: pass --vocab (a '
                              'vocab.txt, GluonNLP .vocab or HuggingFace model directory)')
        shards = os.path.join(config.out_dir, 'data')
        data_config = PretrainingDataConfig(
            max_seq_length=config.max_seq_length, seed=config.seed,
            max_predictions_per_seq=config.max_predictions_per_seq)
        if rank == 0:
            prepared = ensure_prepared(config.data.split(','), config.vocab, shards,
                                       data_config, lower=config.lower,
                                       progress=config.progress)
            resuming = config.resume or config.resume_if_possible
            checkpoints = os.path.join(config.out_dir, 'checkpoints')
            if prepared['action'] == 'rebuilt' and resuming and os.path.isdir(checkpoints) \
                    and os.listdir(checkpoints):
                raise ConfigError(f'{shards}: rebuilt because {"; ".join(prepared["reasons"])}; '
                                  f'the checkpoints in {checkpoints} were trained on the old '
                                  'data, so the run cannot resume. Use --overwrite to start '
                                  'again on the new data, or restore the old input')
        elif not os.path.isfile(os.path.join(shards, MANIFEST_NAME)):
            raise ConfigError(f'{os.path.join(shards, MANIFEST_NAME)}: not found; with several '
                              'workers, prepare the shards first (gluonbert '
                              'prepare-pretraining) and pass them')
    masker = None
    if config.dynamic_masking and vocab is not None:
        masker = Masker.from_vocab(vocab, max_predictions_per_seq=config.max_predictions_per_seq)
    batches = PretrainingBatches(shards, config.batch_size, rank=rank, num_workers=num_workers,
                                 shuffle=True, seed=config.seed, drop_last=True, masker=masker)
    if len(batches) == 0:
        raise ConfigError(f'{config.data}: {batches.num_examples} examples for this worker, '
                          f'fewer than batch_size={config.batch_size}; expected at least one '
                          'full batch')
    return batches, vocab


def check_ids_fit(batches, vocab_size):
    """Raises :class:`ConfigError` when the first shard holds ids the model cannot embed."""
    from ..data import load_shard
    arrays = load_shard(batches.files[0])
    largest = int(max(arrays['input_ids'].max(), arrays['masked_ids'].max()))
    if largest >= vocab_size:
        raise ConfigError(f'{batches.files[0]} holds token id {largest} but the model has '
                          f'vocab_size={vocab_size}; pass the --vocab the shards were made with')


def build_pretraining_model(config, vocab_size, contexts):
    """A :class:`BERTModel` with MLM and NSP heads, initialised on ``contexts``."""
    if config.model_config:
        from ..model.convert import read_config
        bert_config = read_config(config.model_config)
    else:
        bert_config = get_config(config.model)
    changes = {'vocab_size': vocab_size} if vocab_size else {}
    if config.dropout is not None:
        changes['dropout'] = config.dropout
    if config.untie_embeddings:
        changes['tie_word_embeddings'] = False
    bert_config = bert_config.replace(**changes)
    net = BERTModel(bert_config, use_pooler=True, use_decoder=True, use_classifier=True)
    net.initialize(TruncNorm(0.02), ctx=contexts)
    # gluonbert's CPU kernels and static memory. Not static_shape: the last batch of an
    # epoch (and a resumed run's first) may differ in shape.
    optimize(net, training=True, static_shape=False)
    return net


class PretrainingTask(Task):
    """Masked LM + next sentence prediction on :class:`~gluonbert.data.PretrainingBatches`.

    An update is ``accumulate`` batches of the worker's endless stream (epochs follow one
    another); the loss is normalised by the masked-token weight and the sentence pairs of the
    whole update over every worker (:func:`~gluonbert.train.losses.pretraining_counts`).
    """
    name = 'pretrain'
    stats = PRETRAIN_STATS
    num_counts = 2
    unit = 'pairs'

    def __init__(self, config):
        self.config = config
        self.total_steps = config.num_steps

    def _forever(self):
        while True:
            yield from self.batches

    def describe(self):
        return (f'{self.net.config} from {self.batches.num_examples} examples, batch '
                f'{self.config.batch_size} x {self.config.optimizer.accumulate}')

    def build(self, run):
        self.batches, self.vocab = load_pretraining_data(self.config, run.cluster.rank,
                                                         run.cluster.num_workers)
        self._stream = self._forever()
        vocab_size = len(self.vocab) if self.vocab is not None else None
        self.net = build_pretraining_model(self.config, vocab_size, run.contexts)
        check_ids_fit(self.batches, self.net.config.vocab_size)
        if run.cluster.is_main:     # beside the checkpoints: fine-tuning can start from them
            _write_run_files(run.out_dir, self.net.config, self.vocab, self.config.lower)
        return self.net

    def next_update(self):
        return Update([next(self._stream) for _ in range(self.config.optimizer.accumulate)])

    counts = staticmethod(pretraining_counts)

    def loss(self, net, *shard_and_totals):
        return pretraining_loss(net, *shard_and_totals)

    def metrics(self, sums):
        mlm_w, nsp_n = max(sums['mlm_weight'], 1e-12), max(sums['nsp_count'], 1)
        return {'mlm_loss': sums['mlm_loss_sum'] / mlm_w, 'mlm_acc': sums['mlm_correct'] / mlm_w,
                'nsp_loss': sums['nsp_loss_sum'] / nsp_n, 'nsp_acc': sums['nsp_correct'] / nsp_n}

    def data_state(self):
        return self.batches.state_dict()

    def load_data_state(self, state, rank, step):
        if rank == state.get('rank', 0):
            self.batches.load_state_dict(state)
        else:   # rank 0 saved its own position; every rank read as many batches
            self.batches.seek(step * self.config.optimizer.accumulate)

    def finish(self, net, run, summary):
        if run.cluster.is_main:
            net.save_parameters(os.path.join(run.out_dir, 'model.params'))
            summary['plot'] = plot_curves(summary['history'],
                                          os.path.join(run.out_dir, 'loss_curve.png'),
                                          ('mlm_loss', 'nsp_loss', 'mlm_acc', 'nsp_acc'),
                                          title=f'pretraining {self.config.model}')
            with atomic_write(os.path.join(run.out_dir, 'summary.json')) as f:
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
