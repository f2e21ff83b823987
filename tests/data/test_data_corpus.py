"""Raw-text documents (sentence-per-line and WikiText layouts) and sentence splitting."""
import pytest

from gluonbert.data.corpus import detect_format, is_heading, is_title, iter_documents, \
    split_sentences
from gluonbert.errors import DataFormatError


def test_split_sentences_plain_and_tokenised():
    text = ('Mr. Smith met Dr. Jones in the U.S. capital. They talked for 2 hours! '
            'Was it useful? "Yes," he said. H. americanus is a lobster.')
    assert split_sentences(text) == [
        'Mr. Smith met Dr. Jones in the U.S. capital.', 'They talked for 2 hours!',
        'Was it useful?', '"Yes," he said.', 'H. americanus is a lobster.']
    wikitext = ('It is closely related to the American lobster , H. americanus . It may grow '
                'to 60 cm ( 24 in ) . 3 @,@ 000 were caught . e.g. this one .')
    assert split_sentences(wikitext) == [
        'It is closely related to the American lobster , H. americanus .',
        'It may grow to 60 cm ( 24 in ) .', '3 @,@ 000 were caught . e.g. this one .']
    assert split_sentences('  ') == []
    assert split_sentences('no end mark') == ['no end mark']


def test_headings():
    assert is_title(' = Homarus gammarus = ') and is_heading(' = Homarus gammarus = ')
    assert not is_title(' = = Description = = ') and is_heading(' = = Description = = ')
    assert is_heading(' = = = Early life = = = ')
    assert not is_title('a = b = c') and not is_heading('x = 1')


def test_sentence_per_line_documents(tmp_path):
    path = tmp_path / 'corpus.txt'
    path.write_text('First one.\nSecond  one.\n\n\nThird.\n\nFourth.\nFifth.\n', encoding='utf-8')
    assert detect_format(str(path)) == 'sentences'
    assert list(iter_documents(str(path))) == [['First one.', 'Second one.'], ['Third.'],
                                               ['Fourth.', 'Fifth.']]


def test_wikitext_documents(tmp_path):
    path = tmp_path / 'wiki.txt'
    path.write_text(
        ' \n = Alpha = \n \n Alpha is a letter . It comes first . \n \n = = Use = = \n'
        ' It weighs 0 @.@ 5 kg and is well @-@ known . \n \n = Beta = \n \n Beta is second . \n',
        encoding='utf-8')
    assert detect_format(str(path)) == 'wikitext'
    docs = list(iter_documents(str(path)))
    assert docs == [['Alpha is a letter .', 'It comes first .',
                     'It weighs 0.5 kg and is well-known .'], ['Beta is second .']]
    # forced sentence layout: every non-blank line a sentence, blank lines break documents
    forced = list(iter_documents(str(path), fmt='sentences'))
    assert forced[0] == ['Alpha is a letter . It comes first .']


def test_documents_do_not_span_files_and_bad_utf8(tmp_path):
    one, two = tmp_path / 'a.txt', tmp_path / 'b.txt'
    one.write_text('a1.\na2.', encoding='utf-8')
    two.write_text('\ufeffb1.\n', encoding='utf-8')
    assert list(iter_documents([str(one), str(two)])) == [['a1.', 'a2.'], ['b1.']]
    bad = tmp_path / 'bad.txt'
    bad.write_bytes(b'ok.\n\xff\xfe broken\n')
    with pytest.raises(DataFormatError, match='invalid UTF-8') as err:
        list(iter_documents(str(bad)))
    assert err.value.line == 2
    with pytest.raises(ValueError, match='fmt'):
        list(iter_documents(str(one), fmt='xml'))
