"""One run per output directory: a new run is refused where another run's files are,
unless it resumes that run or overwrites it."""
import dataclasses
import json
import os
import shutil

from ..data.fileio import atomic_write
from ..errors import ConfigError
from ..runs import RUN_FILE, RUN_OUTPUTS, find_latest, remove_stale_temporaries

__all__ = ['RunDirectory']


class RunDirectory:
    """An output directory that belongs to one run.

    A new run into a directory holding another run's files (:data:`RUN_OUTPUTS`) is refused
    unless ``overwrite`` (the old run's checkpoints and outputs are deleted first) or
    ``resume`` (continue it: the newest valid checkpoint must exist, and be of the same task).
    Temporary checkpoint directories left by a killed save are removed.

    Parameters
    ----------
    config : RunConfig
    task_name : str
    is_main : bool
        Only rank 0 checks, cleans and writes.
    """

    def __init__(self, config, task_name, is_main=True):
        self.path = config.out_dir
        self.checkpoints = os.path.join(self.path, 'checkpoints')
        self.config = config
        self.task_name = task_name
        self.is_main = is_main

    def _existing_outputs(self):
        return [name for name in RUN_OUTPUTS if os.path.exists(os.path.join(self.path, name))
                and not (name == 'checkpoints' and not os.listdir(self.checkpoints))]

    def _remove_outputs(self):
        for name in RUN_OUTPUTS:
            path = os.path.join(self.path, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)

    def _recorded_task(self):
        path = os.path.join(self.path, RUN_FILE)
        if not os.path.isfile(path):
            return None
        try:
            with open(path, encoding='utf-8') as f:
                return json.load(f).get('task')
        except (OSError, ValueError) as err:
            raise ConfigError(f'{path}: unreadable ({err}); expected the JSON gluonbert '
                              'writes for a run. Use --overwrite to start a new run') from None

    def claim(self):
        """Checks the directory against the config; returns the checkpoint to resume or None.

        Outputs
        -------
        str or None
            Path of the ``step-*`` checkpoint to continue from.
        """
        config = self.config
        flag = '--resume' if config.resume else '--resume-if-possible'
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise ConfigError(f'--out-dir {self.path}: is a file; expected a directory')
        os.makedirs(self.path, exist_ok=True)
        if self.is_main:
            remove_stale_temporaries(self.checkpoints)
        latest = find_latest(self.checkpoints)
        if config.overwrite:
            latest = None
        if not self.is_main:        # rank 0 checks and cleans; the others follow its choice
            return latest
        existing = self._existing_outputs()
        if config.overwrite:
            self._remove_outputs()
        elif config.resume or config.resume_if_possible:
            if latest is None and config.resume:
                raise ConfigError(
                    f'{flag}: no valid checkpoint in {self.checkpoints}; expected the '
                    f'--out-dir of an earlier {self.task_name} run. Run without --resume to '
                    'start afresh, or use --resume-if-possible')
            recorded = self._recorded_task()
            if latest is not None and recorded not in (None, self.task_name):
                raise ConfigError(f'{flag}: {self.path} holds a {recorded} run; this is a '
                                  f'{self.task_name} run. Use another --out-dir')
            if latest is None and existing:
                self._remove_outputs()     # a run that never reached its first checkpoint
        elif existing:
            raise ConfigError(f'--out-dir {self.path} holds another run ({", ".join(existing)}); '
                              'expected an empty or new directory. Use --resume to continue '
                              'that run, --overwrite to replace it, or another --out-dir')
        with atomic_write(os.path.join(self.path, RUN_FILE), newline='\n') as f:
            json.dump({'task': self.task_name, 'config': dataclasses.asdict(config),
                       'resumed_from': latest}, f, indent=2)
        return latest
