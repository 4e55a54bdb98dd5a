"""Token-sequence datasets: a synthetic grammar (masked-token pretraining + downstream labelings) and text files.

No text-classification corpus ships inside a PyPI package (NLTK, torchtext, Keras and ``datasets`` download
their corpora at run time). Debian's ``fortunes`` packages do ship one: ``fortunes`` classifies a fortune
cookie by its file (category). The built-in data that needs nothing installed is generated:

``grammar-mlm``  sequences of a small seeded language, 15 % of their tokens masked BERT-style (80 % ``[MASK]``,
                 10 % a random token, 10 % unchanged); targets are the original ids there, ``-100`` elsewhere.
``grammar-cls``  sequences of the same language with one label each (``task``), class-balanced:
                 ``majority`` (more class-A than class-B words), ``balanced`` (brackets well-formed; every
                 sequence has brackets, the ill-formed half one closing bracket of the wrong type, so
                 counting cannot solve it),
                 ``first-last`` (first and last word of the same word class), ``depth`` (maximal bracket
                 nesting 0, 1, 2 or 3+: four classes).
``text-file``    your CSV/JSONL file of text + label, tokenized by words or characters with a vocabulary
                 built from the training split only.

The language: ``[CLS]`` then 15-31 content tokens, then ``[PAD]``. Content interleaves words, whose word
class follows a fixed Markov chain over 5 classes (6 words each, Zipf-like frequencies), with a Dyck
language of 3 bracket types. Token ids: 0 ``[PAD]``, 1 ``[UNK]``, 2 ``[CLS]``, 3 ``[MASK]``, 4-9 brackets,
10-39 words (:data:`GRAMMAR_VOCAB_SIZE` = 40). Inputs are int64 ``(N, T)``; ``meta["vocab_size"]`` is what
a model's embedding needs.
"""

from __future__ import annotations

import bisect
import csv
import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from prunezoo.data.datasets import ArrayDataset, DataSplits
from prunezoo.data.registry import register_dataset

SPECIAL_TOKENS: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]", "[MASK]")
PAD_ID, UNK_ID, CLS_ID, MASK_ID = 0, 1, 2, 3
IGNORE_INDEX = -100  # the cross-entropy ignore_index: no target at this position

_BRACKETS = ("(", ")", "[", "]", "{", "}")
NUM_WORD_CLASSES, WORDS_PER_CLASS = 5, 6
OPEN_IDS = tuple(4 + 2 * t for t in range(3))  # (, [, {
CLOSE_IDS = tuple(5 + 2 * t for t in range(3))  # ), ], }
FIRST_WORD_ID = 4 + len(_BRACKETS)
GRAMMAR_VOCAB_SIZE = FIRST_WORD_ID + NUM_WORD_CLASSES * WORDS_PER_CLASS
GRAMMAR_VOCAB: tuple[str, ...] = (
    SPECIAL_TOKENS
    + _BRACKETS
    + tuple(f"{'abcde'[c]}{w}" for c in range(NUM_WORD_CLASSES) for w in range(WORDS_PER_CLASS))
)
# Word-class chain: mostly c -> c+1, often c -> c+3, else uniform; within a class Zipf-like word choice.
_NEXT = np.full((NUM_WORD_CLASSES, NUM_WORD_CLASSES), 0.1 / NUM_WORD_CLASSES)
for _c in range(NUM_WORD_CLASSES):
    _NEXT[_c, (_c + 1) % NUM_WORD_CLASSES] += 0.7
    _NEXT[_c, (_c + 3) % NUM_WORD_CLASSES] += 0.2
_NEXT_CDF = _NEXT.cumsum(1)
_WORD_CDF = np.cumsum([0.5, 0.2, 0.12, 0.08, 0.06, 0.04])
_OPEN_RATES = (0.0, 0.08, 0.16, 0.24)  # per-sequence bracket rate: some sequences have none, some nest deeply
_CLOSE_RATE = 0.25

# Stream ids keep train/test and pretraining/downstream samples independent for one user seed.
_STREAMS = {"mlm": 0, "majority": 1, "balanced": 2, "first-last": 3, "depth": 4}


def _rng(seed: int, stream: str, split: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), _STREAMS[stream], split]))


def generate_sequences(n: int, seq_len: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` sequences of the grammar as int64 ``(n, seq_len)``: ``[CLS]``, content, ``[PAD]`` padding."""
    out = np.full((n, seq_len), PAD_ID, dtype=np.int64)
    out[:, 0] = CLS_ID
    next_cdf, word_cdf = _NEXT_CDF.tolist(), _WORD_CDF.tolist()  # plain floats: bisect beats numpy per token
    for i in range(n):
        length = int(rng.integers(seq_len // 2, seq_len))  # content tokens after [CLS]
        p_open = _OPEN_RATES[int(rng.integers(len(_OPEN_RATES)))]
        cls = int(rng.integers(NUM_WORD_CLASSES))
        stack: list[int] = []
        row: list[int] = []
        for j, (u0, u1, u2) in enumerate(rng.random((length, 3)).tolist()):
            left = length - j
            if stack and (left <= len(stack) or p_open <= u0 < p_open + _CLOSE_RATE):
                row.append(CLOSE_IDS[stack.pop()])
            elif u0 < p_open and len(stack) + 2 <= left:
                stack.append(int(u1 * 3))
                row.append(OPEN_IDS[stack[-1]])
            else:  # min(): guards the float edge u * cdf[-1] == cdf[-1]
                cls = min(bisect.bisect_right(next_cdf[cls], u1 * next_cdf[cls][-1]), NUM_WORD_CLASSES - 1)
                word = min(bisect.bisect_right(word_cdf, u2 * word_cdf[-1]), WORDS_PER_CLASS - 1)
                row.append(FIRST_WORD_ID + WORDS_PER_CLASS * cls + word)
        out[i, 1 : 1 + length] = row
    return out


def word_classes(seq: Iterable[int]) -> list[int]:
    """The word class (0-4) of each word token of ``seq``, in order (brackets and specials skipped)."""
    return [(int(t) - FIRST_WORD_ID) // WORDS_PER_CLASS for t in seq if int(t) >= FIRST_WORD_ID]


def bracket_depth(seq: Iterable[int]) -> int | None:
    """Maximal nesting depth of the brackets of ``seq``, or None when they are not well-formed."""
    stack: list[int] = []
    deepest = 0
    for t in (int(t) for t in seq):
        if t in OPEN_IDS:
            stack.append(OPEN_IDS.index(t))
            deepest = max(deepest, len(stack))
        elif t in CLOSE_IDS:
            if not stack or stack.pop() != CLOSE_IDS.index(t):
                return None
    return None if stack else deepest


def _label_majority(seq: np.ndarray) -> int | None:
    c = Counter(word_classes(seq))
    return None if c[0] == c[1] else int(c[0] > c[1])  # ties carry no label


def _label_balanced(seq: np.ndarray) -> int | None:
    return int(bracket_depth(seq) is not None)


def _label_first_last(seq: np.ndarray) -> int | None:
    w = word_classes(seq)
    return int(w[0] == w[-1]) if len(w) >= 2 else None


def _label_depth(seq: np.ndarray) -> int | None:
    d = bracket_depth(seq)
    return None if d is None else min(d, 3)


# task -> (label function of a token sequence (None: unusable sample), number of classes)
TASKS: dict[str, tuple[Callable[[np.ndarray], int | None], int]] = {
    "majority": (_label_majority, 2),
    "balanced": (_label_balanced, 2),
    "first-last": (_label_first_last, 2),
    "depth": (_label_depth, 4),
}


def _corrupt_one_bracket(seq: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A copy of ``seq`` with one closing bracket turned into another type (same counts, broken nesting)."""
    out = seq.copy()
    closes = np.flatnonzero(np.isin(out, CLOSE_IDS))
    j = int(closes[rng.integers(len(closes))])
    t = CLOSE_IDS.index(int(out[j]))
    out[j] = CLOSE_IDS[(t + 1 + int(rng.integers(2))) % 3]
    return out


def labelled_sequences(task: str, n: int, seq_len: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` sequences with ``task`` labels, as equal a number per class as ``n`` allows (seeded, in draw order)."""
    label_fn, k = TASKS[task]
    quota = [n // k + (c < n % k) for c in range(k)]
    xs: list[np.ndarray] = []
    ys: list[int] = []
    while any(quota):
        for seq in generate_sequences(max(64, 2 * sum(quota)), seq_len, rng):
            if task == "balanced":  # only sequences with brackets: "no bracket => balanced" would be a shortcut
                if not np.isin(seq, CLOSE_IDS).any():
                    continue
                if rng.random() < 0.5:
                    seq = _corrupt_one_bracket(seq, rng)
            y = label_fn(seq)
            if y is not None and quota[y] > 0:
                quota[y] -= 1
                xs.append(seq)
                ys.append(y)
    return np.stack(xs), np.asarray(ys, dtype=np.int64)


def mask_tokens(
    tokens: np.ndarray, rng: np.random.Generator, rate: float = 0.15, vocab: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """BERT masking: ``round(rate * length)`` (at least 1) content positions per sequence get a target; of
    those 80 % become ``[MASK]``, 10 % a random token of ``vocab = (low, high)``, 10 % stay. Returns
    ``(inputs, targets)``, targets ``-100`` where nothing is predicted. Specials are never chosen."""
    low, high = vocab or (len(SPECIAL_TOKENS), GRAMMAR_VOCAB_SIZE)
    inputs, targets = tokens.copy(), np.full_like(tokens, IGNORE_INDEX)
    for i, seq in enumerate(tokens):
        content = np.flatnonzero(seq >= len(SPECIAL_TOKENS))
        if len(content) == 0:
            continue
        chosen = rng.choice(content, size=max(1, round(rate * len(content))), replace=False)
        targets[i, chosen] = seq[chosen]
        u = rng.random(len(chosen))
        inputs[i, chosen[u < 0.8]] = MASK_ID
        rand = chosen[(u >= 0.8) & (u < 0.9)]
        inputs[i, rand] = rng.integers(low, high, size=len(rand))
    return inputs, targets


def _check_sizes(n_train: int, n_test: int, seq_len: int) -> None:
    for name, v, lo in (("n_train", n_train, 1), ("n_test", n_test, 1), ("seq_len", seq_len, 8)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")


@register_dataset("grammar-mlm")
def grammar_mlm(
    *,
    root: Path | None = None,
    download: bool = False,
    n_train: int = 8000,
    n_test: int = 1000,
    seq_len: int = 32,
    mask_rate: float = 0.15,
    copies: int = 1,
    seed: int = 0,
) -> DataSplits:
    """Masked-token modelling on the synthetic grammar: input (seq_len,) token ids, targets per token.

    ``copies``: differently masked copies of each training sequence (BERT's dupe factor); the test split
    is masked once. ``num_classes`` is the vocabulary size (the targets are token ids)."""
    _check_sizes(n_train, n_test, seq_len)
    if not 0.0 < float(mask_rate) <= 1.0:
        raise ValueError(f"mask_rate must be in (0, 1], got {mask_rate!r}")
    if isinstance(copies, bool) or not isinstance(copies, int) or copies < 1:
        raise ValueError(f"copies must be an integer >= 1, got {copies!r}")
    splits = []
    for split, n, reps in ((0, n_train, copies), (1, n_test, 1)):
        rng = _rng(seed, "mlm", split)
        seqs = generate_sequences(n, seq_len, rng)
        x, y = mask_tokens(np.concatenate([seqs] * reps), rng, float(mask_rate))
        splits.append(ArrayDataset(torch.from_numpy(x), torch.from_numpy(y)))
    return DataSplits(
        name="grammar-mlm",
        train=splits[0],
        test=splits[1],
        num_classes=GRAMMAR_VOCAB_SIZE,
        input_shape=(seq_len,),
        meta={"vocab_size": GRAMMAR_VOCAB_SIZE, "pad_id": PAD_ID, "mask_id": MASK_ID, "source": "synthetic grammar"},
    )


@register_dataset("grammar-cls")
def grammar_cls(
    *,
    root: Path | None = None,
    download: bool = False,
    task: str = "majority",
    n_train: int = 2000,
    n_test: int = 1000,
    seq_len: int = 32,
    seed: int = 0,
) -> DataSplits:
    """Sequence classification on the synthetic grammar (``task``: majority, balanced, first-last, depth).

    Same language as ``grammar-mlm`` (its pretraining transfers); classes are balanced."""
    if task not in TASKS:
        raise ValueError(f"task: unknown grammar task {task!r}; known: {sorted(TASKS)}")
    _check_sizes(n_train, n_test, seq_len)
    parts = [labelled_sequences(task, n, seq_len, _rng(seed, task, split)) for split, n in ((0, n_train), (1, n_test))]
    train, test = (ArrayDataset(torch.from_numpy(x), torch.from_numpy(y)) for x, y in parts)
    return DataSplits(
        name="grammar-cls",
        train=train,
        test=test,
        num_classes=TASKS[task][1],
        input_shape=(seq_len,),
        meta={"vocab_size": GRAMMAR_VOCAB_SIZE, "pad_id": PAD_ID, "task": task, "source": "synthetic grammar"},
    )


# -- user text files ----------------------------------------------------------------------------------
def _read_rows(path: Path, fmt: str) -> list[dict]:
    if fmt == "auto":
        fmt = "jsonl" if path.suffix.lower() in (".jsonl", ".json", ".ndjson") else "csv"
    if fmt not in ("csv", "jsonl"):
        raise ValueError(f"format must be 'auto', 'csv' or 'jsonl', got {fmt!r}")
    with path.open(encoding="utf-8", newline="") as f:
        if fmt == "csv":
            return list(csv.DictReader(f))
        rows = []
        for i, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}: line {i} is not JSON ({err.msg})") from None
        return rows


def tokenize(text: str, tokenizer: str, lowercase: bool) -> list[str]:
    """Split ``text`` into word (whitespace) or character tokens."""
    text = text.lower() if lowercase else text
    return text.split() if tokenizer == "word" else list(text)


def build_vocabulary(texts: Sequence[list[str]], vocab_size: int, min_freq: int = 1) -> dict[str, int]:
    """Specials, then the most frequent tokens (ties by token) seen at least ``min_freq`` times, up to
    ``vocab_size`` ids in all."""
    counts = Counter(t for toks in texts for t in toks)
    ranked = sorted((t for t, c in counts.items() if c >= min_freq), key=lambda t: (-counts[t], t))
    words = list(SPECIAL_TOKENS) + ranked[: max(0, vocab_size - len(SPECIAL_TOKENS))]
    return {w: i for i, w in enumerate(words)}


def encode(tokens: list[str], vocab: dict[str, int], max_len: int) -> list[int]:
    """``[CLS]`` + token ids (unknown ones ``[UNK]``), truncated and ``[PAD]``-padded to ``max_len``."""
    ids = [CLS_ID] + [vocab.get(t, UNK_ID) for t in tokens][: max_len - 1]
    return ids + [PAD_ID] * (max_len - len(ids))


@register_dataset("text-file")
def text_file(
    *,
    root: Path | None = None,
    download: bool = False,
    path: str = "",
    test_path: str | None = None,
    format: str = "auto",
    text_column: str = "text",
    label_column: str = "label",
    tokenizer: str = "word",
    lowercase: bool = True,
    max_len: int = 64,
    vocab_size: int = 8192,
    min_freq: int = 1,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> DataSplits:
    """Your CSV or JSONL text classification file (``path``, relative to ``root`` if given).

    Tokens: ``word`` (whitespace) or ``char``; the vocabulary (at most ``vocab_size`` ids, specials
    included) comes from the training split only. Without ``test_path``, a seeded ``test_fraction``
    of the rows is the test split. Labels may be strings or integers (sorted: class i = i-th label);
    ``meta`` records ``vocab_size`` and ``label_names``."""
    if not path:
        raise ValueError("path: give the CSV/JSONL file of the text-file dataset")
    if tokenizer not in ("word", "char"):
        raise ValueError(f"tokenizer must be 'word' or 'char', got {tokenizer!r}")
    if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 2:
        raise ValueError(f"max_len must be an integer >= 2, got {max_len!r}")
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size <= len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size must be an integer > {len(SPECIAL_TOKENS)}, got {vocab_size!r}")

    def resolve(p: str) -> Path:
        q = Path(p).expanduser()
        return root / q if root is not None and not q.is_absolute() else q

    def load(p: str) -> tuple[list[str], list[str]]:
        file = resolve(p)
        if not file.is_file():
            raise FileNotFoundError(f"text-file: {file} does not exist")
        rows = _read_rows(file, format)
        if not rows:
            raise ValueError(f"{file}: no rows")
        for col in (text_column, label_column):
            if col not in rows[0]:
                option = "text_column" if col == text_column else "label_column"
                raise ValueError(f"{option}: {file} has no column {col!r} (columns: {sorted(rows[0])})")
        return [str(r[text_column]) for r in rows], [str(r[label_column]) for r in rows]

    texts, labels = load(path)
    if test_path is not None:
        test_texts, test_labels = load(test_path)
        train_idx = np.arange(len(texts))
    else:
        if not 0.0 < float(test_fraction) < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
        perm = np.random.default_rng(int(seed)).permutation(len(texts))
        n_test = max(1, round(float(test_fraction) * len(texts)))
        if n_test >= len(texts):
            raise ValueError(f"test_fraction={test_fraction} leaves no training rows ({len(texts)} rows)")
        test_idx, train_idx = np.sort(perm[:n_test]), np.sort(perm[n_test:])
        test_texts, test_labels = [texts[i] for i in test_idx], [labels[i] for i in test_idx]
        texts, labels = [texts[i] for i in train_idx], [labels[i] for i in train_idx]

    names = sorted(set(labels), key=lambda v: (0, int(v), v) if v.lstrip("-").isdigit() else (1, 0, v))
    unseen = sorted(set(test_labels) - set(names))
    if unseen:
        raise ValueError(f"{label_column}: test labels {unseen[:5]} never occur in the training split")
    label_id = {v: i for i, v in enumerate(names)}
    train_tok = [tokenize(t, tokenizer, lowercase) for t in texts]
    vocab = build_vocabulary(train_tok, vocab_size, min_freq)

    def as_dataset(toks: list[list[str]], labs: list[str]) -> ArrayDataset:
        x = torch.tensor([encode(t, vocab, max_len) for t in toks], dtype=torch.long)
        return ArrayDataset(x, torch.tensor([label_id[v] for v in labs], dtype=torch.long))

    test_tok = [tokenize(t, tokenizer, lowercase) for t in test_texts]
    return DataSplits(
        name="text-file",
        train=as_dataset(train_tok, labels),
        test=as_dataset(test_tok, test_labels),
        num_classes=len(names),
        input_shape=(max_len,),
        meta={"vocab_size": len(vocab), "pad_id": PAD_ID, "label_names": names, "source": str(resolve(path))},
    )


# -- a real text classification set from Debian --------------------------------------------------------
FORTUNES_ROOT = Path("/usr/share/games/fortunes")


def read_fortunes(file: Path) -> list[str]:
    """The entries of a fortune (strfile source) file: texts separated by lines holding only ``%``."""
    entries: list[str] = []
    current: list[str] = []
    for line in file.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.strip() == "%":
            if current:
                entries.append(" ".join(current))
            current = []
        else:
            current.append(line.strip())
    if current:
        entries.append(" ".join(current))
    return [e for e in entries if e.strip()]


@register_dataset("fortunes")
def fortunes(
    *,
    root: Path | None = None,
    download: bool = False,
    categories: list[str] | None = None,
    tokenizer: str = "word",
    max_len: int = 64,
    vocab_size: int = 8192,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> DataSplits:
    """Which fortune file a fortune cookie comes from (Debian ``fortunes``/``fortunes-min``, offline).

    ``root``: the directory of fortune files (default ``/usr/share/games/fortunes``; ``apt-get install
    fortunes`` gives 30 categories such as art, computers, food, love, science, sports); ``categories``:
    the files to use (default every one there). Tokens and vocabulary as ``text-file``."""
    folder = root if root is not None else FORTUNES_ROOT
    if not folder.is_dir():
        raise FileNotFoundError(f"fortunes: no directory {folder} (apt-get install fortunes, or set root)")
    found = sorted(p.name for p in folder.iterdir() if p.is_file() and not p.suffix and not p.name.startswith("."))
    names = sorted(categories) if categories is not None else found
    missing = sorted(set(names) - set(found))
    if missing or len(names) < 2:
        raise ValueError(f"categories: {missing or names} not usable; fortune files in {folder}: {found}")
    if tokenizer not in ("word", "char"):
        raise ValueError(f"tokenizer must be 'word' or 'char', got {tokenizer!r}")
    if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 2:
        raise ValueError(f"max_len must be an integer >= 2, got {max_len!r}")
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size <= len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size must be an integer > {len(SPECIAL_TOKENS)}, got {vocab_size!r}")
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    texts, labels = [], []
    for c, name in enumerate(names):
        entries = read_fortunes(folder / name)
        texts += entries
        labels += [c] * len(entries)
    perm = np.random.default_rng(int(seed)).permutation(len(texts))
    n_test = max(1, round(float(test_fraction) * len(texts)))
    test_idx, train_idx = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    toks = [tokenize(t, tokenizer, True) for t in texts]
    vocab = build_vocabulary([toks[i] for i in train_idx], vocab_size)

    def as_dataset(idx: np.ndarray) -> ArrayDataset:
        x = torch.tensor([encode(toks[i], vocab, max_len) for i in idx], dtype=torch.long).reshape(len(idx), max_len)
        return ArrayDataset(x, torch.tensor([labels[i] for i in idx], dtype=torch.long))

    return DataSplits(
        name="fortunes",
        train=as_dataset(train_idx),
        test=as_dataset(test_idx),
        num_classes=len(names),
        input_shape=(max_len,),
        meta={"vocab_size": len(vocab), "pad_id": PAD_ID, "label_names": names, "source": str(folder)},
    )
