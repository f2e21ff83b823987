"""A fine-tuned classifier directory (written by ``gluonbert finetune``) loaded back:
``model.params`` (a BERTClassifier), ``finetune.json`` (BERT config, task, casing, max length)
and ``vocab.txt``.
"""
import dataclasses
import json
import os

from ..errors import ConfigError, WeightsNotFoundError
from ..dist.cluster import on_cpu

__all__ = ['FINETUNE_INFO', 'read_finetune_info', 'finetuned_transform', 'load_finetuned']

#: The description file that marks a fine-tuned model directory.
FINETUNE_INFO = 'finetune.json'


#: Keys of ``finetune.json`` that ``predict`` reads, with their JSON types.
_INFO_KEYS = {'bert': dict, 'task': dict, 'lower': bool, 'max_seq_length': int,
              'dropout': (int, float)}


def read_finetune_info(path):
    """``finetune.json``, with a :class:`ConfigError` naming the file, the line and what is
    wrong when it is not the JSON ``finetune`` writes."""
    try:
        with open(path, encoding='utf-8') as f:
            info = json.load(f)
    except json.JSONDecodeError as err:
        raise ConfigError(f'{path}:{err.lineno}: not valid JSON ({err.msg}, column {err.colno}); '
                          'expected the finetune.json written by gluonbert finetune') from None
    except UnicodeDecodeError as err:
        raise ConfigError(f'{path}: not UTF-8 text ({err.reason} at byte {err.start}); '
                          'expected the finetune.json written by gluonbert finetune') from None
    if not isinstance(info, dict):
        raise ConfigError(f'{path}: holds a JSON {type(info).__name__}; expected an object '
                          f'with the keys {sorted(_INFO_KEYS)}')
    for key, kind in _INFO_KEYS.items():
        if not isinstance(info.get(key), kind):
            raise ConfigError(f'{path}: "{key}" is {info.get(key)!r}; expected a JSON '
                              f'{getattr(kind, "__name__", "number")} (written by gluonbert '
                              'finetune)')
    labels = info['task'].get('labels')
    if not (isinstance(labels, list) and labels and all(isinstance(x, str) for x in labels)):
        raise ConfigError(f'{path}: "task.labels" is {labels!r}; expected a list of label '
                          'strings')
    from ..data.tasks import TaskSpec
    unknown = set(info['task']) - {f.name for f in dataclasses.fields(TaskSpec)}
    if unknown:
        raise ConfigError(f'{path}: "task" has unknown keys {sorted(unknown)}; expected those '
                          'of gluonbert.data.tasks.TaskSpec')
    return info


def finetuned_transform(model_dir):
    """What a fine-tuned directory says of its inputs: its ``finetune.json``, task and the
    input transform of its vocabulary, casing and maximum length.

    Outputs
    -------
    (dict, TaskSpec, BERTDatasetTransform)
    """
    from ..data import BERTDatasetTransform, get_tokenizer, load_vocab
    from ..data.tasks import TaskSpec
    info_path = os.path.join(model_dir, FINETUNE_INFO)
    if not os.path.isfile(info_path):
        raise WeightsNotFoundError(f'{info_path}: not found; expected a directory written by '
                                   'gluonbert finetune')
    info = read_finetune_info(info_path)
    spec = TaskSpec(**info['task'])
    vocab = load_vocab(os.path.join(model_dir, 'vocab.txt'))
    transform = BERTDatasetTransform(get_tokenizer(vocab, lower=info['lower']),
                                     info['max_seq_length'], class_labels=spec.labels,
                                     pad=False, pair=spec.pair, has_label=False)
    return info, spec, transform


def load_finetuned(model_dir, contexts, kernels=None):
    """Rebuilds a fine-tuned classifier and its input transform from ``model_dir``, for
    inference, hybridized with static memory.

    Parameters
    ----------
    model_dir : str
    contexts : list of mx.Context
    kernels : bool or None
        gluonbert's forward-only CPU kernels (None: when ``contexts`` are CPUs); False keeps
        MXNet's operators, which an export needs.

    Outputs
    -------
    (BERTClassifier, BERTDatasetTransform, TaskSpec)
    """
    from ..model import BERTClassifier, BERTConfig, BERTModel
    info, spec, transform = finetuned_transform(model_dir)
    info_path = os.path.join(model_dir, FINETUNE_INFO)
    bert = BERTModel(BERTConfig.from_dict(info['bert'], source=info_path), use_pooler=True,
                     use_decoder=False, use_classifier=False,
                     kernels=on_cpu(contexts) if kernels is None else kernels, inference=True)
    net = BERTClassifier(bert, num_classes=len(spec.labels), dropout=info['dropout'])
    net.load_parameters(os.path.join(model_dir, 'model.params'), ctx=contexts)
    net.hybridize(static_alloc=True)
    return net, transform, spec
