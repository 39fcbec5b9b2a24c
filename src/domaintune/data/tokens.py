"""The one reader of token-tagged data (entity recognition): CoNLL-style files (a token and its
tag a line, a blank line between sentences) and JSON lines (`tokens` + `tags`), and the tag
schemes they use. Whatever the file's scheme (IOB2/BIO, IOB1 or IOBES), sentences come out in
IOB2, the scheme seqeval's default mode, conlleval and transformers' token-classification
pipeline read; the entities are the same."""

from __future__ import annotations

import logging
import re
from collections import Counter
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
        fmt = data_format(path)
        if fmt in ("jsonl", "json", "parquet"):
            sentences = self._records(path, tagged)
        elif fmt == "csv":
            sentences = self._word_rows(path, tagged)
        else:
            sentences = _conll(path)
        found = {"scheme": "IOB2", "repaired": 0, "empty": sum(not tokens for tokens, _, _ in sentences)}
        kept, illegal, first, begun = [(t, g, w) for t, g, w in sentences if t], 0, None, 0
        for i, (tokens, tags, where) in enumerate(kept):
            if tags is not None:
                written = self._named(tags, path, where)
                tags, scheme, wrong = self.to_iob2(written, path, where)
                if wrong and first is None:
                    first = (where, wrong[0], written)
                illegal += len(wrong)
                begun += sum(tag[:2] in ("B-", "S-") for tag in written)
                found["scheme"] = "IOBES" if scheme == "IOBES" else found["scheme"]
                kept[i] = (tokens, tags, where)
        if not kept:
            raise DataError(f"{path}: no sentences found; one token and its tag a line, or rows of tokens and tags")
        if illegal > begun:  # most entities begin with I- (B- only between two of a type): IOB1, read as such
            found["scheme"] = "IOB1"
        elif illegal and self.strict:
            where, offset, tags = first
            raise DataError(
                f"{path}: {_place(where, offset)}: '{tags[offset]}' continues an entity that never began (after "
                f"'{tags[offset - 1] if offset else 'the sentence start'}'); fix the tag, or leave "
                "data.strict=false to read it as the entity's start"
            )
        elif illegal:
            found["repaired"] = illegal
            log.warning(
                "%s: %d tags continue an entity that never began (I- after O or another type); read as its start "
                "(seqeval's lenient reading; data.strict=true refuses them)",
                path,
                illegal,
            )
        frame = pd.DataFrame({TOKENS: [t for t, _, _ in kept], TAGS: [g for _, g, _ in kept]})
        if all(g is None for g in frame[TAGS]):
            frame = frame.drop(columns=TAGS)
        frame["text"] = [" ".join(tokens) for tokens in frame[TOKENS]]
        return frame, found

    def _tags_column(self, frame: pd.DataFrame, path: Path, tagged: bool) -> str | None:
        """The tags column: required for training data, used where present in data to predict on."""
        if tagged or self.tags_column or any(str(c).lower() in TAG_COLUMNS for c in frame.columns):
            return find_column(frame, self.tags_column, TAG_COLUMNS, "tags", path)
        return None

    def _records(self, path: Path, tagged: bool) -> list[tuple]:
        frame = read_table(path)
        tokens = find_column(frame, self.tokens_column, TOKEN_COLUMNS, "tokens", path)
        tags = self._tags_column(frame, path, tagged)
        sentences = []
        for number, (cell, labels) in enumerate(
            zip(frame[tokens], frame[tags] if tags else [None] * len(frame)), start=1
        ):
            words = _listed(cell, path, number, tokens)
            if tags is not None:
                labels = _listed(labels, path, number, tags)
                if len(labels) != len(words):
                    raise DataError(
                        f"{path}: row {number} has {len(words)} tokens and {len(labels)} tags; give each token its tag"
                    )
            sentences.append(
                ([str(w) for w in words], [str(t) for t in labels] if tags else None, ("row", number, "token"))
            )
        return sentences

    def _word_rows(self, path: Path, tagged: bool) -> list[tuple]:
        """A CSV of one word a row with a sentence column (`Sentence #`, `sentence_id`, ...) that is
        set on a sentence's first row or on all of them."""
        frame = read_table(path)
        tokens = find_column(frame, self.tokens_column, TOKEN_COLUMNS, "tokens", path)
        tags = self._tags_column(frame, path, tagged)
        sentence = find_column(frame, None, SENTENCE_COLUMNS, "sentence", path, " (a CSV holds one word a row)")
        ids = frame[sentence].where(frame[sentence].astype(str).str.strip() != "").ffill()  # "" as missing
        sentences = []
        for _, rows in frame.groupby((ids != ids.shift()).cumsum(), sort=False):
            words = rows[tokens].astype(str).tolist()
            labels = rows[tags].astype(str).tolist() if tags else None
            sentences.append((words, labels, ("row", int(rows.index[0]) + 1)))  # word rows, header excluded
        return sentences

    def to_iob2(self, tags: list[str], path: Path, where: tuple) -> tuple[list[str], str, list[int]]:
        """`tags` in IOB2, the scheme they were written in, and where an I- (or E-) continues no
        entity: read as its beginning, as seqeval's default mode reads it."""
        for offset, tag in enumerate(tags):
            if not TAG.match(tag):
                raise DataError(
                    f"{path}: {_place(where, offset)}: tag '{tag}' is not O or B-/I-/E-/S- and a type "
                    "(IOB2, IOB1 or IOBES)"
                )
        scheme = "IOBES" if any(tag[0] in "ES" for tag in tags) else "IOB2"
        out, wrong, previous = [], [], OUTSIDE
        for offset, tag in enumerate(tags):
            prefix, kind = (tag[0], tag[2:]) if tag != OUTSIDE else (OUTSIDE, "")
            continues = prefix in "IE" and previous != OUTSIDE and previous[2:] == kind and previous[0] in "BI"
            if prefix in "IE" and not continues:
                wrong.append(offset)
            prefix = "B" if prefix == "S" or (prefix in "IE" and not continues) else "I" if prefix == "E" else prefix
            out.append(OUTSIDE if prefix == OUTSIDE else f"{prefix}-{kind}")
            # an entity ended by E- or S- is closed: the next I- cannot continue it
            previous = OUTSIDE if tag[0] in "ES" else out[-1]
        return out, scheme, wrong

    def _named(self, tags: list[str], path: Path, where: tuple) -> list[str]:
        """Tags written as ids (a Hugging Face dataset's `ner_tags`) as their names."""
        if not all(tag.isdigit() for tag in tags):
            return tags
        if self.tag_names is None:
            if all(tag == "0" for tag in tags):  # no entity, and O is id 0 wherever ids are used
                return [OUTSIDE] * len(tags)
            raise DataError(
                f"{path}: {_place(where, 0)}: tags are ids ({', '.join(tags[:3])}, ...); name them with "
                "data.tag_names=[O,B-PER,I-PER,...] or a file of names, one per line"
            )
        try:
            return [self.tag_names[int(tag)] for tag in tags]
        except IndexError:
            raise DataError(
                f"{path}: {_place(where, 0)}: tag id {max(map(int, tags))} is beyond the {len(self.tag_names)} "
                "data.tag_names"
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


def _conll(path: Path) -> list[tuple]:
    """CoNLL sentences as (tokens, tags, where): the token is a line's first field, its tag the last
    (separated by a tab, else by spaces; the columns between are ignored); a blank line, or one
    holding only whitespace, ends a sentence; -DOCSTART- lines are skipped."""
    sentences, tokens, tags, start = [], [], [], 0
    for number, line in enumerate([*read_text(path).splitlines(), ""], start=1):
        fields = [f.strip() for f in (line.split("\t") if "\t" in line else line.split()) if f.strip()]
        if not fields or fields[0] == "-DOCSTART-":
            if tokens:
                sentences.append((tokens, tags, ("line", start)))
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
    return sentences


def _place(where: tuple, offset: int) -> str:
    """Where a sentence's `offset`-th token is in its file: a line (CoNLL), a word row (CSV), or a
    row and the token in it (JSON lines)."""
    if len(where) == 3:
        return f"{where[0]} {where[1]}, {where[2]} {offset + 1}"
    return f"{where[0]} {where[1] + offset}"


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


def entity_counts(sentences) -> dict[str, int]:
    """Entities per type over IOB2 tag sequences, types sorted."""
    counts = Counter(kind for tags in sentences for kind, _, _ in entities(list(tags)))
    return dict(sorted(counts.items()))


def tag_set(frames) -> list[str]:
    """Every tag that occurs, O first, then each type's B- and I- (types sorted), so that a type
    learnt only as B- still has its I-."""
    kinds = sorted({tag[2:] for frame in frames for tags in frame[TAGS] for tag in tags if tag != OUTSIDE})
    return [OUTSIDE] + [f"{prefix}-{kind}" for kind in kinds for prefix in "BI"]
