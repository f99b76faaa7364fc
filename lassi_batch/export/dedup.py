"""Duplicate and near-duplicate records, by normalised code (exact hash, then MinHash LSH).

Repeated trials of one app often produce the same program, or one that differs in a comment or a
constant. Such copies overweight one solution and, across splits, leak the test set into
training; so exact copies (same code after removing comments and whitespace) are dropped first,
then near copies whose estimated Jaccard similarity of token 5-grams reaches a threshold
(datasketch's MinHash LSH, with a fixed seed so that the result is reproducible).
"""

from __future__ import annotations

import hashlib
import re

from datasketch import MinHash, MinHashLSH

NUM_PERM = 128
SHINGLE = 5
MINHASH_SEED = 1
# a string or character literal (kept), or a comment (dropped)
_LITERAL_OR_COMMENT = re.compile(r'"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'|//[^\n]*|/\*.*?\*/', re.S)
_TOKEN = re.compile(r"\w+|[^\w\s]")


def normalize_code(text: str) -> str:
    """Code without comments and with whitespace runs collapsed: what two copies share."""
    no_comments = _LITERAL_OR_COMMENT.sub(lambda m: m.group(0) if m.group(0)[0] in "\"'" else " ", text)
    return " ".join(no_comments.split())


def code_hash(text: str) -> str:
    return hashlib.sha256(normalize_code(text).encode("utf-8")).hexdigest()


def shingles(text: str, k: int = SHINGLE) -> set[bytes]:
    tokens = _TOKEN.findall(normalize_code(text))
    if len(tokens) <= k:
        return {" ".join(tokens).encode("utf-8")}
    return {" ".join(tokens[i:i + k]).encode("utf-8") for i in range(len(tokens) - k + 1)}


def minhash(text: str) -> MinHash:
    m = MinHash(num_perm=NUM_PERM, seed=MINHASH_SEED)
    m.update_batch(sorted(shingles(text)))
    return m


class Deduplicator:
    """Keeps the first of each group of exact or near copies, in the order records are offered."""

    def __init__(self, threshold: float | None):
        """`threshold`: Jaccard similarity at or above which a record counts as a near copy;
        None keeps near copies (exact copies are always dropped)."""
        self.threshold = threshold
        self._hashes: set[str] = set()
        self._lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM) if threshold is not None else None
        self._kept: dict[str, MinHash] = {}
        self.exact_dropped = 0
        self.near_dropped = 0

    def offer(self, key: str, text: str) -> bool:
        """True when `text` is new (and remembered), False when it copies a kept record."""
        h = code_hash(text)
        if h in self._hashes:
            self.exact_dropped += 1
            return False
        if self._lsh is not None:
            m = minhash(text)
            # LSH returns candidates; confirm with the estimated similarity itself
            if any(self._kept[k].jaccard(m) >= self.threshold for k in sorted(self._lsh.query(m))):  # type: ignore[operator]
                self.near_dropped += 1
                return False
            self._lsh.insert(key, m)
            self._kept[key] = m
        self._hashes.add(h)
        return True
