"""``download_mrpc`` against a local http.server serving fixture files (no internet needed)."""
import functools
import hashlib
import http.server
import os
import socket
import threading

import pytest

from gluonbert.cli import main
from gluonbert.data.download import MRPC_SOURCES, RemoteFile, download_mrpc, mrpc_sources
from gluonbert.data.glue import load_mrpc
from gluonbert.errors import ChecksumError, WeightsNotFoundError

HEADER = 'Quality\t#1 ID\t#2 ID\t#1 String\t#2 String'
TRAIN = [f'{i % 2}\t{100 + i}\t{200 + i}\tSentence "{i}" one .\tSentence {i} two .'
         for i in range(10)]
TEST = [f'{i % 2}\t{300 + i}\t{400 + i}\tTest {i} a .\tTest {i} b .' for i in range(4)]


class _Handler(http.server.SimpleHTTPRequestHandler):
    requests = []

    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        _Handler.requests.append(self.path)
        super().do_GET()


@pytest.fixture
def server(tmp_path):
    """Serves tmp_path/served on 127.0.0.1; yields (base_url, served_dir)."""
    served = tmp_path / 'served'
    served.mkdir()
    files = {'msr_paraphrase_train.txt': '\ufeff' + '\r\n'.join([HEADER] + TRAIN) + '\r\n',
             'msr_paraphrase_test.txt': '\ufeff' + '\r\n'.join([HEADER] + TEST) + '\r\n',
             'dev_ids.tsv': '101\t201\n104\t204\n107\t207\n'}
    for name, text in files.items():
        (served / name).write_bytes(text.encode('utf-8'))
    handler = functools.partial(_Handler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    _Handler.requests.clear()
    yield f'http://127.0.0.1:{httpd.server_address[1]}/', served
    httpd.shutdown()
    httpd.server_close()


def remote(base, served, name, sha1=None):
    digest = sha1 or hashlib.sha1((served / name).read_bytes()).hexdigest()
    return RemoteFile(name, base + name, digest)


def test_download_builds_glue_split(server, tmp_path):
    base, served = server
    sources = [remote(base, served, 'msr_paraphrase_train.txt'),
               remote(base, served, 'msr_paraphrase_test.txt')]
    out = tmp_path / 'mrpc'
    result = download_mrpc(str(out), sources=sources, dev_ids=remote(base, served, 'dev_ids.tsv'),
                           progress=False)
    assert 'GLUE split' in result['split'] and '7 train / 3 dev' in result['split']
    assert sorted(os.listdir(out)) == ['dev.tsv', 'dev_ids.tsv', 'msr_paraphrase_test.txt',
                                       'msr_paraphrase_train.txt', 'test.tsv', 'train.tsv']
    assert (out / 'msr_paraphrase_train.txt').read_bytes() == \
        (served / 'msr_paraphrase_train.txt').read_bytes()
    data = load_mrpc(str(out))
    assert data.split.startswith('GLUE train.tsv/dev.tsv')
    assert [p.id_a for p in data.dev] == ['101', '104', '107']
    assert data.dev[0].text_a == 'Sentence "1" one .' and data.dev[0].label == '1'
    assert len(data.train) == 7 and len(data.test) == 4 and data.test[0].label is None
    first_requests = len(_Handler.requests)
    download_mrpc(str(out), sources=sources, dev_ids=remote(base, served, 'dev_ids.tsv'),
                  progress=False)
    assert len(_Handler.requests) == first_requests  # sha1 matched: nothing fetched again


def test_sha1_mismatch_leaves_nothing(server, tmp_path):
    base, served = server
    out = tmp_path / 'mrpc'
    bad = remote(base, served, 'msr_paraphrase_train.txt', sha1='0' * 40)
    with pytest.raises(ChecksumError, match='expected 0000') as err:
        download_mrpc(str(out), sources=[bad], dev_ids=False, progress=False)
    assert bad.url in str(err.value)
    assert os.listdir(out) == []


def test_missing_dev_ids_falls_back_to_seeded_split(server, tmp_path, caplog):
    base, served = server
    out = tmp_path / 'mrpc'
    sources = [remote(base, served, 'msr_paraphrase_train.txt')]
    missing = RemoteFile('dev_ids.tsv', base + 'no_such_file.tsv', '1' * 40)
    result = download_mrpc(str(out), sources=sources, dev_ids=missing, progress=False)
    assert 'seeded split' in result['split']
    assert 'GLUE dev ids unavailable' in caplog.text
    assert sorted(os.listdir(out)) == ['msr_paraphrase_train.txt']
    assert 'seeded split' in load_mrpc(str(out)).split


def test_offline_gives_clear_error(tmp_path):
    sock = socket.socket()
    sock.bind(('127.0.0.1', 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    sources, dev = mrpc_sources(f'http://127.0.0.1:{port}/mirror')
    assert sources[0].url == f'http://127.0.0.1:{port}/mirror/msr_paraphrase_train.txt'
    assert sources[0].sha1 == MRPC_SOURCES[0].sha1
    with pytest.raises(WeightsNotFoundError, match='are you offline'):
        download_mrpc(str(tmp_path / 'd'), sources=sources, dev_ids=dev, timeout=5,
                      progress=False)
    assert os.listdir(tmp_path / 'd') == []


def test_cli_download_reports_checksum_error(server, tmp_path, capsys):
    base, _ = server  # fixture files do not have the official sha1s
    code = main(['download', 'mrpc', '--dir', str(tmp_path / 'd'), '--base-url', base])
    err = capsys.readouterr().err
    assert code == 2
    assert 'gluonbert download: error:' in err and 'sha1' in err and 'Traceback' not in err
    assert os.listdir(tmp_path / 'd') == []


def test_official_sources_are_gluonnlp_ones():
    """URLs and sha1s are those of GluonNLP 0.10's GlueMRPC (read from its source)."""
    import inspect
    from gluonnlp.data import GlueMRPC
    from gluonbert.data.download import MRPC_DEV_IDS
    source = inspect.getsource(GlueMRPC)
    assert [f.name for f in MRPC_SOURCES] == ['msr_paraphrase_train.txt',
                                               'msr_paraphrase_test.txt']
    for remote_file in MRPC_SOURCES + (MRPC_DEV_IDS,):
        assert f"'{remote_file.sha1}'" in source
    assert MRPC_DEV_IDS.url in source
    assert GlueMRPC._repo_dir(None) + MRPC_SOURCES[0].name == MRPC_SOURCES[0].url


def test_wrong_file_in_place_names_both_sha1s(server, tmp_path, caplog):
    """Issue 12 item 8: a wrong file already in place is reported with both sha1s, then
    replaced when the download works, and named in the offline error when it does not."""
    base, served = server
    out = tmp_path / 'mrpc'
    out.mkdir()
    wrong = out / 'msr_paraphrase_train.txt'
    wrong.write_text('not the corpus\n')
    wrong_sha1 = hashlib.sha1(wrong.read_bytes()).hexdigest()
    good = remote(base, served, 'msr_paraphrase_train.txt')
    download_mrpc(str(out), sources=[good], dev_ids=False, progress=False)
    assert f'{wrong} is in place but its sha1 {wrong_sha1} differs from the expected ' \
           f'{good.sha1}' in caplog.text
    assert wrong.read_bytes() == (served / 'msr_paraphrase_train.txt').read_bytes()
    wrong.write_text('not the corpus\n')
    sock = socket.socket()
    sock.bind(('127.0.0.1', 0))
    port = sock.getsockname()[1]
    sock.close()
    offline = RemoteFile(good.name, f'http://127.0.0.1:{port}/{good.name}', good.sha1)
    with pytest.raises(WeightsNotFoundError) as err:
        download_mrpc(str(out), sources=[offline], dev_ids=False, timeout=5, progress=False)
    message = str(err.value)
    assert 'are you offline' in message and str(wrong) in message
    assert wrong_sha1 in message and good.sha1 in message


def _wikitext_zip(served, splits=None):
    """A small archive laid out like wikitext-2-v1.zip; returns {member: sha1}."""
    import zipfile
    splits = splits or {'train': ' = A = \n\n one two . three four . \n',
                        'valid': ' = B = \n\n five six . \n', 'test': ' = C = \n\n seven . \n'}
    members = {}
    with zipfile.ZipFile(served / 'wikitext-2-v1.zip', 'w') as archive:
        for split, text in splits.items():
            data = text.encode('utf-8')
            archive.writestr(f'wikitext-2/wiki.{split}.tokens', data)
            members[f'wiki.{split}.tokens'] = hashlib.sha1(data).hexdigest()
    return members


def test_download_wikitext2_checks_and_extracts(server, tmp_path):
    from gluonbert.data.download import WIKITEXT2_FILES, download_wikitext2
    base, served = server
    sha1s = _wikitext_zip(served)
    files = {m: (WIKITEXT2_FILES[m][0], sha1) for m, sha1 in sha1s.items()}
    out = tmp_path / 'wt2'
    result = download_wikitext2(str(out), archive=remote(base, served, 'wikitext-2-v1.zip'),
                                files=files, progress=False)
    assert sorted(os.listdir(out)) == ['test.txt', 'train.txt', 'valid.txt', 'wikitext-2-v1.zip']
    assert (out / 'valid.txt').read_text() == ' = B = \n\n five six . \n'
    assert result['files'] == [str(out / n) for n in ('train.txt', 'valid.txt', 'test.txt')]
    fetched = len(_Handler.requests)
    again = download_wikitext2(str(out), archive=remote(base, served, 'wikitext-2-v1.zip'),
                               files=files, progress=False)
    assert len(_Handler.requests) == fetched and again['archive'] is None


def test_download_wikitext2_refuses_wrong_archive(server, tmp_path):
    from gluonbert.data.download import WIKITEXT2_ARCHIVE, download_wikitext2
    base, served = server
    _wikitext_zip(served)  # served bytes are not the official archive
    out = tmp_path / 'wt2'
    with pytest.raises(ChecksumError, match=f'expected {WIKITEXT2_ARCHIVE.sha1}'):
        download_wikitext2(str(out), base_url=base, progress=False)
    assert os.listdir(out) == []


def test_download_wikitext2_refuses_wrong_member(server, tmp_path):
    from gluonbert.data.download import WIKITEXT2_FILES, download_wikitext2
    base, served = server
    sha1s = _wikitext_zip(served)
    files = {m: (WIKITEXT2_FILES[m][0], sha1) for m, sha1 in sha1s.items()}
    files['wiki.valid.tokens'] = ('valid.txt', '2' * 40)
    out = tmp_path / 'wt2'
    with pytest.raises(ChecksumError, match=r'wiki\.valid\.tokens has sha1 .*expected 2222'):
        download_wikitext2(str(out), archive=remote(base, served, 'wikitext-2-v1.zip'),
                           files=files, progress=False)
    assert 'valid.txt' not in os.listdir(out)


def test_cli_download_wikitext2_offline_message(tmp_path):
    """The process: exit code 2, no traceback, the archive, its sha1 and where to put it."""
    import subprocess
    import sys
    from gluonbert.data.download import WIKITEXT2_ARCHIVE
    sock = socket.socket()
    sock.bind(('127.0.0.1', 0))
    port = sock.getsockname()[1]
    sock.close()
    target = tmp_path / 'wt2'
    done = subprocess.run([sys.executable, '-m', 'gluonbert.cli', 'download', 'wikitext-2',
                           '--dir', str(target), '--base-url', f'http://127.0.0.1:{port}/',
                           '--timeout', '5'], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and 'Traceback' not in done.stderr
    assert 'are you offline' in done.stderr and 'wikitext-2-v1.zip' in done.stderr
    assert WIKITEXT2_ARCHIVE.sha1 in done.stderr and str(target) in done.stderr


def test_wikitext2_sources_are_gluonnlp_ones():
    """URL, archive sha1 and split sha1s are those of GluonNLP 0.10's WikiText2."""
    import inspect
    from gluonnlp.data import WikiText2
    from mxnet.gluon.utils import _get_repo_file_url
    from gluonbert.data.download import WIKITEXT2_ARCHIVE, WIKITEXT2_FILES
    source = inspect.getsource(WikiText2)
    assert f"'{WIKITEXT2_ARCHIVE.name}'" in source
    for sha1 in [WIKITEXT2_ARCHIVE.sha1] + [s for _, s in WIKITEXT2_FILES.values()]:
        assert f"'{sha1}'" in source
    for member in WIKITEXT2_FILES:
        assert f"'{member}'" in source
    assert _get_repo_file_url('gluon/dataset/wikitext-2', WIKITEXT2_ARCHIVE.name) == \
        WIKITEXT2_ARCHIVE.url


def test_shared_wikitext2_copy_matches_official_sha1s():
    """The copy in ../shared/data (when present) is the archive's valid and test split."""
    from gluonbert.data.fileio import sha1_of_file
    from gluonbert.data.download import WIKITEXT2_FILES
    shared = os.path.join(os.path.dirname(__file__), '..', '..', '..', 'shared', 'data',
                          'wikitext-2')
    if not os.path.isdir(shared):
        pytest.skip(f'{shared} not present (WikiText-2 copy of the development machines)')
    for member in ('wiki.valid.tokens', 'wiki.test.tokens'):
        name, sha1 = WIKITEXT2_FILES[member]
        assert sha1_of_file(os.path.join(shared, name)) == sha1
