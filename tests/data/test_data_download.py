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
