"""The command line's conventions (gluonbert.cli): no prefix matching on any sub-command,
defaults in ``-h``, the sub-command's usage and the flag meant for an unknown flag (GluonNLP's
and HuggingFace's spellings included), old spellings as hidden aliases, ConfigErrors that name
the flag, and documentation that names only commands and flags that exist."""
import argparse
import os
import re
import subprocess
import sys

import pytest

from gluonbert.cli import ALIASES, FOREIGN_FLAGS, build_parser, main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def commands():
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return parser, action.choices


def options(subparser, hidden=False):
    return {o for a in subparser._actions for o in a.option_strings
            if hidden or a.help != argparse.SUPPRESS}


def test_every_subparser_refuses_prefixes_and_shows_defaults():
    from gluonbert.cli import HelpFormatter
    parser, subs = commands()
    assert parser.allow_abbrev is False
    checked = 0
    for name, sub in subs.items():
        assert sub.allow_abbrev is False and sub.formatter_class is HelpFormatter, name
        for action in sub._actions:
            default = action.default
            if (action.option_strings and action.nargs != 0 and default is not None
                    and default is not False and default is not argparse.SUPPRESS):
                shown = HelpFormatter(sub.prog)._expand_help(action)
                assert f'default: {default}' in shown, (name, action.option_strings, shown)
                checked += 1
    assert checked > 60
    help_text = ' '.join(subs['finetune'].format_help().split())
    assert '--batch-size BATCH_SIZE sentences per micro-batch on this worker, split over its ' \
           'devices (default: 32)' in help_text
    assert '--seed SEED default: 2' in help_text


def test_prefix_and_foreign_flags_get_the_subcommand_usage_and_the_flag_meant():
    """As users run it: a process, exit 2, the sub-command's usage, no traceback."""
    done = subprocess.run([sys.executable, '-m', 'gluonbert.cli', 'finetune', '--gpu', '0',
                           '--bert_model', 'bert_12_768_12', '--max_len', '64',
                           '--batch_size', '8', '--output_dir', 'out', '--task_name', 'MRPC',
                           '--max_seq_length', '64', '--model_name_or_path', 'hf'],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and 'Traceback' not in done.stderr
    err = done.stderr
    assert err.startswith('usage: gluonbert finetune ')
    assert 'gluonbert finetune: error: unrecognized arguments: --gpu 0' in err
    for wrong, right in (('--gpu', '--gpus'), ('--bert_model', '--model'),
                         ('--max_len', '--max-seq-length'), ('--batch_size', '--batch-size'),
                         ('--output_dir', '--out-dir'), ('--max_seq_length', '--max-seq-length'),
                         ('--model_name_or_path', '--hf-dir')):
        assert f'{wrong}: did you mean {right}?' in err, (wrong, err)
    assert '--task_name: MRPC is the default task' in err
    assert not os.path.exists('out')


def test_foreign_flag_table_points_at_flags_that_exist():
    _, subs = commands()
    known = set().union(*(options(sub) for sub in subs.values()))
    for flag, meant in FOREIGN_FLAGS.items():
        assert not meant.startswith('--') or meant in known, (flag, meant)


@pytest.mark.parametrize('command,old,new', [
    (command, old, new) for command, table in ALIASES.items() for old, new in table.items()])
def test_old_spellings_still_work_hidden(command, old, new):
    parser, subs = commands()
    hidden = {o for a in subs[command]._actions for o in getattr(a, 'hidden_option_strings', ())}
    assert old in hidden and new in options(subs[command])
    assert not re.search(re.escape(old) + r'(?![\w-])', subs[command].format_help())
    action = subs[command]._option_string_actions[new]
    assert subs[command]._option_string_actions[old] is action
    others = {'download': ['mrpc'], 'prepare-pretraining': ['--input', 'a', '--vocab', 'v'],
              'convert': ['--from-hf', 'h'], 'quantize': ['--model-dir', 'm'],
              'pretrain': ['--data', 'd'], 'evaluate-pretraining': ['--model-dir', 'm',
                                                                     '--data', 'd'],
              'demo': []}[command]
    args = parser.parse_args([command, old, '7'] + others)      # build_parser() users too
    assert getattr(args, action.dest) == (7 if action.type is int else '7')


def test_old_spellings_get_a_note_but_not_in_a_launched_command(tmp_path):
    done = subprocess.run([sys.executable, '-m', 'gluonbert.cli', 'convert', '--from-hf',
                           str(tmp_path / 'nowhere'), '--out', str(tmp_path / 'x')],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and 'Traceback' not in done.stderr
    assert 'gluonbert convert: note: --out is now --out-dir' in done.stderr
    assert 'nowhere: no such directory' in done.stderr      # the alias was taken
    from gluonbert.cli import _note_aliases
    _, subs = commands()
    import io
    from contextlib import redirect_stderr
    err = io.StringIO()
    with redirect_stderr(err):
        _note_aliases(['launch', '-n', '2', '--', 'gluonbert', 'convert', '--out', 'x'], subs)
    assert err.getvalue() == ''


def test_config_errors_name_the_flag(tmp_path, capsys):
    out = tmp_path / 'run'
    assert main(['finetune', '--hf-dir', 'x', '--batch-size', '0', '--out-dir', str(out)]) == 2
    err = capsys.readouterr().err
    assert 'gluonbert finetune: error: --batch-size 0: expected an integer >= 1' in err
    assert 'FinetuneConfig' not in err
    assert main(['finetune', '--hf-dir', 'x', '--from-converted', 'y', '--out-dir',
                 str(out)]) == 2
    assert '--hf-dir and --from-converted: expected exactly one starting point' in \
        capsys.readouterr().err
    assert main(['finetune', '--hf-dir', 'x', '--optimizer', 'lamb', '--lr', '-1', '--out-dir',
                 str(out)]) == 2
    assert '--lr -1.0: expected a positive learning rate' in capsys.readouterr().err
    assert main(['prepare-pretraining', '--input', 'a.txt', '--vocab', 'v.txt', '--out-dir',
                 str(out), '--dupe-factor', '0']) == 2
    assert '--dupe-factor 0: expected >= 1' in capsys.readouterr().err
    assert not out.exists()                         # refused before anything was made


def test_model_alone_defaults_the_dataset_as_gluonnlp():
    from gluonbert.cli.arguments import finetune_config
    from gluonbert.train.config import DEFAULT_DATASET, FinetuneConfig
    parser, _ = commands()
    config = finetune_config(parser.parse_args(['finetune', '--model', 'bert_12_768_12']))
    assert config.dataset == DEFAULT_DATASET == 'book_corpus_wiki_en_uncased'
    assert FinetuneConfig(model='bert_24_1024_16', dataset='x').dataset == 'x'


def _documented_commands():
    """``gluonbert <command> ...`` in the code of README.md and docs/*.md (fenced blocks,
    backslash continuations joined, and inline code), with the file for messages."""
    paths = [os.path.join(ROOT, 'README.md')] + sorted(
        os.path.join(ROOT, 'docs', n) for n in os.listdir(os.path.join(ROOT, 'docs'))
        if n.endswith('.md'))
    found = []
    for path in paths:
        text = open(path, encoding='utf-8').read()
        blocks = [code for language, code in re.findall(r'```(\w*)\n(.*?)```', text, re.S)
                  if language in ('', 'bash', 'sh', 'console')]
        inline = re.findall(r'`([^`\n]+)`', re.sub(r'```.*?```', '', text, flags=re.S))
        for code in [b.replace('\\\n', ' ') for b in blocks] + inline:
            for line in code.splitlines():
                for part in re.split(r'\s--\s', line):     # launch ... -- gluonbert ...
                    match = re.match(r'\s*(?:\$\s*)?gluonbert ([a-z][a-z-]*)(.*)', part)
                    if match:
                        found.append((os.path.relpath(path, ROOT), match.group(1),
                                      match.group(2)))
    return found


def test_documentation_names_only_commands_and_flags_that_exist():
    _, subs = commands()
    documented = _documented_commands()
    assert len(documented) > 20 and {c for _, c, _ in documented} >= {
        'convert', 'finetune', 'pretrain', 'predict', 'fill-mask', 'encode', 'download',
        'prepare-pretraining', 'quantize', 'launch', 'evaluate-pretraining'}
    wrong = []
    for path, command, rest in documented:
        if command not in subs:
            wrong.append(f'{path}: gluonbert {command} (no such command)')
            continue
        for flag in re.findall(r'(?<![\w-])(--[a-z][a-z0-9-]*)', rest):
            if flag not in options(subs[command]):
                wrong.append(f'{path}: gluonbert {command} {flag}')
    assert not wrong, '\n'.join(wrong)
