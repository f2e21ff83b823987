"""Pretraining examples (masked LM + next sentence prediction) from raw text, as sharded ``.npz``.

The construction follows Devlin et al. and google-research/bert's
``create_pretraining_data.py``:

* Each document (see :mod:`gluonbert.data.corpus`) is cut into chunks of whole sentences
  filling ``max_seq_length - 3`` tokens; with probability ``short_seq_prob`` a document uses a
  shorter target length, drawn uniformly from ``[2, max_seq_length - 3]`` (as in Google's code,
  once per document).
* A chunk is split at a random sentence boundary into A and B. With probability 0.5 (always
  when the chunk is a single sentence) B is replaced by text from a random *other* document,
  and the sentences not used are put back for the next chunk. The pair is truncated to fit by
  removing tokens from the front or the back (at random) of the longer side.
* ``[CLS] A [SEP] B [SEP]`` is masked by :class:`~gluonbert.data.masking.Masker`.
* The whole corpus is processed ``dupe_factor`` times with different masks.

Deviations needed to stream a corpus larger than memory (Google keeps every document in RAM):

* The random "other document" is drawn from a bounded pool: the next ``nsp_pool_documents``
  documents (read ahead) and the last ``nsp_pool_documents`` processed ones, not from the whole
  corpus.
* When there is no other document at all (a one-document corpus), Google's code takes B from
  the same document and labels it NotNext, which can pair a sentence with itself. Here a chunk
  of several sentences becomes an IsNext example instead, and a single-sentence chunk (which
  has no B) is skipped; the count is logged, warned about and recorded in the manifest
  (``skipped_no_other_document``).
* The ``dupe_factor`` copies of a document are made one after the other, and examples are
  shuffled through a bounded buffer of ``shuffle_buffer`` examples instead of globally.
  The loader shuffles again within shards every epoch.
* With ``num_workers`` > 1, document ``k`` goes to worker ``k % num_workers``; each worker has
  its own pool, its own random stream (from ``seed`` and its index) and writes its own shards,
  so the output depends on ``num_workers``.

Shards and the manifest are written as described in :mod:`gluonbert.data.shards`
(``nsp_label``: 0 = IsNext, 1 = NotNext).
"""
import collections
import dataclasses
import json
import logging
import os
import queue as _queue
import time
import traceback
import warnings

import numpy as np

from ..errors import ConfigError, DataFormatError, Interrupted
from .corpus import iter_documents
from .fileio import atomic_write
from .masking import Masker
from .shards import FORMAT_VERSION, LOG_NAME, MANIFEST_NAME, PARTIAL_SUFFIX, ShardWriter, \
    publish_shards

__all__ = ['PretrainingDataConfig', 'create_instances', 'prepare_pretraining_data',
           'data_fingerprint', 'fingerprint_changes', 'prepared_changes', 'ensure_prepared']

_LOG = logging.getLogger(__name__)

@dataclasses.dataclass(frozen=True)
class PretrainingDataConfig:
    """How pretraining examples are made.

    Parameters
    ----------
    max_seq_length : int
        Length T of every example, ``[CLS]``/``[SEP]`` included.
    max_predictions_per_seq : int
        Masked positions per example at most, P.
    masked_lm_prob : float
        Fraction of tokens masked.
    short_seq_prob : float
        Probability that a document uses a shorter target length.
    dupe_factor : int
        Times each document is used, with different masks and pairs.
    whole_word_mask : bool
        Mask whole words (a token and its ``##`` pieces) together.
    seed : int
        Random seed; the same seed, input and ``num_workers`` give identical shards.
    examples_per_shard : int
        Examples per ``.npz`` shard (the last shard of a worker may hold fewer).
    nsp_pool_documents : int
        Documents read ahead and kept behind for drawing "random next" sentences.
    shuffle_buffer : int
        Examples held in the output shuffle buffer (1 disables shuffling). At least as many
        as the corpus makes gives one global shuffle; fewer leaves each shard with a stretch
        of neighbouring documents, and the loader shuffles within shards only (recipe 2 of
        docs/pretraining.md shuffles globally).
    input_format : {'auto', 'sentences', 'wikitext'}
        Layout of the text files (see :mod:`gluonbert.data.corpus`).
    """
    max_seq_length: int = 128
    max_predictions_per_seq: int = 20
    masked_lm_prob: float = 0.15
    short_seq_prob: float = 0.1
    dupe_factor: int = 1
    whole_word_mask: bool = False
    seed: int = 12345
    examples_per_shard: int = 10000
    nsp_pool_documents: int = 1000
    shuffle_buffer: int = 10000
    input_format: str = 'auto'

    def __post_init__(self):
        checks = (('max_seq_length', self.max_seq_length >= 5, '>= 5'),
                  ('max_predictions_per_seq', self.max_predictions_per_seq >= 1, '>= 1'),
                  ('masked_lm_prob', 0 < self.masked_lm_prob < 1, 'in (0, 1)'),
                  ('short_seq_prob', 0 <= self.short_seq_prob <= 1, 'in [0, 1]'),
                  ('dupe_factor', self.dupe_factor >= 1, '>= 1'),
                  ('examples_per_shard', self.examples_per_shard >= 1, '>= 1'),
                  ('nsp_pool_documents', self.nsp_pool_documents >= 1, '>= 1'),
                  ('shuffle_buffer', self.shuffle_buffer >= 1, '>= 1'),
                  ('input_format', self.input_format in ('auto', 'sentences', 'wikitext'),
                   "'auto', 'sentences' or 'wikitext'"))
        for name, ok, expected in checks:
            if not ok:
                raise ConfigError(f'PretrainingDataConfig.{name}={getattr(self, name)!r}: '
                                  f'expected {expected}', field=name, value=getattr(self, name),
                                  expected=expected)
        if self.max_predictions_per_seq > self.max_seq_length:
            raise ConfigError(f'max_predictions_per_seq={self.max_predictions_per_seq} exceeds '
                              f'max_seq_length={self.max_seq_length}')


class _DocumentPool:
    """Documents to draw "random next" segments from: read-ahead window plus recent history.

    ``no_partner`` counts the chunks that wanted a random next segment when the pool held no
    other document (a one-document corpus or worker share), ``skipped`` those of them that were
    dropped (a single sentence: no B at all).
    """

    def __init__(self, capacity):
        self.capacity = capacity
        self.ahead = collections.deque()
        self.behind = collections.deque(maxlen=capacity)
        self.no_partner = 0
        self.skipped = 0

    def random_other(self, rng):
        """A random other document, or None when there is none."""
        count = len(self.ahead) + len(self.behind)
        if count == 0:
            return None
        index = int(rng.integers(count))
        if index < len(self.ahead):
            return self.ahead[index]
        return self.behind[index - len(self.ahead)]


def _truncate_pair(tokens_a, tokens_b, max_tokens, rng):
    """Drops tokens from the front or back (at random) of the longer side until both fit."""
    a0, a1, b0, b1 = 0, len(tokens_a), 0, len(tokens_b)
    while (a1 - a0) + (b1 - b0) > max_tokens:
        if a1 - a0 > b1 - b0:
            if rng.random() < 0.5:
                a0 += 1
            else:
                a1 -= 1
        else:
            if rng.random() < 0.5:
                b0 += 1
            else:
                b1 -= 1
    return tokens_a[a0:a1], tokens_b[b0:b1]


def _concat(segments):
    return np.concatenate(segments) if len(segments) > 1 else segments[0]


def create_instances(document, pool, rng, config, masker, special):
    """Makes the examples of one document (Google's ``create_instances_from_document``).

    Parameters
    ----------
    document : list of np.ndarray (int32)
        The document's sentences as token ids; none empty.
    pool : _DocumentPool
        Other documents for "random next" segments.
    rng : np.random.Generator
    config : PretrainingDataConfig
    masker : Masker
    special : dict
        ``{'cls': id, 'sep': id, 'pad': id}``.

    Outputs
    -------
    list of dict
        Unpadded examples: ``ids``, ``segments`` (np.int32), ``positions``, ``originals``
        and ``nsp_label`` (0 IsNext, 1 NotNext).
    """
    max_tokens = config.max_seq_length - 3
    target = max_tokens
    if rng.random() < config.short_seq_prob:
        target = int(rng.integers(2, max_tokens + 1))
    examples, chunk, length, i = [], [], 0, 0
    while i < len(document):
        chunk.append(document[i])
        length += len(document[i])
        if i == len(document) - 1 or length >= target:
            a_end = 1 if len(chunk) < 2 else int(rng.integers(1, len(chunk)))
            tokens_a = _concat(chunk[:a_end])
            want_random = len(chunk) == 1 or rng.random() < 0.5
            other = pool.random_other(rng) if want_random else None
            if want_random and other is None:   # no other document: never B = A's own text
                pool.no_partner += 1
                if len(chunk) == 1:
                    pool.skipped += 1
                    chunk, length = [], 0
                    i += 1
                    continue
                want_random = False
            if want_random:
                is_random = 1
                target_b = target - len(tokens_a)
                start = int(rng.integers(len(other)))
                picked, picked_len = [], 0
                for segment in other[start:]:
                    picked.append(segment)
                    picked_len += len(segment)
                    if picked_len >= target_b:
                        break
                tokens_b = _concat(picked)
                i -= len(chunk) - a_end  # put the unused sentences back
            else:
                is_random = 0
                tokens_b = _concat(chunk[a_end:])
            tokens_a, tokens_b = _truncate_pair(tokens_a, tokens_b, max_tokens, rng)
            ids = np.concatenate([[special['cls']], tokens_a, [special['sep']], tokens_b,
                                  [special['sep']]]).astype(np.int32)
            segments = np.zeros(len(ids), dtype=np.int32)
            segments[len(tokens_a) + 2:] = 1
            masked = masker.mask(ids, rng)
            examples.append({'ids': masked.input_ids, 'segments': segments,
                             'positions': masked.positions, 'originals': masked.originals,
                             'nsp_label': is_random})
            chunk, length = [], 0
        i += 1
    return examples


def _tokenize_document(sentences, tokenizer, vocab):
    """Sentences -> id arrays; a literal ``<unk>`` (WikiText's unknown word) becomes ``[UNK]``."""
    unk = vocab[vocab.unknown_token]
    out = []
    for sentence in sentences:
        parts = sentence.split('<unk>')
        ids = vocab.to_indices(tokenizer(parts[0]))
        for part in parts[1:]:
            ids.append(unk)
            ids.extend(vocab.to_indices(tokenizer(part)))
        if ids:
            out.append(np.array(ids, dtype=np.int32))
    return out


def _run_worker(inputs, vocab, lower, output_dir, config, worker, num_workers, report=None):
    """Produces the shards of one worker; ``report(num_documents, num_examples)`` for progress."""
    from .tokenizer import get_tokenizer, load_vocab
    if isinstance(vocab, str):
        vocab = load_vocab(vocab)
    tokenizer = get_tokenizer(vocab, lower=lower)
    masker = Masker.from_vocab(vocab, config.masked_lm_prob, config.max_predictions_per_seq,
                               config.whole_word_mask)
    special = {'cls': vocab[vocab.cls_token], 'sep': vocab[vocab.sep_token],
               'pad': vocab[vocab.padding_token]}
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, worker, num_workers]))
    writer = ShardWriter(output_dir, f'part-{worker:03d}', config, special['pad'])
    pool = _DocumentPool(config.nsp_pool_documents)
    buffer = []
    stats = {'documents': 0, 'examples': 0, 'nsp_not_next': 0, 'masked': 0, 'tokens': 0}

    def emit(example):
        stats['examples'] += 1
        stats['nsp_not_next'] += example['nsp_label']
        stats['masked'] += len(example['positions'])
        stats['tokens'] += len(example['ids'])
        if config.shuffle_buffer <= 1:
            writer.add(example)
            return
        buffer.append(example)
        if len(buffer) >= config.shuffle_buffer:
            index = int(rng.integers(len(buffer)))
            buffer[index], buffer[-1] = buffer[-1], buffer[index]
            writer.add(buffer.pop())

    def process(document):
        for _ in range(config.dupe_factor):
            for example in create_instances(document, pool, rng, config, masker, special):
                emit(example)
        pool.behind.append(document)
        stats['documents'] += 1
        if report is not None:
            report(1, stats['examples'])

    for index, sentences in enumerate(iter_documents(inputs, config.input_format)):
        if index % num_workers != worker:
            continue
        document = _tokenize_document(sentences, tokenizer, vocab)
        if not document:
            continue
        pool.ahead.append(document)
        if len(pool.ahead) > config.nsp_pool_documents:
            process(pool.ahead.popleft())
    while pool.ahead:
        process(pool.ahead.popleft())
    for index in rng.permutation(len(buffer)):
        writer.add(buffer[index])
    writer.flush()
    stats['shards'] = writer.shards
    stats['no_other_document'] = pool.no_partner
    stats['skipped_no_other_document'] = pool.skipped
    return stats


def _worker_main(queue, *args):
    """Entry point of a worker process: sends progress, then ('done', stats) or ('error', ...).

    The parent alone decides when workers stop: a worker ignores SIGINT (Ctrl-C reaches the
    whole process group; the parent then terminates its workers) and dies at once on SIGTERM,
    whatever handlers the parent had installed (``raise_on_signals`` would make it report an
    error instead and wait at exit for a queue nobody reads any more)."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    worker = args[5]
    handler = logging.FileHandler(os.path.join(args[3], LOG_NAME))
    handler.setFormatter(logging.Formatter(f'%(asctime)s %(levelname)s [worker {worker}] '
                                           '%(message)s'))
    _LOG.addHandler(handler)
    _LOG.setLevel(logging.INFO)
    try:
        def report(docs, examples):
            queue.put(('progress', worker, docs, examples))
        stats = _run_worker(*args, report=report)
        queue.put(('done', worker, stats))
    except DataFormatError as err:
        where = f'{err.path}:{err.line}' if err.line is not None else f'{err.path}'
        message = str(err)[len(where) + 2:]
        queue.put(('data_error', worker, (err.path, err.line, message)))
    except BaseException:  # noqa: B902 -- reported to the parent, which raises
        queue.put(('error', worker, traceback.format_exc()))


def _is_shard(name):
    return name.startswith('part-') and (name.endswith('.npz')
                                         or name.endswith('.npz' + PARTIAL_SUFFIX))


def _check_output_dir(output_dir, overwrite):
    """Refuses (or with ``overwrite`` removes) the data of an earlier preparation; the
    manifest goes first, so that the directory is never complete while it is rebuilt."""
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ConfigError(f'--output-dir {output_dir}: is a file; expected a directory')
    old = sorted(n for n in os.listdir(output_dir) if _is_shard(n) or n == MANIFEST_NAME) \
        if os.path.isdir(output_dir) else []
    if old and not overwrite:
        raise ConfigError(f'{output_dir} already holds pretraining data ({old[0]}, ... '
                          f'{len(old)} files); expected an empty directory, or pass overwrite')
    os.makedirs(output_dir, exist_ok=True)
    for name in sorted(old, key=lambda n: n != MANIFEST_NAME):
        os.remove(os.path.join(output_dir, name))


def _remove_shards(output_dir):
    """What a preparation that failed wrote: its shards, under either name."""
    for name in os.listdir(output_dir):
        if _is_shard(name):
            try:
                os.remove(os.path.join(output_dir, name))
            except OSError:
                pass


def _vocab_description(vocab):
    return vocab if isinstance(vocab, str) else f'<BERTVocab of {len(vocab)} tokens>'


def prepare_pretraining_data(inputs, vocab, output_dir, config=None, num_workers=1, lower=True,
                             overwrite=False, progress=True):
    """Turns text files into sharded pretraining examples (see the module docstring).

    Parameters
    ----------
    inputs : str or sequence of str
        Text files (one sentence per line and blank lines between documents, or WikiText).
    vocab : str or gluonnlp.vocab.BERTVocab
        Vocabulary, or its path (any format :func:`~gluonbert.data.tokenizer.load_vocab` reads).
    output_dir : str
        Directory for the shards, the manifest and ``prepare_pretraining.log``.
    config : PretrainingDataConfig or None
        Defaults to ``PretrainingDataConfig()``.
    num_workers : int
        Worker processes; 1 works in this process.
    lower : bool
        Lower-case text (uncased vocabularies).
    overwrite : bool
        Delete shards of an earlier run in ``output_dir`` instead of refusing.
    progress : bool
        Show a tqdm progress bar.

    Outputs
    -------
    dict
        The manifest written to ``output_dir/pretraining_data.json``: ``shards`` (file and
        ``num_examples`` each), ``num_examples``, ``num_documents``, ``seconds``,
        ``examples_per_second``, the config and the measured masked and NotNext fractions.
    """
    from tqdm import tqdm
    config = config or PretrainingDataConfig()
    inputs = [inputs] if isinstance(inputs, str) else list(inputs)
    if not inputs:
        raise ConfigError('prepare_pretraining_data: no input files given')
    for path in inputs:
        if not os.path.isfile(path):
            raise DataFormatError(path, None, 'input file not found')
    if num_workers < 1:
        raise ConfigError(f'num_workers={num_workers}: expected >= 1')
    if isinstance(vocab, (str, os.PathLike)):      # before the output directory is made
        from .tokenizer import resolve_vocab_path
        resolve_vocab_path(os.fspath(vocab))
    _check_output_dir(output_dir, overwrite)
    handler = logging.FileHandler(os.path.join(output_dir, LOG_NAME))
    handler.setFormatter(logging.Formatter('%(asctime)s %(levelname)s %(message)s'))
    _LOG.addHandler(handler)
    _LOG.setLevel(logging.INFO)
    start = time.time()
    try:
        # before reading: an input edited while it is processed differs from the record
        fingerprint = data_fingerprint(inputs, vocab, config, lower)
        _LOG.info('inputs=%s vocab=%s num_workers=%d config=%s', inputs,
                  _vocab_description(vocab), num_workers, config)
        args = (inputs, vocab, lower, output_dir, config)
        with tqdm(unit='doc', desc='pretraining data', disable=not progress) as bar:
            if num_workers == 1:
                def report(docs, examples):
                    bar.update(docs)
                    bar.set_postfix(examples=examples, refresh=False)
                results = [_run_worker(*args, 0, 1, report=report)]
            else:
                results = _run_processes(args, num_workers, bar)
        seconds = time.time() - start
        if not sum(r['documents'] for r in results):
            raise DataFormatError(', '.join(inputs), None, 'holds no sentences (only blank '
                                  'lines or nothing the tokenizer keeps); expected text, one '
                                  'sentence per line, blank lines between documents')
        _warn_no_partner(results)
        if not sum(r['examples'] for r in results):
            raise DataFormatError(', '.join(inputs), None, 'gave no examples: a single '
                                  'sentence has no next sentence and there is no other document '
                                  'to pair it with; expected at least two sentences')
        publish_shards(output_dir, [name for r in results for name, _ in r['shards']])
        manifest = _write_manifest(output_dir, inputs, vocab, config, num_workers, lower,
                                   results, seconds, fingerprint)
        _LOG.info('%d examples from %d documents in %.1f s (%.0f examples/s)',
                  manifest['num_examples'], manifest['num_documents'], seconds,
                  manifest['examples_per_second'])
    except BaseException as err:    # an error, Ctrl-C: no shard a later command would read
        _LOG.error('preparation failed (%s: %s); its shards were removed',
                   type(err).__name__, err)
        _remove_shards(output_dir)
        if isinstance(err, Interrupted):
            raise Interrupted(f'{err} while preparing {output_dir}; no shard was kept',
                              err.signum) from None
        raise
    finally:
        _LOG.removeHandler(handler)
        handler.close()
    return manifest


def _warn_no_partner(results):
    unpaired = sum(r['no_other_document'] for r in results)
    if not unpaired:
        return
    skipped = sum(r['skipped_no_other_document'] for r in results)
    message = (f'{unpaired} chunks had no other document to draw a NotNext sentence from '
               f'(a one-document corpus, or fewer documents than workers): {skipped} '
               f'single-sentence chunks were skipped, {unpaired - skipped} made IsNext examples '
               'instead of pairing a sentence with text of its own document')
    _LOG.warning(message)
    warnings.warn(message, stacklevel=3)


#: Seconds a worker is given to end after its result was received or it was terminated.
_WORKER_GRACE_S = 5.0


def _run_processes(args, num_workers, bar):
    import multiprocessing
    # fork starts workers at once (the parent has MXNet and GluonNLP imported already; the
    # workers run no MXNet operator); spawn where fork does not exist
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context('fork' if 'fork' in methods else 'spawn')
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker_main, args=(queue,) + args + (w, num_workers),
                         daemon=True) for w in range(num_workers)]
    for proc in procs:
        proc.start()
    results, examples = {}, [0] * num_workers
    try:
        while len(results) < num_workers:
            try:
                kind, worker, *payload = queue.get(timeout=1.0)
            except _queue.Empty:
                dead = [w for w, p in enumerate(procs)
                        if w not in results and p.exitcode not in (None, 0)]
                if dead:
                    raise RuntimeError(f'pretraining worker {dead[0]} died (exit code '
                                       f'{procs[dead[0]].exitcode}) without a result') from None
                continue
            if kind == 'progress':
                examples[worker] = payload[1]
                bar.update(payload[0])
                bar.set_postfix(examples=sum(examples), refresh=False)
            elif kind == 'done':
                results[worker] = payload[0]
            elif kind == 'data_error':
                raise DataFormatError(*payload[0])
            else:
                raise RuntimeError(f'pretraining worker {worker} failed:\n{payload[0]}')
    finally:
        # On an error or an interrupt the workers still running are terminated. A worker
        # terminated while it wrote to the queue leaves the queue's lock taken, and a sibling
        # then waits for it forever at its exit: whatever outlives the grace is killed.
        if len(results) < num_workers:
            for proc in procs:
                if proc.is_alive():
                    proc.terminate()
        for proc in procs:
            proc.join(timeout=_WORKER_GRACE_S)
            if proc.is_alive():
                proc.kill()
                proc.join()
    return [results[w] for w in range(num_workers)]


def _write_manifest(output_dir, inputs, vocab, config, num_workers, lower, results, seconds,
                    fingerprint):
    shards = [{'file': name, 'num_examples': count}
              for stats in results for name, count in stats['shards']]
    total = sum(s['examples'] for s in results)
    tokens = sum(s['tokens'] for s in results)
    manifest = {
        'format': FORMAT_VERSION,
        'inputs': [os.path.abspath(p) for p in inputs],
        'vocab': os.path.abspath(vocab) if isinstance(vocab, str) else None,
        'vocab_size': None if isinstance(vocab, str) else len(vocab),
        'lower': lower,
        'num_workers': num_workers,
        'config': dataclasses.asdict(config),
        'nsp_label': '0 = IsNext (B follows A), 1 = NotNext (B from another document)',
        'shards': shards,
        'num_examples': total,
        'num_documents': sum(s['documents'] for s in results),
        'masked_fraction': (sum(s['masked'] for s in results) / tokens) if tokens else 0.0,
        'not_next_fraction': (sum(s['nsp_not_next'] for s in results) / total) if total else 0.0,
        'skipped_no_other_document': sum(s['skipped_no_other_document'] for s in results),
        'seconds': round(seconds, 3),
        'examples_per_second': round(total / seconds, 1) if seconds > 0 else 0.0,
        'fingerprint': fingerprint,
    }
    with atomic_write(os.path.join(output_dir, MANIFEST_NAME), 'w', newline='\n') as fobj:
        json.dump(manifest, fobj, indent=2)
        fobj.write('\n')
    return manifest


# --------------------------------------------------------------------------- fingerprints

def _file_fingerprint(path):
    from .fileio import sha1_of_file
    stat = os.stat(path)
    return {'path': os.path.abspath(path), 'bytes': stat.st_size,
            'mtime_ns': stat.st_mtime_ns, 'sha1': sha1_of_file(path)}


def _vocab_fingerprint(vocab):
    if isinstance(vocab, (str, os.PathLike)):
        from .tokenizer import resolve_vocab_path
        return _file_fingerprint(resolve_vocab_path(os.fspath(vocab)))
    import hashlib
    tokens = '\n'.join(vocab.idx_to_token).encode('utf-8')
    return {'path': None, 'bytes': len(tokens), 'mtime_ns': None,
            'sha1': hashlib.sha1(tokens).hexdigest()}


def data_fingerprint(inputs, vocab, config, lower):
    """What prepared pretraining data depends on, as recorded in its manifest.

    Parameters
    ----------
    inputs : str or sequence of str
        The text files.
    vocab : str or gluonnlp.vocab.BERTVocab
    config : PretrainingDataConfig
    lower : bool

    Outputs
    -------
    dict
        ``inputs`` and ``vocab`` (absolute path, size in bytes, mtime in ns and sha1 of each
        file; a vocabulary object is hashed from its tokens), ``lower`` and ``config``.
    """
    inputs = [inputs] if isinstance(inputs, str) else list(inputs)
    return {'inputs': [_file_fingerprint(p) for p in inputs], 'vocab': _vocab_fingerprint(vocab),
            'lower': bool(lower), 'config': dataclasses.asdict(config)}


def _file_changed(recorded, path):
    """Why ``path`` no longer matches ``recorded`` (None when it does). Size and mtime are
    compared first; the file is hashed only when its mtime changed (a touch or a copy of the
    same text is not a change)."""
    stat = os.stat(path)
    if stat.st_size != recorded['bytes']:
        return f'{path} changed ({recorded["bytes"]} -> {stat.st_size} bytes)'
    if stat.st_mtime_ns != recorded['mtime_ns']:
        from .fileio import sha1_of_file
        if sha1_of_file(path) != recorded['sha1']:
            modified = time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(stat.st_mtime))
            return f'{path} changed (same size, new content, modified {modified})'
    return None


def fingerprint_changes(recorded, inputs, vocab, config, lower):
    """The differences between a recorded :func:`data_fingerprint` and the current inputs.

    Outputs
    -------
    list of str
        One sentence per difference, naming the input file, the vocabulary or the option that
        changed; empty when the prepared data still fits.
    """
    inputs = [inputs] if isinstance(inputs, str) else list(inputs)
    reasons = []
    old_inputs = recorded.get('inputs', [])
    if len(old_inputs) != len(inputs):
        reasons.append(f'the inputs are {inputs}; the data was prepared from '
                       f'{[r["path"] for r in old_inputs]}')
    else:
        for old, path in zip(old_inputs, inputs):
            change = _file_changed(old, path)
            if change:
                reasons.append(f'input {change}')
    old_vocab = recorded.get('vocab', {})
    if isinstance(vocab, (str, os.PathLike)) and old_vocab.get('mtime_ns') is not None:
        from .tokenizer import resolve_vocab_path
        change = _file_changed(old_vocab, resolve_vocab_path(os.fspath(vocab)))
        if change:
            reasons.append(f'vocabulary {change}')
    elif _vocab_fingerprint(vocab)['sha1'] != old_vocab.get('sha1'):
        reasons.append('the vocabulary differs from the one the data was prepared with')
    if recorded.get('lower') != bool(lower):
        reasons.append(f'lower={bool(lower)}; the data was prepared with '
                       f'lower={recorded.get("lower")}')
    new_config, old_config = dataclasses.asdict(config), recorded.get('config', {})
    changed = [f'{key} {old_config.get(key)!r} -> {value!r}' for key, value in new_config.items()
               if old_config.get(key) != value]
    if changed:
        reasons.append(f'options changed: {", ".join(changed)}')
    return reasons


def _has_shards(output_dir):
    return os.path.isdir(output_dir) and any(_is_shard(n) for n in os.listdir(output_dir))


def ensure_prepared(inputs, vocab, output_dir, config=None, lower=True, progress=True,
                    num_workers=1):
    """Shards of ``inputs`` in ``output_dir``, prepared once and rebuilt when an input changes.

    * No shards yet: :func:`prepare_pretraining_data`.
    * A manifest whose fingerprint (:func:`data_fingerprint`) matches the inputs, vocabulary,
      casing and ``config``: the shards are reused.
    * Anything else (an input file or the vocabulary edited or replaced, other options, a
      manifest without fingerprint, shards without manifest from an interrupted run): the
      shards are rebuilt, with a warning in the log naming what changed.

    Parameters
    ----------
    inputs : str or sequence of str
        Text files.
    vocab : str or gluonnlp.vocab.BERTVocab
    output_dir : str
        Directory holding only these shards (and their manifest and log).
    config : PretrainingDataConfig or None
    lower : bool
    progress : bool
        Progress bar while preparing.
    num_workers : int
        Worker processes while preparing.

    Outputs
    -------
    dict
        The manifest (see :func:`prepare_pretraining_data`), plus ``action`` (``'prepared'``,
        ``'reused'`` or ``'rebuilt'``) and ``reasons`` (list of str, why it was rebuilt); these
        two keys are not written to the file.
    """
    config = config or PretrainingDataConfig()
    inputs = [inputs] if isinstance(inputs, str) else list(inputs)
    for path in inputs:
        if not os.path.isfile(path):
            raise DataFormatError(path, None, 'input file not found')
    manifest_path = os.path.join(output_dir, MANIFEST_NAME)
    reasons = []
    if os.path.isfile(manifest_path):
        manifest = _read_manifest(output_dir)
        if manifest is None:
            reasons.append(f'{manifest_path} has no fingerprint of its inputs (unreadable, or '
                           'written by an older gluonbert)')
        else:
            reasons = fingerprint_changes(manifest['fingerprint'], inputs, vocab, config, lower)
            missing = [s['file'] for s in manifest['shards']
                       if not os.path.isfile(os.path.join(output_dir, s['file']))]
            if missing and not reasons:
                reasons.append(f'{output_dir} lacks {missing[0]} of its manifest')
            if not reasons:
                _LOG.info('reusing the pretraining data in %s (inputs unchanged)', output_dir)
                return dict(manifest, action='reused', reasons=[])
    elif _has_shards(output_dir):
        reasons.append(f'{output_dir} holds shards but no {MANIFEST_NAME} (an interrupted '
                       'preparation)')
    if reasons:
        message = (f'rebuilding the pretraining data in {output_dir}: ' + '; '.join(reasons))
        _LOG.warning(message)
    manifest = prepare_pretraining_data(inputs, vocab, output_dir, config,
                                        num_workers=num_workers, lower=lower, overwrite=True,
                                        progress=progress)
    return dict(manifest, action='rebuilt' if reasons else 'prepared', reasons=reasons)


def _read_manifest(output_dir):
    """The manifest of ``output_dir`` if it is readable and has a fingerprint, else None."""
    try:
        with open(os.path.join(output_dir, MANIFEST_NAME), encoding='utf-8') as f:
            manifest = json.load(f)
        if isinstance(manifest['fingerprint'], dict) and isinstance(manifest['shards'], list):
            return manifest
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def prepared_changes(inputs, vocab, output_dir, config=None, lower=True):
    """How the inputs differ from those the data in ``output_dir`` was prepared from, without
    touching it (a resumed run is refused on this, before :func:`ensure_prepared` would
    rebuild the data).

    Outputs
    -------
    list of str or None
        The changes (:func:`fingerprint_changes`; empty when the data still fits); None when
        ``output_dir`` holds no manifest with a fingerprint (nothing to compare: the data
        will be prepared from the inputs).
    """
    manifest = _read_manifest(output_dir)
    if manifest is None:
        return None
    inputs = [inputs] if isinstance(inputs, str) else list(inputs)
    return fingerprint_changes(manifest['fingerprint'], inputs, vocab,
                               config or PretrainingDataConfig(), lower)
