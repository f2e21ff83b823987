"""The helpers of GluonNLP 0.10's ``gluonnlp.utils`` that BERT scripts call, reachable as
``gluonbert.utils`` so that a script keeps its ``nlp.utils.<name>(...)`` lines after
``import gluonbert as nlp`` (see ``docs/migrating.md``).

They are GluonNLP's own functions (gluonbert depends on GluonNLP 0.10 for its tokenizer and
data utilities), imported on first use; each works on gluonbert blocks:

``clip_grad_global_norm(parameters, max_norm)``, ``grad_global_norm(parameters)``
    Global-norm gradient clipping, as in GluonNLP's fine-tuning tutorial.
``load_parameters(model, filename, ...)``, ``save_parameters(model, filename)``
    Call the model's own ``load_parameters``/``save_parameters`` (gluonbert's check every
    name and shape and keep GluonNLP's parameter names).
``check_version(min_version, warning_only=False, library=None)``
    Checks the installed GluonNLP (the API level gluonbert follows), or ``library``.
``mkdir(dirname)``, ``Parallel``, ``Parallelizable``
"""

#: Names re-exported from ``gluonnlp.utils``.
GLUONNLP_NAMES = ('clip_grad_global_norm', 'grad_global_norm', 'load_parameters',
                  'save_parameters', 'check_version', 'mkdir', 'Parallel', 'Parallelizable')

__all__ = list(GLUONNLP_NAMES)


def __getattr__(name):
    if name in GLUONNLP_NAMES:
        import gluonnlp.utils
        value = getattr(gluonnlp.utils, name)
        globals()[name] = value
        return value
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}; GluonNLP helpers '
                         f'here: {", ".join(GLUONNLP_NAMES)} (others: import gluonnlp)')


def __dir__():
    return sorted(list(globals()) + list(GLUONNLP_NAMES))
