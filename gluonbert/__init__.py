"""gluonbert: the reference BERT for Apache MXNet Gluon.

``gluonbert.model`` (the blocks, ``get_model``), ``gluonbert.data`` (tokenizers, transforms,
readers), ``gluonbert.utils`` and the names below are reachable as attributes at once, so that
a GluonNLP 0.10 script runs after ``import gluonbert as nlp`` (``nlp.model.get_model``,
``nlp.data.BERTTokenizer``, ``nlp.utils.clip_grad_global_norm``: ``docs/migrating.md``).
MXNet is imported when a model name is first used, so that ``gluonbert --help`` and the data
tools start at once. Importing gluonbert changes no process-wide setting: threads and glibc's
allocator are :mod:`gluonbert.platform`'s to set, before MXNet is loaded (the ``gluonbert``
command does it).

Rooms, bottom to top (each imports only from the rooms below it): ``errors``, ``platform``,
``utils`` (GluonNLP's helpers);
``data``; ``runs`` (run directories), ``kernels`` (the C++ CPU operators); ``model``; ``dist``
(devices, workers, launcher); ``serve`` (predict, export, pipelines); ``train`` (the engine and
its tasks); ``cli``.
"""
__version__ = '0.1.0'

#: Public names and the module that defines each (imported on first use).
_LAZY = {'BERTClassifier': 'model', 'BERTConfig': 'model', 'BERTEncoder': 'model',
         'BERTModel': 'model', 'MLMDecoder': 'model', 'NSClassifier': 'model',
         'get_config': 'model', 'get_model': 'model', 'load_pretrained': 'model',
         'encode': 'serve.pipelines',
         'pipeline': 'serve.pipelines', 'PretrainedBERT': 'serve.pipelines'}

__all__ = sorted(_LAZY)


#: Sub-packages reachable as attributes without an import of their own (``gluonbert.model``).
_SUBPACKAGES = ('data', 'model', 'serve', 'train', 'dist', 'kernels', 'platform', 'errors',
                'runs', 'utils')


def __getattr__(name):
    if name in _SUBPACKAGES:
        import importlib
        return importlib.import_module(f'.{name}', __name__)
    if name in _LAZY:
        import importlib
        value = getattr(importlib.import_module(f'.{_LAZY[name]}', __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__():
    return sorted(list(globals()) + list(_LAZY) + list(_SUBPACKAGES))
