"""Building and loading the CPU kernels: every failure falls back to MXNet's operators with one
line that says why; concurrent processes build once; the compiler's version is in the key.

Each case runs ``gluonbert.kernels.load()`` in a fresh process (a process loads the library
once) with its own cache directory, so nothing here touches the suite's own build.
"""
import json
import os
import shutil
import stat
import subprocess
import sys

import pytest

from gluonbert import kernels as cpu_kernels

COMPILER = shutil.which('g++') or shutil.which('c++')
needs_compiler = pytest.mark.skipif(COMPILER is None, reason='no C++ compiler here')

_PROBE = 'from gluonbert import kernels; print(kernels.load())'


def _load(tmp_path, **env):
    """``kernels.load()`` in a new process: (result, stderr lines)."""
    full = {k: v for k, v in os.environ.items() if k not in ('CXX', 'GLUONBERT_KERNELS')}
    full.update({'GLUONBERT_CACHE': str(tmp_path / 'cache'), **env})
    done = subprocess.run([sys.executable, '-c', _PROBE], env=full, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip() == 'True', done.stderr.strip().splitlines()


def _wrapper(tmp_path, name, body):
    """A stand-in compiler: ``--version`` answers as the real one, a build runs ``body``."""
    path = tmp_path / name
    path.write_text(f'#!/bin/sh\ncase " $* " in *" --version "*) exec {COMPILER} "$@";; esac\n'
                    f'{body}\n')
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def _fallback(lines, *words):
    """Exactly one line, naming the fallback and each of ``words``."""
    assert len(lines) == 1, lines
    assert lines[0].startswith('gluonbert: CPU kernels unavailable') and 'MXNet' in lines[0]
    for word in words:
        assert word in lines[0], lines


def test_no_compiler(tmp_path):
    ok, lines = _load(tmp_path, PATH=str(tmp_path))             # no g++/c++ on the PATH
    assert not ok
    _fallback(lines, 'no C++ compiler')
    ok, lines = _load(tmp_path, CXX=str(tmp_path / 'missing-g++'))
    assert not ok
    _fallback(lines, 'missing-g++')


def test_turned_off_says_nothing(tmp_path):
    assert _load(tmp_path, GLUONBERT_KERNELS='0') == (False, [])


def test_missing_mxnet_headers(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(cpu_kernels._state, 'loaded', None)
    monkeypatch.setattr(cpu_kernels, '_mxnet_dir', lambda: tmp_path)
    monkeypatch.setenv('GLUONBERT_CACHE', str(tmp_path / 'cache'))
    assert cpu_kernels.load() is False
    _fallback(capsys.readouterr().err.strip().splitlines(), 'lib_api.h', 'headers')
    assert not (tmp_path / 'cache').exists()


@needs_compiler
def test_unwritable_cache(tmp_path):
    blocker = tmp_path / 'a-file'
    blocker.write_text('')                     # a directory cannot be made under a file
    ok, lines = _load(tmp_path, GLUONBERT_CACHE=str(blocker / 'cache'))
    assert not ok
    _fallback(lines, str(blocker), 'GLUONBERT_CACHE')


@pytest.mark.slow
@needs_compiler
def test_failed_and_timed_out_builds_leave_nothing(tmp_path):
    failing = _wrapper(tmp_path, 'failing-g++', 'echo "error: out of luck" >&2; exit 1')
    ok, lines = _load(tmp_path, CXX=failing)
    assert not ok
    _fallback(lines[1:], 'out of luck')
    assert 'compiling the CPU kernels' in lines[0]
    slow = _wrapper(tmp_path, 'slow-g++', 'sleep 30')
    ok, lines = _load(tmp_path, CXX=slow, GLUONBERT_KERNELS_BUILD_TIMEOUT='1')
    assert not ok
    _fallback(lines[1:], 'more than 1 s', 'GLUONBERT_KERNELS_BUILD_TIMEOUT')
    assert not list((tmp_path / 'cache').rglob('*.so'))


@needs_compiler
def test_compiler_version_is_part_of_the_key(tmp_path, monkeypatch):
    monkeypatch.setenv('GLUONBERT_CACHE', str(tmp_path))
    paths = []
    for version in ('12.2.0', '13.1.0'):
        fake = tmp_path / f'g++-{version}'
        fake.write_text(f'#!/bin/sh\necho "g++ (Debian) {version}"\n')
        fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
        monkeypatch.setenv('CXX', str(fake))
        paths.append(cpu_kernels.library_path())
    assert paths[0] != paths[1] and paths[0].parent == paths[1].parent


@pytest.mark.slow
@needs_compiler
def test_concurrent_processes_build_once(tmp_path):
    """Two processes start on an empty cache at once: one compiles (under the lock), the other
    waits and loads the same library."""
    log = tmp_path / 'builds.log'
    compiler = _wrapper(tmp_path, 'logging-g++', f'echo build >> {log}; sleep 2\nexec {COMPILER} "$@"')
    env = {k: v for k, v in os.environ.items() if k != 'GLUONBERT_KERNELS'}
    env.update(GLUONBERT_CACHE=str(tmp_path / 'cache'), CXX=compiler)
    code = ('import json; from gluonbert import kernels; '
            'print(json.dumps([kernels.load(), str(kernels.library_path())]))')
    procs = [subprocess.Popen([sys.executable, '-c', code], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [json.loads(p.communicate(timeout=300)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert results[0] == results[1] and results[0][0] is True
    assert log.read_text().split() == ['build']
