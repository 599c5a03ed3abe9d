"""Toxicity of text columns through a pluggable scorer.

The default ``LexiconToxicityScorer`` runs offline with a small built-in word list (no model, no
download), so the gate works on a laptop and in CI; a model-backed scorer can be plugged in with
``load_scorer("package.module:ClassName")`` without changing the gate.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict

SCORE_BATCH_ROWS = 8_192

# Deliberately small: common English insults and profanity. Matched as whole words, any case.
DEFAULT_LEXICON: frozenset[str] = frozenset({
    "ass", "asshole", "bastard", "bitch", "bullshit", "crap", "dumbass", "fuck", "fucked",
    "fucking", "idiot", "idiots", "imbecile", "jerk", "loser", "losers", "moron", "morons", "piss", "scum",
    "shit", "shitty", "slut", "stupid", "twat", "wanker", "whore",
})


class ToxicityError(ValueError):
    """A scorer could not be loaded or returned something other than one score in [0, 1] per text."""


@runtime_checkable
class TextScorer(Protocol):
    """Scores each text in [0, 1]; higher is more toxic."""

    def score(self, texts: Sequence[str]) -> list[float]: ...


class LexiconToxicityScorer:
    """1.0 for a text containing any lexicon word (whole word, case-insensitive), else 0.0."""

    def __init__(self, words: Iterable[str] | None = None) -> None:
        lexicon = sorted({w.strip().lower() for w in (DEFAULT_LEXICON if words is None else words) if w.strip()})
        if not lexicon:
            raise ToxicityError("the toxicity lexicon is empty")
        # Longest first so alternatives never shadow a longer word; \b keeps "class" from matching "ass".
        alternation = "|".join(re.escape(w) for w in sorted(lexicon, key=len, reverse=True))
        self._pattern = re.compile(rf"\b(?:{alternation})\b", re.IGNORECASE)

    def score(self, texts: Sequence[str]) -> list[float]:
        return [1.0 if self._pattern.search(t) else 0.0 for t in texts]


def load_scorer(spec: str) -> TextScorer:
    """Instantiate ``"module:ClassName"`` (no arguments) and check it has a ``score`` method."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ToxicityError(f"scorer {spec!r}: expected 'module:ClassName'")
    try:
        target = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ToxicityError(f"scorer {spec!r}: cannot import: {exc}") from None
    try:
        scorer = target()
    except TypeError as exc:
        raise ToxicityError(f"scorer {spec!r}: cannot be created without arguments: {exc}") from None
    if not isinstance(scorer, TextScorer):
        raise ToxicityError(f"scorer {spec!r}: {type(scorer).__name__} has no score(texts) method")
    return scorer


def scorer_name(scorer: TextScorer) -> str:
    cls = type(scorer)
    return f"{cls.__module__}:{cls.__qualname__}"


class ColumnToxicity(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    column: str
    texts: int
    flagged: int
    rate: float
    max_score: float


def score_text_columns(
    parquet_path: Path | Sequence[Path], columns: Sequence[str], scorer: TextScorer, cutoff: float,
    *, batch_rows: int = SCORE_BATCH_ROWS,
) -> dict[str, ColumnToxicity]:
    """Stream each text column of the file(s) and count non-null texts scored at or above ``cutoff``."""
    texts = dict.fromkeys(columns, 0)
    flagged = dict.fromkeys(columns, 0)
    worst = dict.fromkeys(columns, 0.0)
    paths = [parquet_path] if isinstance(parquet_path, (str, Path)) else list(parquet_path)
    for path in paths if columns else []:
        with pq.ParquetFile(path, pre_buffer=False) as pf:  # without pre-buffer: memory bounded by a batch
            for batch in pf.iter_batches(batch_size=batch_rows, columns=list(columns)):
                for i, name in enumerate(columns):
                    values = [v for v in batch.column(i).to_pylist() if v is not None]
                    scores = _checked(scorer, values)
                    texts[name] += len(values)
                    flagged[name] += sum(s >= cutoff for s in scores)
                    worst[name] = max([worst[name], *scores])
    return {
        name: ColumnToxicity(column=name, texts=texts[name], flagged=flagged[name],
                             rate=flagged[name] / texts[name] if texts[name] else 0.0, max_score=worst[name])
        for name in columns
    }


def _checked(scorer: TextScorer, values: list[str]) -> list[float]:
    if not values:
        return []
    scores = [float(s) for s in scorer.score(values)]
    if len(scores) != len(values):
        raise ToxicityError(f"{scorer_name(scorer)} returned {len(scores)} scores for {len(values)} texts")
    bad = next((s for s in scores if not 0.0 <= s <= 1.0), None)  # also catches NaN
    if bad is not None:
        raise ToxicityError(f"{scorer_name(scorer)} returned score {bad!r} outside [0, 1]")
    return scores
