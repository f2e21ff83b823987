"""What a run directory holds, for the commands that write it (training) and read it
(prediction, the pipelines, fine-tuning from a pretraining run).

::

    <run>/run.json                      which task and configuration made the run
    <run>/train.log, loss_curve.png, summary.json | metrics.json, model.params, ...
    <run>/checkpoints/step-00001000/    model.params, optimizer.params, meta.json

A checkpoint directory is built under a hidden temporary name and renamed into place; its
``meta.json`` records the size and sha1 of the other two files, so a damaged checkpoint
(truncated file, bad JSON) fails :func:`read_checkpoint_meta` and :func:`find_latest` skips it
with a warning. Writing checkpoints is :mod:`gluonbert.train.checkpoint`'s.
"""
import json
import logging
import os
import re
import shutil
import warnings

from .data.fileio import sha1_of_file
from .errors import CheckpointError

__all__ = ['RUN_FILE', 'RUN_OUTPUTS', 'CHECKPOINT_FORMAT', 'list_checkpoints', 'find_latest',
           'read_checkpoint_meta', 'remove_stale_temporaries']

_LOG = logging.getLogger(__name__)
#: Written into every run directory: which task and configuration made it.
RUN_FILE = 'run.json'
#: Files and directories that mark a directory as holding a run's results.
RUN_OUTPUTS = (RUN_FILE, 'checkpoints', 'train.log', 'model.params', 'summary.json',
               'metrics.json', 'finetune.json', 'loss_curve.png')
#: The ``format`` of a checkpoint's ``meta.json``.
CHECKPOINT_FORMAT = 'gluonbert-train-checkpoint/1'
_NAME = re.compile(r'^step-(\d{8,})$')
_TEMPORARY = re.compile(r'^\.tmp-step-\d{8,}-\d+$|^step-\d{8,}\.old\d+$')


def list_checkpoints(directory):
    """``[(step, path)]`` of the ``step-*`` directories in ``directory``, oldest first."""
    if not os.path.isdir(directory):
        return []
    found = [(int(m.group(1)), os.path.join(directory, n))
             for n in os.listdir(directory) if (m := _NAME.match(n))]
    return sorted(found)


def remove_stale_temporaries(directory):
    """Deletes what a save killed halfway left in ``directory`` (``.tmp-step-*``,
    ``step-*.old*``); returns their names. Call it before a run starts, from one process."""
    if not os.path.isdir(directory):
        return []
    stale = sorted(n for n in os.listdir(directory) if _TEMPORARY.match(n))
    for name in stale:
        _LOG.warning('removing %s, left by an interrupted checkpoint save',
                     os.path.join(directory, name))
        shutil.rmtree(os.path.join(directory, name), ignore_errors=True)
    return stale


def read_checkpoint_meta(path):
    """The validated ``meta.json`` of a checkpoint; raises CheckpointError if damaged."""
    meta_path = os.path.join(path, 'meta.json')
    try:
        with open(meta_path, encoding='utf-8') as f:
            meta = json.load(f)
    except (OSError, ValueError) as err:
        raise CheckpointError(f'{meta_path}: unreadable ({err})') from None
    if not isinstance(meta, dict) or meta.get('format') != CHECKPOINT_FORMAT:
        raise CheckpointError(f'{meta_path}: format {meta.get("format")!r}; expected {CHECKPOINT_FORMAT!r}')
    for name, expect in meta['files'].items():
        file = os.path.join(path, name)
        size = os.path.getsize(file) if os.path.isfile(file) else None
        if size != expect['bytes']:
            raise CheckpointError(f'{file}: {size} bytes, expected {expect["bytes"]} '
                                  '(truncated or missing)')
        if sha1_of_file(file) != expect['sha1']:
            raise CheckpointError(f'{file}: sha1 differs from the one in meta.json (damaged)')
    return meta


def find_latest(directory):
    """The newest checkpoint in ``directory`` that passes its integrity checks.

    Damaged ones (newest first) are skipped with a warning naming the problem.

    Outputs
    -------
    str or None
        Its path; None when there is no valid checkpoint.
    """
    for step, path in reversed(list_checkpoints(directory)):
        try:
            read_checkpoint_meta(path)
            return path
        except CheckpointError as err:
            message = f'skipping damaged checkpoint {path}: {err}'
            _LOG.warning(message)
            warnings.warn(message, RuntimeWarning, stacklevel=2)
    return None
