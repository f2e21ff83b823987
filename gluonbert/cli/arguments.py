"""Command-line arguments of ``pretrain``, ``finetune``, ``predict`` and ``demo``, and their
conversion into the config dataclasses. Imports no MXNet, so ``gluonbert --help`` stays fast.
"""
from ..train.config import (OPTIMIZERS, DeviceConfig, FinetuneConfig, OptimizerConfig,
                            PretrainConfig)

__all__ = ['add_pretrain_arguments', 'pretrain_config', 'add_finetune_arguments',
           'finetune_config', 'add_predict_arguments', 'add_device_arguments',
           'device_config']


def add_device_arguments(parser):
    group = parser.add_argument_group('devices')
    group.add_argument('--gpus', default=None,
                       help="GPU ids, e.g. '0,1'; with --comm-backend horovod one id per process "
                            'of the host (local rank r takes the r-th)')
    group.add_argument('--cpus', type=int, default=None,
                       help='number of CPU contexts (data parallel over cores); default 1')
    group.add_argument('--kvstore', default='device',
                       help="gradient reduction: 'device' or 'local' (dist_* for several hosts)")
    group.add_argument('--dtype', default='float32', choices=('float32', 'float16'),
                       help='float16: AMP with dynamic loss scaling (GPU only)')
    group.add_argument('--comm-backend', default='kvstore', choices=('kvstore', 'horovod'),
                       help="multi-process gradient exchange: MXNet's kvstore (--kvstore "
                            "dist_sync, started by gluonbert launch) or horovod (horovodrun)")


def device_config(args):
    return DeviceConfig(gpus=args.gpus, cpus=args.cpus, kvstore=args.kvstore, dtype=args.dtype,
                        comm_backend=args.comm_backend)


def _add_optimizer_arguments(parser, defaults):
    group = parser.add_argument_group('optimisation')
    group.add_argument('--optimizer', default=defaults.name, choices=OPTIMIZERS,
                       help='bertadam: no bias correction (GluonNLP, BERT); adamw: bias-'
                            'corrected (torch AdamW); lamb (default: %(default)s)')
    group.add_argument('--lr', type=float, default=defaults.lr, help='peak learning rate')
    group.add_argument('--weight-decay', type=float, default=defaults.weight_decay)
    group.add_argument('--warmup-ratio', type=float, default=defaults.warmup_ratio,
                       help='fraction of updates with linear warm-up (then linear decay)')
    group.add_argument('--max-grad-norm', type=float, default=defaults.max_grad_norm,
                       help='global gradient-norm clipping (0: off)')
    group.add_argument('--accumulate', type=int, default=defaults.accumulate,
                       help='micro-batches per update (gradient accumulation)')


def _optimizer_config(args):
    return OptimizerConfig(name=args.optimizer, lr=args.lr, weight_decay=args.weight_decay,
                           warmup_ratio=args.warmup_ratio, max_grad_norm=args.max_grad_norm,
                           accumulate=args.accumulate)


def _add_run_arguments(parser, defaults):
    """The engine's flags: the same names and meaning for every task."""
    group = parser.add_argument_group('run (the training engine)')
    group.add_argument('--out-dir', default=defaults.out_dir,
                       help='run directory (one run per directory)')
    group.add_argument('--seed', type=int, default=defaults.seed)
    group.add_argument('--log-interval', type=int, default=defaults.log_interval,
                       help='updates between log lines')
    group.add_argument('--checkpoint-interval', type=int, default=defaults.checkpoint_interval,
                       help='updates between checkpoints (also at the end, at the end of a '
                            'fine-tuning epoch, and on SIGINT/SIGTERM)')
    group.add_argument('--keep-checkpoints', type=int, default=defaults.keep_checkpoints)
    resume = group.add_mutually_exclusive_group()
    resume.add_argument('--resume', action='store_true',
                        help='continue from the newest valid checkpoint in OUT_DIR (an error '
                             'when there is none)')
    resume.add_argument('--resume-if-possible', action='store_true',
                        help='continue when OUT_DIR has a checkpoint, start afresh otherwise')
    resume.add_argument('--overwrite', action='store_true',
                        help="delete the previous run's checkpoints and outputs in OUT_DIR")
    group.add_argument('--change-length', action='store_true',
                       help='with --resume: allow another --num-steps/--epochs than the run was '
                            'started with (the learning-rate schedule is recomputed over the '
                            'new length); every other option must be the run\'s own')
    group.add_argument('--stop-at-step', type=int, default=None,
                       help='end this invocation after that update (resume later)')
    group.add_argument('--save-all-ranks', action='store_true',
                       help='every worker also writes model.rank<R>.params at the end '
                            '(to check that the workers of a multi-process job agree)')
    group.add_argument('--no-progress', action='store_true', help='no console progress bar')
    _add_optimizer_arguments(parser, defaults.optimizer)
    add_device_arguments(parser)


def _run_config_values(args):
    return dict(out_dir=args.out_dir, seed=args.seed, log_interval=args.log_interval,
                checkpoint_interval=args.checkpoint_interval,
                keep_checkpoints=args.keep_checkpoints, resume=args.resume,
                resume_if_possible=args.resume_if_possible, overwrite=args.overwrite,
                change_length=args.change_length,
                stop_at_step=args.stop_at_step, save_all_ranks=args.save_all_ranks,
                progress=not args.no_progress, optimizer=_optimizer_config(args),
                devices=device_config(args))


def add_pretrain_arguments(parser):
    d = PretrainConfig(data='')
    parser.add_argument('--data', required=True,
                        help='directory of .npz shards (or comma-separated shards), or raw '
                             'text file(s) ending in .txt')
    parser.add_argument('--model', default=d.model, help='named BERT configuration')
    parser.add_argument('--config', dest='model_config', default=None,
                        help='BERTConfig JSON (or HF config.json) instead of --model')
    parser.add_argument('--vocab', default=None,
                        help='vocabulary (vocab.txt, .vocab JSON, HF model dir): needed for '
                             'raw text and dynamic masking')
    parser.add_argument('--cased', action='store_true', help='do not lower-case raw text')
    parser.add_argument('--max-seq-length', type=int, default=None,
                        help='example length for raw text (default 128); shards keep their own')
    parser.add_argument('--max-predictions-per-seq', type=int, default=d.max_predictions_per_seq,
                        help='masked-LM predictions per sequence at most')
    parser.add_argument('--static-masking', action='store_true',
                        help='keep the masks stored in the shards')
    parser.add_argument('--batch-size', type=int, default=d.batch_size,
                        help='sentence pairs per micro-batch (all devices of this worker)')
    parser.add_argument('--num-steps', type=int, default=d.num_steps)
    parser.add_argument('--dropout', type=float, default=None)
    parser.add_argument('--untie-embeddings', action='store_true',
                        help='the masked-LM output layer gets a weight of its own instead of '
                             'sharing the word embedding (tie_word_embeddings=false)')
    _add_run_arguments(parser, d)


def pretrain_config(args):
    return PretrainConfig(
        data=args.data, model=args.model, model_config=args.model_config,
        vocab=args.vocab, lower=not args.cased, max_seq_length=args.max_seq_length,
        max_predictions_per_seq=args.max_predictions_per_seq,
        dynamic_masking=not args.static_masking,
        batch_size=args.batch_size, num_steps=args.num_steps, dropout=args.dropout,
        untie_embeddings=args.untie_embeddings, **_run_config_values(args))


def add_finetune_arguments(parser):
    d = FinetuneConfig()
    source = parser.add_argument_group('starting point (one of)')
    source.add_argument('--model', default=None, help='model-zoo name, e.g. bert_12_768_12')
    source.add_argument('--dataset', default=None,
                        help='model-zoo dataset of --model (default with --model: '
                             'book_corpus_wiki_en_uncased, as GluonNLP)')
    source.add_argument('--hf-dir', default=None,
                        help='HuggingFace BERT directory (converted once into --cache-dir)')
    source.add_argument('--cache-dir', default=None, help='default OUT_DIR/converted')
    source.add_argument('--from-converted', default=None,
                        help='directory written by gluonbert convert')
    source.add_argument('--pretrained-checkpoint', default=None,
                        help='gluonbert pretraining (or fine-tuning) run directory or one of '
                             'its step-* checkpoints')
    data = parser.add_argument_group('data')
    data.add_argument('--data-dir', default=None,
                      help='MRPC (GLUE train/dev.tsv or msr_paraphrase_train.txt) or a GLUE-'
                           'format task; default: data/paraphrase_sample')
    data.add_argument('--text-a', default=None, help='custom task: header of the first text')
    data.add_argument('--text-b', default=None, help='custom task: header of the second text')
    data.add_argument('--label-column', default=None, help='custom task: header of the label')
    data.add_argument('--labels', default=None, help="custom task: labels, e.g. '0,1'")
    data.add_argument('--dev-fraction', type=float, default=d.dev_fraction)
    data.add_argument('--split-seed', type=int, default=d.split_seed)
    data.add_argument('--max-seq-length', type=int, default=d.max_seq_length)
    parser.add_argument('--batch-size', type=int, default=d.batch_size,
                        help='sentences per micro-batch on this worker, split over its devices')
    parser.add_argument('--eval-batch-size', type=int, default=d.eval_batch_size)
    parser.add_argument('--epochs', type=int, default=d.epochs)
    parser.add_argument('--dropout', type=float, default=d.dropout)
    parser.add_argument('--early-stop', type=int, default=None,
                        help='stop after N epochs without a better dev accuracy')
    _add_run_arguments(parser, d)


def finetune_config(args):
    return FinetuneConfig(
        data_dir=args.data_dir, text_a=args.text_a, text_b=args.text_b,
        label_column=args.label_column, labels=args.labels, model=args.model,
        dataset=args.dataset, hf_dir=args.hf_dir,
        from_converted=args.from_converted, pretrained_checkpoint=args.pretrained_checkpoint,
        cache_dir=args.cache_dir, max_seq_length=args.max_seq_length,
        batch_size=args.batch_size, eval_batch_size=args.eval_batch_size, epochs=args.epochs,
        dropout=args.dropout, early_stop=args.early_stop, dev_fraction=args.dev_fraction,
        split_seed=args.split_seed, **_run_config_values(args))


def add_predict_arguments(parser):
    parser.add_argument('--model-dir', required=True,
                        help='directory written by finetune (its best epoch, or the newest '
                             'checkpoint of a stopped run), one of its checkpoints/step-*, or '
                             'an export of gluonbert quantize')
    parser.add_argument('--input', required=True,
                        help="TSV in the task's format, or any TSV with --text-a/--text-b")
    parser.add_argument('--text-a', default=None,
                        help="column of the first text: header name or 0-based index (default: "
                             "the task's columns)")
    parser.add_argument('--text-b', default=None,
                        help='column of the second text, for a model of sentence pairs')
    parser.add_argument('--no-header', action='store_true',
                        help='the input has no header line (give --text-a/--text-b as indices)')
    parser.add_argument('--output', required=True, help='predictions TSV (written atomically)')
    parser.add_argument('--batch-size', type=int, default=None,
                        help='rows per batch at most (default 64; no row limit with '
                             '--max-batch-tokens unless given)')
    parser.add_argument('--max-batch-tokens', type=int, default=None,
                        help='padded tokens (rows x longest row) per batch at most: inputs '
                             'sorted by length, short ones in larger batches; output in input '
                             'order')
    parser.add_argument('--gpus', default=None)
    parser.add_argument('--cpus', type=int, default=None)
