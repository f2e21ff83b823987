"""gluonbert.platform: CPU description, cores and threads, shell exports; the command sets
them before MXNet loads."""
import os
import subprocess
import sys
import textwrap

from gluonbert import platform


def test_cpu_info_reads_model_flags_and_cores(tmp_path):
    path = tmp_path / 'cpuinfo'
    path.write_text('processor\t: 0\nmodel name\t: Example CPU\nflags\t\t: fpu avx2 amx_tile\n'
                    'physical id\t: 0\ncore id\t\t: 0\n\nprocessor\t: 1\nmodel name\t: Example '
                    'CPU\nflags\t\t: fpu avx2 amx_tile\nphysical id\t: 0\ncore id\t\t: 0\n')
    info = platform.cpu_info(str(path))
    assert info.model == 'Example CPU' and info.has('avx2', 'amx_tile') and not info.has('avx512f')
    assert info.isa()['amx_tile'] and not info.isa()['amx_bf16']
    missing = platform.cpu_info(str(tmp_path / 'missing'))
    assert missing.model == 'unknown' and not missing.flags


def test_physical_cores_counts_each_core_once(tmp_path):
    """Hyper-threads (same physical id and core id) count once; CPUs outside the affinity
    mask do not count; without the file, the CPUs of the mask."""
    allowed = sorted(os.sched_getaffinity(0))
    blocks = []
    for i, cpu in enumerate(allowed + [max(allowed) + 1]):          # + one CPU not allowed
        blocks.append(f'processor\t: {cpu}\nphysical id\t: 0\ncore id\t\t: {i // 2}\n')
    path = tmp_path / 'cpuinfo'
    path.write_text('\n'.join(blocks))
    assert platform.physical_cores(str(path)) == (len(allowed) + 1) // 2
    assert platform.physical_cores(str(tmp_path / 'missing')) == len(allowed)


def test_default_threads_sets_only_what_is_unset():
    env = {}
    cores = platform.physical_cores()
    assert platform.default_threads(env) == str(cores) == env['OMP_NUM_THREADS']
    env = {}
    assert platform.default_threads(env, workers=4) == str(max(1, cores // 4))
    env = {'OMP_NUM_THREADS': '7'}
    assert platform.default_threads(env) == '7'


def test_gluonbert_command_sets_threads_before_mxnet_loads(tmp_path):
    """Without OMP_NUM_THREADS, MXNet 1.9 would use half the CPUs (one thread on 2 vCPUs); the
    command sets it before MXNet is imported (seen by an import hook), unless the user did."""
    code = textwrap.dedent(f'''
        import os, sys
        seen = []
        class Watch:
            def find_spec(self, name, path=None, target=None):
                if name == 'mxnet':
                    seen.append(os.environ.get('OMP_NUM_THREADS'))
                return None
        sys.meta_path.insert(0, Watch())
        from gluonbert import cli
        code = cli.main(['predict', '--model-dir', {str(tmp_path / 'missing')!r},
                         '--input', 'in.tsv', '--output', 'out.tsv'])
        print(code, seen[0])
    ''')
    env = {k: v for k, v in os.environ.items() if k != 'OMP_NUM_THREADS'}
    for extra, expected in (({}, str(platform.physical_cores())), ({'OMP_NUM_THREADS': '3'}, '3')):
        out = subprocess.run([sys.executable, '-c', code], env=dict(env, **extra),
                             capture_output=True, text=True, check=True, cwd=tmp_path)
        assert out.stdout.split() == ['2', expected], out.stderr


def test_recommended_env_and_shell_exports():
    env = platform.recommended_env(3)
    assert env['OMP_NUM_THREADS'] == '3' and 'MALLOC_ARENA_MAX' not in env
    assert platform.recommended_env(3, allocator=True)['MALLOC_ARENA_MAX'] == '1'
    out = subprocess.run([sys.executable, '-m', 'gluonbert.platform', '--threads', '2'],
                         capture_output=True, text=True, check=True).stdout
    assert 'export OMP_NUM_THREADS=2' in out.splitlines()
    assert 'export MALLOC_MMAP_MAX_=0' in out.splitlines()


def _cpu(*flags):
    return platform.CPUInfo('Test CPU', frozenset(flags), frozenset())


AMX = ('amx_tile', 'amx_bf16', 'amx_int8', 'avx512_bf16')


def test_amx_is_turned_on_only_with_the_tile_state_granted():
    asked = []

    def grant():
        asked.append(True)
        return True
    env = {}
    status = platform.enable_amx(env, _cpu(*AMX), grant)
    assert status.enabled and env == {'DNNL_MAX_CPU_ISA': 'AVX512_CORE_AMX'} and asked
    assert str(status).startswith('AMX on: Test CPU')


def test_amx_stays_off_when_refused_turned_off_absent_or_set_by_the_user():
    def never():
        raise AssertionError('the tile state must not be asked for')
    env = {}
    refused = platform.enable_amx(env, _cpu(*AMX), lambda: False)
    assert not refused.enabled and 'refused' in refused.reason and env == {}
    off = platform.enable_amx({'GLUONBERT_AMX': '0'}, _cpu(*AMX), never)
    assert not off.enabled and 'GLUONBERT_AMX=0' in off.reason
    absent = platform.enable_amx(env, _cpu('avx2', 'avx512_bf16'), never)
    assert not absent.enabled and 'has no AMX' in absent.reason and env == {}
    mine = {'DNNL_MAX_CPU_ISA': 'AVX512_CORE'}
    assert not platform.enable_amx(mine, _cpu(*AMX), never).enabled
    assert mine == {'DNNL_MAX_CPU_ISA': 'AVX512_CORE'}


def test_the_real_request_never_crashes():
    """On this machine: the syscall answers (granted on an AMX CPU with Linux >= 5.16,
    refused elsewhere) and the process lives on; the status names this CPU."""
    assert platform._request_tile_state() in (True, False)
    status = platform.amx_status({})
    assert status.enabled == platform.cpu_info().has('amx_tile', 'amx_bf16', 'amx_int8')
