"""gluonbert: the reference BERT for Apache MXNet Gluon.

MXNet is imported only when something that needs it is first used (``gluonbert.BERTModel``,
``gluonbert.get_model``, any ``gluonbert.model``/``gluonbert.train`` module), so that
``gluonbert --help`` and the data tools start at once.
"""
__version__ = '0.1.0'

from .allocator import tune_allocator

# Before MXNet is imported, so that its threads allocate from the tuned arena
# (see gluonbert/allocator.py; GLUONBERT_TUNE_MALLOC=0 turns it off).
tune_allocator()

#: Public names and the module that defines each (imported on first use).
_LAZY = {'BERTClassifier': 'model', 'BERTConfig': 'model', 'BERTEncoder': 'model',
         'BERTModel': 'model', 'MLMDecoder': 'model', 'NSClassifier': 'model',
         'get_config': 'model', 'get_model': 'model.zoo', 'encode': 'pipelines',
         'pipeline': 'pipelines', 'PretrainedBERT': 'pipelines'}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib
        value = getattr(importlib.import_module(f'.{_LAZY[name]}', __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
