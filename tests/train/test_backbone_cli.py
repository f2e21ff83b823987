"""Starting points of fine-tuning (HuggingFace directory converted once into a cache) and the
CLI sub-commands."""
import os

import pytest

from gluonbert.cli import build_parser, main
from gluonbert.cli.arguments import finetune_config, pretrain_config
from gluonbert.train.config import FinetuneConfig

from .synthetic import VOCAB


@pytest.fixture
def hf_dir(tmp_path):
    """A tiny random HuggingFace BertModel directory (needs torch + transformers)."""
    pytest.importorskip('torch')
    transformers = pytest.importorskip('transformers')
    directory = tmp_path / 'hf'
    config = transformers.BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=4, intermediate_size=64,
                                     max_position_embeddings=64)
    transformers.BertModel(config).save_pretrained(str(directory))
    (directory / 'vocab.txt').write_text('\n'.join(VOCAB) + '\n')
    return str(directory)


def test_hf_dir_is_converted_once_into_the_cache(tmp_path, hf_dir):
    from gluonbert.model.pretrained import load_backbone
    config = FinetuneConfig(hf_dir=hf_dir, out_dir=str(tmp_path / 'run'), dropout=0.0)
    first = load_backbone(config)
    params = tmp_path / 'run' / 'converted' / 'model.params'
    stamp = os.path.getmtime(params)
    second = load_backbone(config)
    assert os.path.getmtime(params) == stamp                 # not converted again
    assert first.bert.config.units == 32 and len(second.vocab) == len(VOCAB)
    a = first.bert.encoder.word_embed[0].weight.data().asnumpy()
    assert (a == second.bert.encoder.word_embed[0].weight.data().asnumpy()).all()


def test_cli_arguments_become_configs():
    parser = build_parser()
    args = parser.parse_args(['pretrain', '--data', 'x.txt', '--vocab', 'v.txt', '--cpus', '2',
                              '--optimizer', 'lamb', '--accumulate', '4', '--resume',
                              '--stop-at-step', '10'])
    config = pretrain_config(args)
    assert config.devices.cpus == 2 and config.optimizer.name == 'lamb'
    assert config.optimizer.accumulate == 4 and config.resume and config.stop_at_step == 10
    args = parser.parse_args(['finetune', '--model', 'bert_12_768_12', '--dataset',
                              'book_corpus_wiki_en_uncased', '--early-stop', '2',
                              '--gpus', '0,1', '--dtype', 'float16'])
    config = finetune_config(args)
    assert config.model == 'bert_12_768_12' and config.early_stop == 2
    assert config.devices.gpus == '0,1' and config.devices.dtype == 'float16'
    assert config.optimizer.lr == 5e-5


def test_cli_reports_errors_with_exit_code_2(tmp_path, capsys):
    assert main(['finetune', '--data-dir', str(tmp_path), '--out-dir',
                 str(tmp_path / 'out'), '--no-progress']) == 2
    assert 'needs a starting point' in capsys.readouterr().err
    assert main(['pretrain', '--data', str(tmp_path / 'x.txt'), '--out-dir',
                 str(tmp_path / 'out'), '--cpus', '2', '--dtype', 'float16']) == 2
    assert 'float16 needs GPUs' in capsys.readouterr().err
