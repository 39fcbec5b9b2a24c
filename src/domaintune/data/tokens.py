"""The one reader of token-tagged data (entity recognition): CoNLL-style files (a token and its
tag a line, a blank line between sentences) and JSON lines (`tokens` + `tags`), and the tag
schemes they use. Whatever the file's scheme (IOB2/BIO, IOB1 or IOBES), sentences come out in
IOB2, the scheme seqeval's default mode, conlleval and transformers' token-classification
pipeline read; the entities are the same."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from domaintune.data.labels import names_file
from domaintune.data.readers import data_format, find_column, read_table, read_text
from domaintune.errors import DataError

log = logging.getLogger(__name__)
TOKENS, TAGS = "tokens", "tags"  # the columns of a frame of sentences (and `text`, the tokens joined by spaces)
TOKEN_COLUMNS = ("tokens", "words", "token", "word")
TAG_COLUMNS = ("tags", "ner_tags", "labels", "tag", "ner", "label")
SENTENCE_COLUMNS = ("sentence #", "sentence_id", "sentence", "sent_id", "sentence_idx", "sentence_index")
TAG = re.compile(r"^(?:O|[BIES]-.+)$")
OUTSIDE = "O"


@dataclass(frozen=True)
class TokenReader:
    """How a data set writes its sentences: the JSON columns (guessed when null) and whether an
    illegal transition (I-X after O or another type) is refused (`strict`) or read as seqeval's
    lenient mode reads it, as the start of an entity (repaired to B-X, counted)."""

    tokens_column: str | None = None
    tags_column: str | None = None
    strict: bool = False
    tag_names: tuple[str, ...] | None = None  # tags written as 0-based ids into these (`data.tag_names`)

    @classmethod
    def from_data(cls, data: Mapping, path: Path | None) -> TokenReader:
        """The reader `data.*` describes; `data.tag_names` is a list of names or a file of them."""
        names = data.get("tag_names")
        if isinstance(names, str):
            names = names_file(names, "data.tag_names", path)
        return cls(
            data.get("tokens_column"),
            data.get("tags_column"),
            bool(data.get("strict")),
            tuple(str(n) for n in names) if names is not None else None,
        )

    def read(self, path: Path, tagged: bool = True) -> tuple[pd.DataFrame, dict]:
        """`tokens`, `tags` (IOB2) and `text` of every sentence in `path`; `tagged=False` (text to
        predict on): tags only where the file has them. Also what was found: the scheme, the
        repaired transitions and the sentences dropped for having no token."""
        if data_format(path) in ("jsonl", "json", "parquet"):
            sentences, lines = self._records(path, tagged)
        elif data_format(path) == "csv":
            sentences, lines = self._word_rows(path, tagged)
        else:
            sentences, lines = _conll(path)
        found = {"scheme": "IOB2", "repaired": 0, "empty": 0}
        kept, kept_lines = [], []
        for (tokens, tags), line in zip(sentences, lines):
            if not tokens:
                found["empty"] += 1
                continue
            if tags is not None:
                tags, scheme, repaired = self.to_iob2(tags, path, line)
                found["repaired"] += repaired
                found["scheme"] = "IOBES" if scheme == "IOBES" else found["scheme"]
            kept.append((tokens, tags))
            kept_lines.append(line)
        if not kept:
            raise DataError(
                f"{path}: no sentences found; one token and its tag a line, or JSON lines with tokens and tags"
            )
        if found["repaired"]:
            log.warning(
                "%s: %d tags continue an entity that never began (I- after O or another type); read as its start "
                "(seqeval's lenient reading; data.strict=true refuses them)",
                path,
                found["repaired"],
            )
        frame = pd.DataFrame({TOKENS: [t for t, _ in kept], TAGS: [g for _, g in kept]})
        if all(g is None for g in frame[TAGS]):
            frame = frame.drop(columns=TAGS)
        frame["text"] = [" ".join(tokens) for tokens in frame[TOKENS]]
        frame["line"] = kept_lines
        return frame, found

    def _records(self, path: Path, tagged: bool) -> tuple[list, list]:
        frame = read_table(path)
        tokens = find_column(frame, self.tokens_column, TOKEN_COLUMNS, "tokens", path)
        tags = (
            find_column(frame, self.tags_column, TAG_COLUMNS, "tags", path)
            if tagged or self.tags_column or any(str(c).lower() in TAG_COLUMNS for c in frame.columns)
            else None
        )
        sentences = []
        for number, row in enumerate(frame.itertuples(index=False), start=1):
            words, labels = _listed(getattr(row, tokens), path, number, tokens), None
            if tags is not None:
                labels = _listed(getattr(row, tags), path, number, tags)
                if len(labels) != len(words):
                    raise DataError(
                        f"{path}: row {number} has {len(words)} tokens and {len(labels)} tags; give each token its tag"
                    )
            sentences.append(([str(w) for w in words], [str(t) for t in labels] if labels is not None else None))
        return sentences, list(range(1, len(sentences) + 1))

    def _word_rows(self, path: Path, tagged: bool) -> tuple[list, list]:
        """A CSV of one word a row with a sentence column (`Sentence #`, `sentence_id`, ...) that is
        set on a sentence's first row or on all of them."""
        frame = read_table(path)
        tokens = find_column(frame, self.tokens_column, TOKEN_COLUMNS, "tokens", path)
        tags = find_column(frame, self.tags_column, TAG_COLUMNS, "tags", path) if tagged else None
        sentence = find_column(frame, None, SENTENCE_COLUMNS, "sentence", path, " (a CSV holds one word a row)")
        ids = frame[sentence].where(frame[sentence].astype(str).str.strip() != "").ffill()  # "" as missing
        starts = (ids != ids.shift()).cumsum()
        sentences, lines = [], []
        for _, rows in frame.groupby(starts, sort=False):
            words = rows[tokens].astype(str).tolist()
            sentences.append((words, rows[tags].astype(str).tolist() if tags else None))
            lines.append(int(rows.index[0]) + 2)  # the header is line 1
        return sentences, lines

    def to_iob2(self, tags: list[str], path: Path, line: int) -> tuple[list[str], str, int]:
        """`tags` in IOB2, the scheme they were written in, and how many illegal continuations were
        read as a beginning (`strict`: refused, naming the file and line)."""
        tags = self._named(tags, path, line)
        for offset, tag in enumerate(tags):
            if not TAG.match(tag):
                raise DataError(
                    f"{path}: line {line + offset}: tag '{tag}' is not O or B-/I-/E-/S- and a type (IOB2 or IOBES)"
                )
        scheme = "IOBES" if any(tag[0] in "ES" for tag in tags) else "IOB2"
        out, repaired, previous = [], 0, OUTSIDE
        for offset, tag in enumerate(tags):
            prefix, kind = (tag[0], tag[2:]) if tag != OUTSIDE else (OUTSIDE, "")
            continues = prefix in "IE" and previous != OUTSIDE and previous[2:] == kind and previous[0] in "BI"
            if prefix in "IE" and not continues:
                if self.strict:
                    raise DataError(
                        f"{path}: line {line + offset}: '{tag}' continues an entity that never began (after "
                        f"'{tags[offset - 1] if offset else 'the sentence start'}'); fix the tag, or leave "
                        "data.strict=false to read it as the entity's start"
                    )
                repaired += 1
            prefix = "B" if prefix == "S" or (prefix in "IE" and not continues) else "I" if prefix == "E" else prefix
            out.append(OUTSIDE if prefix == OUTSIDE else f"{prefix}-{kind}")
            # an entity ended by E- or S- is closed: the next I- cannot continue it
            previous = OUTSIDE if tag[0] in "ES" else out[-1]
        return out, scheme, repaired

    def _named(self, tags: list[str], path: Path, line: int) -> list[str]:
        """Tags written as ids (a Hugging Face dataset's `ner_tags`) as their names."""
        if not all(tag.isdigit() for tag in tags):
            return tags
        if self.tag_names is None:
            if all(tag == "0" for tag in tags):  # no entity, and O is id 0 wherever ids are used
                return [OUTSIDE] * len(tags)
            raise DataError(
                f"{path}: line {line}: tags are ids ({', '.join(tags[:3])}, ...); name them with "
                "data.tag_names=[O,B-PER,I-PER,...] or a file of names, one per line"
            )
        try:
            return [self.tag_names[int(tag)] for tag in tags]
        except IndexError:
            raise DataError(
                f"{path}: line {line}: tag id {max(map(int, tags))} is beyond the {len(self.tag_names)} data.tag_names"
            ) from None


def _listed(value, path: Path, row: int, column: str) -> list:
    """A JSON cell holding a list (tokens or tags); a string cell holding a JSON list is read too."""
    import json

    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = None
    if hasattr(value, "tolist"):
        value = value.tolist()
    if not isinstance(value, list):
        raise DataError(f"{path}: row {row}: '{column}' is not a list; give each sentence a list of {column}")
    return value


def _conll(path: Path) -> tuple[list, list]:
    """CoNLL sentences as (tokens, tags) and the line each starts on: the token is a line's first
    field, its tag the last (separated by a tab, else by spaces; the columns between are ignored);
    a blank line, or one holding only whitespace, ends a sentence; -DOCSTART- lines are skipped."""
    sentences, starts, tokens, tags, start = [], [], [], [], 0
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        fields = line.split("\t") if "\t" in line else line.split()
        fields = [f.strip() for f in fields if f.strip()]
        if not fields or fields[0] == "-DOCSTART-":
            if tokens:
                sentences.append((tokens, tags))
                starts.append(start)
            tokens, tags = [], []
            continue
        if len(fields) < 2:
            raise DataError(
                f"{path}: line {number} holds '{line.strip()[:40]}' alone; each line needs a token and its tag "
                "(tab- or space-separated)"
            )
        if not tokens:
            start = number
        tokens.append(fields[0])
        tags.append(fields[-1])
    if tokens:
        sentences.append((tokens, tags))
        starts.append(start)
    return sentences, starts


def entities(tags: list[str]) -> list[tuple[str, int, int]]:
    """The entities of an IOB2 tag sequence as (type, first word, word after the last), read as
    seqeval's default mode reads them: I-X after anything but B-X or I-X begins an entity, as
    the token-classification pipeline groups words."""
    found, begun = [], None
    for i, tag in enumerate([*tags, OUTSIDE]):
        kind = tag[2:] if tag != OUTSIDE else None
        if begun is not None and (tag == OUTSIDE or tag.startswith("B-") or kind != begun[0]):
            found.append((begun[0], begun[1], i))
            begun = None
        if kind is not None and begun is None:
            begun = (kind, i)
    return found


def tag_set(frames) -> list[str]:
    """Every tag that occurs, O first, then each type's B- and I- (types sorted), so that a type
    learnt only as B- still has its I-."""
    kinds = sorted({tag[2:] for frame in frames for tags in frame[TAGS] for tag in tags if tag != OUTSIDE})
    return [OUTSIDE] + [f"{prefix}-{kind}" for kind in kinds for prefix in "BI"]


def words_of(text: str, tokenizer) -> tuple[list[str], list[tuple[int, int]]]:
    """Raw text as words with character offsets, split the way the model's tokenizer splits
    words before sub-words (whitespace and punctuation for BERT), so that a word is what the
    token-classification pipeline calls one; a regex where the tokenizer has no such step."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and backend.pre_tokenizer is not None:
        pieces = backend.pre_tokenizer.pre_tokenize_str(text)
        spans = [(start, end) for _, (start, end) in pieces]
    else:
        spans = [m.span() for m in re.finditer(r"\w+|[^\w\s]", text)]
    # a byte-level pre-tokenizer's pieces carry the space before them: a word starts at its first letter
    spans = [(s + len(text[s:e]) - len(text[s:e].lstrip()), e) for s, e in spans if text[s:e].strip()]
    return [text[s:e] for s, e in spans], spans
