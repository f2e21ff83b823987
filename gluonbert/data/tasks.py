"""Classification tasks for fine-tuning: which files, which columns, which labels.

MRPC (the default) is read with :func:`gluonbert.data.load_mrpc`: GLUE ``train.tsv``/``dev.tsv``
or the MSR file with a seeded dev split. Any other GLUE-format TSV task names its columns
(header names) and labels; its directory must hold ``train.tsv`` and ``dev.tsv``.
"""
import dataclasses
import os
from typing import List, Optional

from .fileio import read_text_lines
from ..errors import ConfigError, DataFormatError

__all__ = ['TaskSpec', 'task_spec', 'load_task', 'read_examples', 'read_columns',
           'default_data_dir']


@dataclasses.dataclass
class TaskSpec:
    """How to read a task's files; saved with a fine-tuned model for ``predict``.

    Attributes
    ----------
    labels : list of str
        Class labels; class ``i`` is ``labels[i]``.
    text_a, text_b, label_column : str or None
        Header names of the columns; all None for MRPC's fixed format.
    """
    labels: List[str]
    text_a: Optional[str] = None
    text_b: Optional[str] = None
    label_column: Optional[str] = None

    @property
    def is_mrpc(self):
        return self.text_a is None

    @property
    def pair(self):
        return self.is_mrpc or self.text_b is not None


def task_spec(config):
    """The :class:`TaskSpec` of a :class:`~gluonbert.train.config.FinetuneConfig`."""
    if config.text_a is None:
        if config.text_b or config.label_column:
            raise ConfigError('--text-b/--label-column given without --text-a; expected all '
                              'columns of a custom task, or none for MRPC')
        from .glue import MRPC_LABELS
        return TaskSpec(list(MRPC_LABELS))
    if not config.label_column:
        raise ConfigError('a custom task needs --label-column (the header name of the labels)')
    labels = (config.labels or '0,1').split(',')
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise ConfigError(f'--labels {config.labels!r}: expected two or more distinct '
                          'comma-separated labels')
    return TaskSpec(labels, config.text_a, config.text_b, config.label_column)


def default_data_dir():
    """``data/paraphrase_sample`` of the working directory, else of the source checkout."""
    here = os.path.join('data', 'paraphrase_sample')
    if os.path.isdir(here):
        return here
    return os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), 'data', 'paraphrase_sample')


def read_examples(path, spec, labelled=None):
    """Reads one file of a task.

    Parameters
    ----------
    path : str
    spec : TaskSpec
    labelled : bool or None
        Whether labels must be there (None: use them when the file has them).

    Outputs
    -------
    list of PairRecord
    """
    from .glue import read_glue_tsv, read_mrpc_tsv
    if spec.is_mrpc:
        records = read_mrpc_tsv(path)
    else:
        lines = read_text_lines(path)
        header = lines[0][1].split('\t') if lines else []
        has_label = spec.label_column in header
        records = read_glue_tsv(path, spec.text_a, spec.text_b,
                                spec.label_column if has_label else None,
                                labels=spec.labels if has_label else None)
    if labelled and records and records[0].label is None:
        raise DataFormatError(path, 1, 'no label column; expected a labelled file')
    return records


def _column_spec(value):
    """A column given on the command line: a 0-based index when it is all digits, else a
    header name."""
    return int(value) if isinstance(value, str) and value.isdigit() else value


def read_columns(path, spec, text_a, text_b=None, header=True):
    """Reads the texts of a file in a layout of the user's choosing, for a model of ``spec``.

    Labels are read when the model's task names a label column and the header has it;
    otherwise the rows are unlabelled.

    Parameters
    ----------
    path : str
    spec : TaskSpec
        The model's task: pairs need ``text_b``, single texts refuse it.
    text_a, text_b : str or int
        Header names or 0-based indices (a string of digits is an index).
    header : bool
        The first line is a header.

    Outputs
    -------
    list of PairRecord
    """
    from .glue import read_glue_tsv
    if text_a is None:
        raise ConfigError('--text-b given without --text-a; expected both columns (or neither '
                          "for the task's own format)")
    if spec.pair and text_b is None:
        raise ConfigError(f'--text-a {text_a} alone: the model classifies sentence pairs; '
                          'expected --text-b too')
    if not spec.pair and text_b is not None:
        raise ConfigError(f'--text-b {text_b}: the model classifies single texts; expected '
                          '--text-a only')
    label = None
    if header and spec.label_column:
        lines = read_text_lines(path)
        if lines and spec.label_column in lines[0][1].split('\t'):
            label = spec.label_column
    return read_glue_tsv(path, _column_spec(text_a), _column_spec(text_b), label=label,
                         header=header, labels=spec.labels if label else None)


def load_task(config, spec):
    """Train and dev records of a run and a sentence describing the split.

    Outputs
    -------
    (list of PairRecord, list of PairRecord, str)
    """
    data_dir = config.data_dir or default_data_dir()
    if not os.path.isdir(data_dir):
        raise DataFormatError(data_dir, None, 'no such data directory; expected MRPC/GLUE '
                              'files (train.tsv and dev.tsv, or msr_paraphrase_train.txt)')
    if spec.is_mrpc:
        from .glue import load_mrpc
        data = load_mrpc(data_dir, dev_fraction=config.dev_fraction, seed=config.split_seed)
        return data.train, data.dev, f'{data_dir}: {data.split}'
    train = read_examples(os.path.join(data_dir, 'train.tsv'), spec, labelled=True)
    dev = read_examples(os.path.join(data_dir, 'dev.tsv'), spec, labelled=True)
    return train, dev, f'{data_dir}: train.tsv ({len(train)}) / dev.tsv ({len(dev)})'
