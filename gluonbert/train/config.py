"""Configuration of training runs as small dataclasses (no MXNet import here).

:class:`RunConfig` holds what the training engine (:mod:`gluonbert.train.engine`) reads for
every task: output directory, seed, logging and checkpoint intervals, resume/overwrite, the
optimiser and the devices. :class:`PretrainConfig` and :class:`FinetuneConfig` extend it with
their task's data and model, so a flag such as ``--checkpoint-interval`` means the same for
both. Each validates its values when built and raises
:class:`~gluonbert.errors.ConfigError` naming the field, the value and what was expected.
All fields are keyword-only.
"""
import dataclasses
from typing import Optional

from ..errors import ConfigError

__all__ = ['OptimizerConfig', 'DeviceConfig', 'RunConfig', 'PretrainConfig', 'FinetuneConfig']

OPTIMIZERS = ('bertadam', 'adamw', 'lamb')
#: The model-zoo dataset of ``FinetuneConfig.model`` when none is given (as GluonNLP's scripts).
DEFAULT_DATASET = 'book_corpus_wiki_en_uncased'


def _check(ok, owner, name, value, expected):
    if not ok:
        raise ConfigError(f'{owner}.{name}={value!r}: expected {expected}', field=name,
                          value=value, expected=expected)


@dataclasses.dataclass
class OptimizerConfig:
    """Optimiser settings shared by pretraining and fine-tuning.

    Parameters
    ----------
    name : {'bertadam', 'adamw', 'lamb'}
        ``bertadam``: Adam with decoupled weight decay and no bias correction (BERT's
        ``AdamWeightDecay``, GluonNLP's ``bertadam``; the pretraining default). ``adamw``: the
        same with bias-corrected moments (``torch.optim.AdamW``; the fine-tuning default, see
        ``docs/finetuning.md``). ``lamb``: MXNet's LAMB (layer-wise adaptive rates, large
        batches).
    lr : float
        Peak learning rate, reached at the end of the warm-up.
    weight_decay : float
        Decoupled weight decay of weight matrices and embeddings (not biases, not LayerNorm).
    warmup_ratio : float
        Fraction of the updates spent warming up linearly from 0 to ``lr``; the rate then
        decays linearly to 0 at the last update.
    max_grad_norm : float
        Clip the global L2 norm of the gradient to this value (0: no clipping).
    accumulate : int
        Micro-batches whose gradients add up before one update.
    beta1, beta2, epsilon : float
        Adam moments' decay rates and denominator epsilon.
    """
    name: str = 'bertadam'
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    accumulate: int = 1
    beta1: float = 0.9
    beta2: float = 0.999
    epsilon: float = 1e-6

    def __post_init__(self):
        o = 'OptimizerConfig'
        _check(self.name in OPTIMIZERS, o, 'name', self.name, f'one of {list(OPTIMIZERS)}')
        _check(self.lr > 0, o, 'lr', self.lr, 'a positive learning rate')
        _check(0.0 <= self.warmup_ratio <= 1.0, o, 'warmup_ratio', self.warmup_ratio,
               '0 <= ratio <= 1')
        _check(self.weight_decay >= 0, o, 'weight_decay', self.weight_decay, '>= 0')
        _check(self.max_grad_norm >= 0, o, 'max_grad_norm', self.max_grad_norm, '>= 0')
        _check(isinstance(self.accumulate, int) and self.accumulate >= 1, o, 'accumulate',
               self.accumulate, 'an integer >= 1')


@dataclasses.dataclass
class DeviceConfig:
    """Where to train.

    Parameters
    ----------
    gpus : str or None
        Comma-separated GPU ids (``'0,1'``).
    cpus : int or None
        Number of CPU contexts (default: one CPU context when neither is given).
    kvstore : str
        ``'device'`` or ``'local'`` on one host; a ``dist_*`` type for several hosts.
    dtype : {'float32', 'float16'}
        float16 uses MXNet AMP with dynamic loss scaling (GPU only).
    comm_backend : {'kvstore', 'horovod'}
        How workers of a multi-process job exchange gradients: MXNet's kvstore (``kvstore``
        a ``dist_*`` type, processes started by ``gluonbert launch``) or Horovod (processes
        started by ``horovodrun``, one device each).
    """
    gpus: Optional[str] = None
    cpus: Optional[int] = None
    kvstore: str = 'device'
    dtype: str = 'float32'
    comm_backend: str = 'kvstore'

    def __post_init__(self):
        _check(self.dtype in ('float32', 'float16'), 'DeviceConfig', 'dtype', self.dtype,
               "'float32' or 'float16'")
        _check(self.comm_backend in ('kvstore', 'horovod'), 'DeviceConfig', 'comm_backend',
               self.comm_backend, "'kvstore' or 'horovod'")


@dataclasses.dataclass(kw_only=True)
class RunConfig:
    """What the training engine reads, the same for every task.

    Parameters
    ----------
    out_dir : str
        The run's directory: ``run.json``, ``train.log``, ``checkpoints/``, outputs. It belongs
        to one run: a new run into a directory holding another run's files is refused unless
        ``resume`` or ``overwrite``.
    seed : int
        Seeds Python, numpy and MXNet (data order, initialisation, dropout).
    log_interval : int
        Updates between log lines.
    checkpoint_interval : int
        Updates between checkpoints (a checkpoint is also written at the end of the run, at the
        end of every fine-tuning epoch and when the run is stopped by SIGINT/SIGTERM).
    keep_checkpoints : int
        Newest checkpoints kept.
    resume : bool
        Continue from the newest valid checkpoint in ``out_dir/checkpoints``; an error when
        there is none, unless ``resume_if_possible``.
    resume_if_possible : bool
        Continue from a checkpoint when there is one, otherwise start afresh (replacing the
        files of a run that never wrote a checkpoint). For jobs restarted by a scheduler.
    overwrite : bool
        Delete the previous run's checkpoints and outputs in ``out_dir`` first.
    change_length : bool
        With ``resume``: allow another length (``num_steps``, ``epochs``) than the run was
        started with, not below the updates it has made; the learning-rate schedule is then
        recomputed over the new length (the start says how the rate changes). Every other
        option that defines the run must be the one in ``run.json``.
    stop_at_step : int or None
        End this invocation after that update, with a checkpoint (the schedule still spans
        the whole run; continue with ``resume``). For time-sliced jobs and tests.
    save_all_ranks : bool
        Every worker of a multi-process job also writes ``model.rank<R>.params`` at the end,
        to check that the workers agree.
    progress : bool
        Show the console progress bar.
    optimizer : OptimizerConfig
    devices : DeviceConfig
    """
    out_dir: str = 'runs/train'
    seed: int = 0
    log_interval: int = 10
    checkpoint_interval: int = 200
    keep_checkpoints: int = 3
    resume: bool = False
    resume_if_possible: bool = False
    overwrite: bool = False
    change_length: bool = False
    stop_at_step: Optional[int] = None
    save_all_ranks: bool = False
    progress: bool = True
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    devices: DeviceConfig = dataclasses.field(default_factory=DeviceConfig)

    def __post_init__(self):
        r = type(self).__name__
        for name in ('log_interval', 'checkpoint_interval', 'keep_checkpoints'):
            value = getattr(self, name)
            _check(isinstance(value, int) and value >= 1, r, name, value, 'an integer >= 1')
        _check(not (self.overwrite and (self.resume or self.resume_if_possible)), r,
               'overwrite', self.overwrite, 'not together with resume (one or the other)')
        _check(self.stop_at_step is None or (isinstance(self.stop_at_step, int)
                                             and self.stop_at_step >= 1), r, 'stop_at_step',
               self.stop_at_step, 'None or an integer >= 1')
        _check(not self.change_length or self.resume or self.resume_if_possible, r,
               'change_length', self.change_length, 'only with resume or resume_if_possible')


@dataclasses.dataclass(kw_only=True)
class PretrainConfig(RunConfig):
    """A pretraining run (masked LM + next sentence prediction).

    Parameters
    ----------
    data : str
        A directory of ``.npz`` shards (or comma-separated shard files), or raw text file(s)
        (comma-separated ``.txt``), which are turned into shards under ``out_dir/data``.
    out_dir : str
        Run directory (default ``runs/pretrain``): ``train.log``, ``checkpoints/``,
        ``model.params``, ``loss_curve.png``.
    model : str
        Named BERT configuration (``bert_2_128_2``, ``bert_tiny_test``, ...).
    model_config : str or None
        A JSON file (gluonbert BERTConfig fields, or a HuggingFace ``config.json``) used
        instead of ``model``.
    vocab : str or None
        Vocabulary (``vocab.txt``, GluonNLP ``.vocab`` or HF model directory). Needed for raw
        text and for dynamic masking; ``vocab_size`` of the model is set from it.
    lower : bool
        Lower-case raw text (uncased vocabularies).
    max_seq_length : int or None
        Example length of raw text (None: 128). Shards keep the length they were made with:
        for shard input leave it None, or give that length (another is refused).
    max_predictions_per_seq : int
        MLM predictions per example (raw text preparation, dynamic masking).
    dynamic_masking : bool
        Re-draw MLM masks for every batch (needs ``vocab``).
    batch_size : int
        Sentence pairs per micro-batch on this worker, split over its devices.
    num_steps : int
        Optimiser updates in the whole run.
    dropout : float or None
        Overrides the configuration's dropout.
    untie_embeddings : bool
        Give the masked-LM output layer a weight of its own
        (``BERTConfig.tie_word_embeddings=False``).

    The engine's settings (seed, intervals, resume, optimizer, devices) are
    :class:`RunConfig`'s.
    """
    data: str
    out_dir: str = 'runs/pretrain'
    model: str = 'bert_2_128_2'
    model_config: Optional[str] = None
    vocab: Optional[str] = None
    lower: bool = True
    max_seq_length: Optional[int] = None
    max_predictions_per_seq: int = 20
    dynamic_masking: bool = True
    batch_size: int = 64
    num_steps: int = 1000
    dropout: Optional[float] = None
    untie_embeddings: bool = False

    def __post_init__(self):
        super().__post_init__()
        p = 'PretrainConfig'
        for name in ('batch_size', 'num_steps', 'max_predictions_per_seq'):
            value = getattr(self, name)
            _check(isinstance(value, int) and value >= 1, p, name, value, 'an integer >= 1')
        _check(self.max_seq_length is None or (isinstance(self.max_seq_length, int)
                                               and self.max_seq_length >= 5), p,
               'max_seq_length', self.max_seq_length, 'None or an integer >= 5')
        _check(self.stop_at_step is None or 1 <= self.stop_at_step <= self.num_steps, p,
               'stop_at_step', self.stop_at_step, f'None or 1..num_steps={self.num_steps}')


@dataclasses.dataclass(kw_only=True)
class FinetuneConfig(RunConfig):
    """A sentence-pair classification fine-tuning run (MRPC or a GLUE-format TSV task).

    Exactly one starting point: ``model`` + ``dataset`` (GluonNLP model zoo), ``hf_dir`` (a
    HuggingFace directory, converted into ``cache_dir``), ``from_converted`` (a directory
    written by ``gluonbert convert``), or ``pretrained_checkpoint`` (a gluonbert pretraining
    run directory or one of its ``step-*`` checkpoints).

    Parameters
    ----------
    data_dir : str or None
        MRPC files (GLUE ``train.tsv``/``dev.tsv`` or ``msr_paraphrase_train.txt``, split by
        ``load_mrpc``); None: the sample in ``data/paraphrase_sample``.
    text_a, text_b, label_column : str or None
        Columns (header names) of a non-MRPC GLUE-format task; None for MRPC.
    labels : str or None
        Comma-separated class labels of a non-MRPC task (default ``'0,1'``).
    out_dir : str
    model, dataset, hf_dir, from_converted, pretrained_checkpoint, cache_dir : str or None
        Starting point (see above); ``dataset`` defaults to ``book_corpus_wiki_en_uncased``
        with ``model`` (as GluonNLP's ``--bert_dataset``), ``cache_dir`` to
        ``out_dir/converted``. ``from_converted`` and ``pretrained_checkpoint`` take any
        directory :func:`gluonbert.model.pretrained.locate` reads.
    max_seq_length, batch_size, epochs : int
    eval_batch_size : int
    dropout : float
        Dropout inside BERT and before the classifier.
    early_stop : int or None
        Stop after this many epochs without a better dev accuracy.
    dev_fraction, split_seed : float, int
        Dev share (0 < fraction < 1: the best epoch is chosen on the dev set) and seed of the
        split when only the MSR training file is there.

    The engine's settings are :class:`RunConfig`'s (defaults here: ``out_dir``
    ``runs/finetune``, ``seed`` 2, the bias-corrected ``adamw`` at learning rate 5e-5 with 10%
    warm-up (it never collapsed to the majority class in the seed sweep of
    ``docs/finetuning.md``, and its worst seed was the better one), a checkpoint every 100
    updates and at the end of every epoch).
    """
    data_dir: Optional[str] = None
    text_a: Optional[str] = None
    text_b: Optional[str] = None
    label_column: Optional[str] = None
    labels: Optional[str] = None
    out_dir: str = 'runs/finetune'
    model: Optional[str] = None
    dataset: Optional[str] = None
    hf_dir: Optional[str] = None
    from_converted: Optional[str] = None
    pretrained_checkpoint: Optional[str] = None
    cache_dir: Optional[str] = None
    max_seq_length: int = 128
    batch_size: int = 32
    eval_batch_size: int = 64
    epochs: int = 3
    dropout: float = 0.1
    early_stop: Optional[int] = None
    dev_fraction: float = 0.1
    split_seed: int = 0
    seed: int = 2
    checkpoint_interval: int = 100
    optimizer: OptimizerConfig = dataclasses.field(
        default_factory=lambda: OptimizerConfig(name='adamw', lr=5e-5, warmup_ratio=0.1))

    def __post_init__(self):
        super().__post_init__()
        f = 'FinetuneConfig'
        for name in ('max_seq_length', 'batch_size', 'eval_batch_size', 'epochs'):
            value = getattr(self, name)
            _check(isinstance(value, int) and value >= 1, f, name, value, 'an integer >= 1')
        _check(0.0 <= self.dropout < 1.0, f, 'dropout', self.dropout, '0 <= dropout < 1')
        _check(self.early_stop is None or self.early_stop >= 1, f, 'early_stop',
               self.early_stop, 'None or an integer >= 1')
        # The best epoch is chosen on the dev set: a split without one cannot be fine-tuned.
        _check(0.0 < self.dev_fraction < 1.0, f, 'dev_fraction', self.dev_fraction,
               '0 < fraction < 1 (fine-tuning keeps the epoch with the best dev accuracy, so '
               'it needs a dev set)')
        sources = [n for n in ('model', 'hf_dir', 'from_converted', 'pretrained_checkpoint')
                   if getattr(self, n)]
        _check(len(sources) <= 1, f, 'model/hf_dir/from_converted/pretrained_checkpoint',
               sources, 'exactly one starting point')
        if self.model and not self.dataset:         # GluonNLP's --bert_dataset default
            self.dataset = DEFAULT_DATASET
        _check(not self.dataset or self.model, f, 'dataset', self.dataset,
               'it only with a model-zoo model (model, --model)')
