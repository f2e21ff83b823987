"""One run per output directory: a new run is refused where another run's files are, unless
it resumes that run (with the options it was started with) or overwrites it; a start that
fails leaves the directory as it was."""
import dataclasses
import fcntl
import json
import os
import shutil
import socket

from ..data.fileio import atomic_write
from ..errors import ConfigError, FileSystemError
from ..runs import RUN_FILE, RUN_OUTPUTS, find_latest, list_checkpoints, read_checkpoint_meta, \
    remove_stale_temporaries

__all__ = ['RunDirectory', 'run_differences', 'OPERATIONAL_FIELDS', 'LENGTH_FIELDS']

#: Held (``flock``) by the process that runs in the directory, for as long as it runs.
LOCK_FILE = '.gluonbert-run.lock'
#: Options that say how a run is carried out, not what it computes: they may change when it
#: is resumed (another machine, other devices, other log or checkpoint intervals).
OPERATIONAL_FIELDS = frozenset((
    'out_dir', 'log_interval', 'checkpoint_interval', 'keep_checkpoints', 'resume',
    'resume_if_possible', 'overwrite', 'change_length', 'stop_at_step', 'save_all_ranks',
    'progress', 'devices.gpus', 'devices.cpus', 'devices.kvstore', 'devices.comm_backend',
    'cache_dir', 'eval_batch_size'))
#: The length of a run: another value needs ``change_length`` (the schedule is recomputed).
LENGTH_FIELDS = frozenset(('num_steps', 'epochs'))
#: Options naming files or directories: compared as absolute paths.
PATH_FIELDS = frozenset(('data', 'vocab', 'model_config', 'data_dir', 'hf_dir',
                         'from_converted', 'pretrained_checkpoint'))
#: Files a finished (or best-epoch) run writes: a directory holding one is never replaced
#: without ``--overwrite``.
FINAL_OUTPUTS = ('model.params', 'summary.json', 'metrics.json', 'finetune.json')


def _flatten(config, prefix=''):
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f'{prefix}{key}.'))
        else:
            flat[f'{prefix}{key}'] = value
    return flat


def _absolute(value):
    if not isinstance(value, str) or not value:
        return value
    return ','.join(os.path.abspath(part) for part in value.split(','))


def recorded_config(config):
    """``dataclasses.asdict(config)`` with the file and directory options made absolute: what
    ``run.json`` records, so that a run resumed from another working directory compares
    equal."""
    values = dataclasses.asdict(config)
    for name in PATH_FIELDS & values.keys():
        values[name] = _absolute(values[name])
    return values


def run_differences(recorded, current):
    """The options that differ between a run's recorded config and a new start's.

    Parameters
    ----------
    recorded, current : dict
        :func:`recorded_config` of the run and of this start (nested dicts).

    Outputs
    -------
    (list of (name, old, new), list of (name, old, new))
        Options that define the run (a resumed run must keep them) and the run's length
        (:data:`LENGTH_FIELDS`). Operational options (:data:`OPERATIONAL_FIELDS`) and options
        the record does not have (an older gluonbert) are left out.
    """
    old, new = _flatten(recorded), _flatten(current)
    defining, length = [], []
    for name, value in new.items():
        if name in OPERATIONAL_FIELDS or name not in old:
            continue
        before = _absolute(old[name]) if name in PATH_FIELDS else old[name]
        if before != value:
            (length if name in LENGTH_FIELDS else defining).append((name, before, value))
    return defining, length


def _flag(name):
    return '--' + name.split('.')[-1].replace('_', '-')


class RunDirectory:
    """An output directory that belongs to one run.

    The life of a start, in the order :func:`~gluonbert.train.engine.train` calls it:

    1. :meth:`inspect` (reads only): the directory must be a writable place; a new run into a
       directory holding another run's files (:data:`RUN_OUTPUTS`) is refused unless
       ``overwrite``, ``resume`` or ``resume_if_possible``; a resumed run must be of the same
       task and keep the options that define it (:func:`run_differences`: another learning
       rate or batch size is refused with the list of differences; another length only with
       ``change_length``). A directory holding only the files of a start of the same run that
       never wrote a checkpoint (killed while preparing data, say) is started afresh.
    2. :meth:`claim`: creates the directory and removes temporaries of killed saves.
    3. :meth:`commit`, once the task is built: deletes the old run's outputs (``overwrite``,
       or a start that never reached a checkpoint) and writes ``run.json``.
    4. :meth:`rollback` when the start fails before its first update: what this start created
       is removed and ``run.json`` restored, so the corrected command is not refused.

    Parameters
    ----------
    config : RunConfig
    task_name : str
    is_main : bool
        Only rank 0 checks, cleans and writes.
    num_workers : int
        Workers of the job, recorded in ``run.json``: a resumed run needs as many (each
        reads its own part of the data).
    """

    def __init__(self, config, task_name, is_main=True, num_workers=1):
        self.path = config.out_dir
        self.checkpoints = os.path.join(self.path, 'checkpoints')
        self.config = config
        self.task_name = task_name
        self.is_main = is_main
        self.num_workers = num_workers
        self.latest = None
        self.length_changes = []
        self._replace = False
        self._record = None
        self._snapshot = None
        self._lock = None

    # -- reading --------------------------------------------------------------------------
    def _existing_outputs(self):
        found = []
        for name in RUN_OUTPUTS:
            path = os.path.join(self.path, name)
            if name == 'checkpoints':
                if list_checkpoints(path):
                    found.append(name)
            elif os.path.exists(path):
                found.append(name)
        return found

    def _read_record(self):
        path = os.path.join(self.path, RUN_FILE)
        if not os.path.isfile(path):
            return None
        try:
            with open(path, encoding='utf-8') as f:
                record = json.load(f)
            if not isinstance(record, dict):
                raise ValueError('not a JSON object')
            return record
        except (OSError, ValueError) as err:
            raise ConfigError(f'{path}: unreadable ({err}); expected the JSON gluonbert '
                              'writes for a run. Use --overwrite to start a new run') from None

    def _check_writable(self):
        """The directory exists and is writable, or can be created (nothing is created)."""
        path = os.path.abspath(self.path)
        if os.path.exists(path) and not os.path.isdir(path):
            raise ConfigError(f'--out-dir {self.path}: is a file; expected a directory')
        existing = path
        while not os.path.exists(existing):
            existing = os.path.dirname(existing)
        if not os.path.isdir(existing):
            raise FileSystemError(self.path, 'create the run directory',
                                  f'{existing} is a file, not a directory')
        if not os.access(existing, os.W_OK | os.X_OK):
            doing = 'write the run' if existing == path else 'create the run directory'
            raise FileSystemError(self.path, doing, f'{existing} is not writable')
        return existing

    def inspect(self):
        """Checks the directory against the config (no writes); returns the checkpoint to
        resume from, or None.

        Outputs
        -------
        str or None
            Path of the ``step-*`` checkpoint to continue from.
        """
        config = self.config
        existing_parent = self._check_writable()
        self._snapshot = self._take_snapshot(existing_parent)
        latest = None if config.overwrite else find_latest(self.checkpoints)
        self.latest = latest
        if not self.is_main:        # rank 0 checks; the others follow its choice
            return latest
        self._check_not_in_use()
        flag = '--resume' if config.resume else '--resume-if-possible'
        existing = self._existing_outputs()
        record = None if config.overwrite else self._read_record()
        current = recorded_config(config)
        self._record = record
        if config.overwrite:
            self._replace = bool(existing)
        elif config.resume or config.resume_if_possible:
            if latest is None and config.resume:
                raise ConfigError(
                    f'{flag}: no valid checkpoint in {self.checkpoints}; expected the '
                    f'--out-dir of an earlier {self.task_name} run. Run without --resume to '
                    'start afresh, or use --resume-if-possible')
            if latest is not None:
                self._check_same_run(flag, record, latest, current)
            self._replace = latest is None and bool(existing)
        elif existing:
            same = (record is not None and record.get('task') == self.task_name
                    and run_differences(record.get('config', {}), current) == ([], []))
            unfinished = (not list_checkpoints(self.checkpoints)
                          and not any(os.path.exists(os.path.join(self.path, name))
                                      for name in FINAL_OUTPUTS))
            if not (same and unfinished):
                raise ConfigError(
                    f'--out-dir {self.path} holds another run ({", ".join(existing)}); '
                    'expected an empty or new directory. Use --resume to continue that run, '
                    '--overwrite to replace it, or another --out-dir')
            self._replace = True       # the same run, started before and stopped before its
            # first checkpoint: start it afresh
        return latest

    def _check_same_run(self, flag, record, latest, current):
        """A resumed run keeps its task, workers and the options that define it."""
        meta = read_checkpoint_meta(latest)
        if record is None:                       # run.json lost: the checkpoint's record
            saved = meta.get('config') or {}
            record = {'task': next(iter(saved), None), 'config': next(iter(saved.values()), {})}
        recorded_task = record.get('task')
        if recorded_task not in (None, self.task_name):
            raise ConfigError(f'{flag}: {self.path} holds a {recorded_task} run; this is a '
                              f'{self.task_name} run. Use another --out-dir')
        workers = record.get('num_workers')
        if workers is not None and workers != self.num_workers:
            raise ConfigError(
                f'{flag}: the run in {self.path} was trained by {workers} worker(s); this start '
                f'has {self.num_workers}. Each worker reads its own part of the data, so a '
                f'resumed run needs the same number: launch it with -n {workers}')
        defining, length = run_differences(record.get('config', {}), current)
        length_ok = self.config.change_length     # the new length is checked once known
        listed = '; '.join(f'{_flag(name)} {old!r} -> {new!r}' for name, old, new in
                           defining + ([] if length_ok else length))
        if defining or (length and not length_ok):
            hint = ('' if not length or length_ok else
                    '. A run may be made longer or shorter with --change-length (the '
                    'learning-rate schedule is then recomputed over the new length)')
            raise ConfigError(
                f'{flag}: this start differs from the run in {self.path} ({listed}); expected '
                f'the options the run was started with (in {os.path.join(self.path, RUN_FILE)})'
                f', as a resumed run continues the same run{hint}. To train with the new '
                'options, start a new run: another --out-dir, or --overwrite')
        self.length_changes = length

    def _refuse_in_use(self, lock):
        lock.seek(0)
        owner = lock.read().strip() or 'another process'
        lock.close()
        raise ConfigError(f'--out-dir {self.path}: in use by a running gluonbert command '
                          f'({owner}); expected a directory no other run writes. Wait for it '
                          'to end, stop it, or use another --out-dir')

    def _check_not_in_use(self):
        """Refuses a directory whose lock a running process holds (reads only)."""
        path = os.path.join(self.path, LOCK_FILE)
        if not os.path.isfile(path):
            return
        try:
            lock = open(path, encoding='utf-8')
        except OSError:
            return
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            self._refuse_in_use(lock)
        lock.close()                        # closing releases the probe

    def _take_snapshot(self, existing_parent):
        path = os.path.abspath(self.path)
        if not os.path.isdir(path):             # created by this start: removed on failure
            created = path
            while os.path.dirname(created) != existing_parent:
                created = os.path.dirname(created)
            return {'created': created}
        run_file = os.path.join(path, RUN_FILE)
        content = None
        if os.path.isfile(run_file):
            with open(run_file, 'rb') as f:
                content = f.read()
        return {'created': None, 'names': set(os.listdir(path)), 'run_file': content}

    # -- writing --------------------------------------------------------------------------
    def claim(self):
        """Creates the directory, locks it for this process and removes what killed saves
        left (rank 0). A directory locked by a running gluonbert process is refused: two runs
        never write one directory."""
        if not self.is_main:
            return
        try:
            os.makedirs(self.path, exist_ok=True)
            self._lock = open(os.path.join(self.path, LOCK_FILE), 'a+')
        except OSError as err:
            raise FileSystemError.from_os_error(err, 'create the run directory') from None
        try:
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock, self._lock = self._lock, None
            self._snapshot = None          # the directory is the other process's: keep it
            self._refuse_in_use(lock)
        self._lock.seek(0)
        self._lock.truncate()
        self._lock.write(f'pid {os.getpid()} on {socket.gethostname()}\n')
        self._lock.flush()
        remove_stale_temporaries(self.checkpoints)

    def _remove_outputs(self):
        for name in RUN_OUTPUTS:
            path = os.path.join(self.path, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)

    def commit(self, latest):
        """The start succeeded: the old run's outputs go (``overwrite``, or a start that never
        wrote a checkpoint) and ``run.json`` records this run (rank 0)."""
        if not self.is_main:
            return
        if self._replace:
            self._remove_outputs()
        record = dict(self._record or {}) if latest is not None else {}
        resumes = list(record.get('resumes', []))
        if latest is not None:
            resume = {'from': latest}
            if self.length_changes:
                resume['length'] = {name: [old, new] for name, old, new in self.length_changes}
            resumes.append(resume)
        config = recorded_config(self.config)
        if latest is not None and record.get('config'):
            # the run's options stay as they were started, but for a changed length
            kept = dict(record['config'])
            for name, _, new in self.length_changes:
                kept[name] = new
            config = kept
        record = {'task': self.task_name, 'config': config, 'num_workers': self.num_workers,
                  'resumed_from': latest, 'resumes': resumes}
        with atomic_write(os.path.join(self.path, RUN_FILE), newline='\n') as f:
            json.dump(record, f, indent=2)

    def rollback(self):
        """Takes back what this start created (rank 0): the directory as it was before."""
        if not self.is_main or self._snapshot is None:
            return
        snapshot, self._snapshot = self._snapshot, None
        if snapshot['created'] is not None:
            shutil.rmtree(snapshot['created'], ignore_errors=True)
            return
        if not os.path.isdir(self.path):
            return
        for name in set(os.listdir(self.path)) - snapshot['names']:
            path = os.path.join(self.path, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    os.remove(path)
                except OSError:
                    pass
        run_file = os.path.join(self.path, RUN_FILE)
        if snapshot['run_file'] is not None:
            with atomic_write(run_file, 'wb') as f:
                f.write(snapshot['run_file'])

    def started(self):
        """The first update begins: from now on the directory is the run's (no rollback)."""
        self._snapshot = None

    def release(self):
        """Unlocks the directory (the run's process ends, or the run is over)."""
        if self._lock is not None:
            self._lock.close()
            self._lock = None
