"""A FAQ's synonyms: equivalent groups and one-way expansions, as Meilisearch and Elasticsearch define them.

Written in the corpus header (``{"faq": {…, "synonyms": {"equivalent": [["médiathèque", "bibliothèque"]],
"oneway": {"mdp": ["mot de passe"]}}}}``):

- an **equivalent** group: a query holding any of its phrases finds the entries holding any other;
- a **one-way** expansion ``"mdp": ["mot de passe"]``: a query holding "mdp" finds the entries holding "mot de
  passe" (or "mdp"); a query holding "mot de passe" does not find an entry that only says "mdp". Expansions chain
  (``a -> b`` and ``b -> c``: a query with "a" finds "c"), so a cycle is refused: write an equivalent group.

Phrases are compared as the lexical leg reads text (``text_analysis``: accents and case folded, stopwords dropped,
stemmed), so "Médiathèque" and "mediatheques" are one phrase. How they apply (``SynonymMatcher``): every group and
every one-way source has a term of its own (``~0``, ``~mdp``…, never a word's term); an entry holding one of the
phrases the term stands for gets it, and the query's phrase is replaced by it. One term per phrase keeps the
lexical score's scale (a query word weighs once, whichever synonym the entry uses) and the answer check's coverage
per query word (a word covered by a synonym is covered).
"""

from __future__ import annotations

from dataclasses import dataclass

from .text_analysis import analyzer

#: Limits: phrases per group, groups, one-way sources, targets per source, characters per phrase.
MAX_GROUP, MAX_GROUPS, MAX_ONEWAY, MAX_TARGETS, MAX_PHRASE_CHARS = 20, 1000, 1000, 20, 100
#: The phrases every one-way source reaches, chains followed, summed over the sources (what the matcher holds).
MAX_EXPANSIONS = 20_000


class SynonymError(ValueError):
    """A synonym list that cannot be used; the message says what and where (``equivalent[2]``, ``oneway.mdp``)."""


def phrase_terms(phrase: str) -> tuple[str, ...]:
    """The lexical terms of a phrase (empty when it holds only stopwords)."""
    return tuple(analyzer().terms(phrase))


@dataclass(frozen=True)
class Synonyms:
    """A FAQ's synonym list, as written (phrases stripped), checked by ``parse``."""

    equivalent: tuple[tuple[str, ...], ...] = ()
    oneway: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.equivalent or self.oneway)

    def to_dict(self) -> dict:
        """JSON-ready form, as the corpus header writes it."""
        return {"equivalent": [list(g) for g in self.equivalent], "oneway": {k: list(v) for k, v in self.oneway}}

    @classmethod
    def parse(cls, obj) -> Synonyms:
        """Check a header's ``synonyms`` value.

        Raises:
            SynonymError: not the expected shape, a group of fewer than two distinct phrases, a phrase of stopwords
                only or over ``MAX_PHRASE_CHARS``, a phrase in two groups, a one-way source that is also in a group,
                or a cycle of one-way expansions.
        """
        if not isinstance(obj, dict):
            raise SynonymError(f"must be an object with 'equivalent' and/or 'oneway', not {type(obj).__name__}")
        unknown = sorted(set(obj) - {"equivalent", "oneway"})
        if unknown:
            raise SynonymError(f"unknown key(s) {unknown}; known: equivalent, oneway")
        groups_in, oneway_in = obj.get("equivalent", []), obj.get("oneway", {})
        if not isinstance(groups_in, list):
            raise SynonymError("'equivalent' must be a list of lists of phrases")
        if not isinstance(oneway_in, dict):
            raise SynonymError("'oneway' must be an object: a phrase -> a list of phrases")
        if len(groups_in) > MAX_GROUPS or len(oneway_in) > MAX_ONEWAY:
            raise SynonymError(f"at most {MAX_GROUPS} equivalent groups and {MAX_ONEWAY} one-way sources")
        groups, group_of, written = [], {}, {}  # written: a phrase's terms -> the phrase as first written
        for i, group in enumerate(groups_in):
            where = f"equivalent[{i}]"
            if not isinstance(group, list) or len(group) > MAX_GROUP:
                raise SynonymError(f"{where} must be a list of 2 to {MAX_GROUP} phrases")
            phrases = tuple(_phrase(p, f"{where}[{j}]") for j, p in enumerate(group))
            distinct = {}
            for phrase in phrases:
                distinct.setdefault(phrase_terms(phrase), []).append(phrase)
            if len(distinct) < 2:
                if len(phrases) > 1:
                    said = (
                        " and ".join(repr(p) for p in phrases) + " read as the same words (case, accents and "
                        "endings are folded)"
                    )
                else:
                    said = f"only {phrases[0]!r}" if phrases else "nothing"
                raise SynonymError(f"{where} holds one phrase ({said}): a group needs at least two different ones")
            for terms, spelt in distinct.items():
                if terms in group_of:
                    raise SynonymError(
                        f"{where}: {spelt[0]!r} is already in equivalent[{group_of[terms]}] (as "
                        f"{written[terms]!r}): merge the two groups"
                    )
                group_of[terms], written[terms] = i, spelt[0]
            groups.append(phrases)
        oneway, targets_of, sources = [], {}, {}
        for key, targets in oneway_in.items():
            where = f"oneway.{key}"
            source = _phrase(key, where)
            if not isinstance(targets, list) or not 1 <= len(targets) <= MAX_TARGETS:
                raise SynonymError(f"{where} must be a list of 1 to {MAX_TARGETS} phrases")
            phrases = tuple(_phrase(p, f"{where}[{j}]") for j, p in enumerate(targets))
            terms = phrase_terms(source)
            if terms in group_of:
                raise SynonymError(
                    f"{where}: {source!r} is in equivalent[{group_of[terms]}] (as {written[terms]!r}); add its "
                    "targets to that group"
                )
            if terms in targets_of:
                raise SynonymError(
                    f"{where}: {source!r} and {sources[terms]!r} read as the same word (case, accents and endings "
                    "are folded): give their targets once"
                )
            expanded = {phrase_terms(p): p for p in phrases}
            if terms in expanded:
                raise SynonymError(f"{where}: {source!r} expands to itself ({expanded[terms]!r})")
            targets_of[terms], sources[terms] = set(expanded), source
            for t, p in expanded.items():
                written.setdefault(t, p)
            written.setdefault(terms, source)
            oneway.append((source, phrases))
        _refuse_cycles(targets_of, written)
        _refuse_too_many_expansions(targets_of, [{phrase_terms(p) for p in group} for group in groups])
        return cls(tuple(groups), tuple(oneway))


def _phrase(value, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SynonymError(f"{where} must be a non-empty string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise SynonymError(f"{ascii(where)} is not valid text (a lone surrogate)") from None
    phrase = " ".join(value.split())
    if len(phrase) > MAX_PHRASE_CHARS:
        raise SynonymError(f"{where} is longer than {MAX_PHRASE_CHARS} characters")
    if not phrase_terms(phrase):
        raise SynonymError(f"{where} ({phrase!r}) holds only stopwords: the search never sees it")
    return phrase


def _refuse_cycles(targets_of: dict[tuple[str, ...], set[tuple[str, ...]]], written: dict) -> None:
    """SynonymError naming a cycle of one-way expansions (``a -> b -> a``, as written), if there is one; or when the
    expansions, chained, reach more than ``MAX_EXPANSIONS`` phrases in all (each source's phrases count)."""
    done: set = set()
    for start in targets_of:
        if start in done:
            continue
        path, on_path = [start], {start}
        stack = [iter(sorted(targets_of.get(start, ())))]
        while stack:  # depth first, without recursion: a chain of 1,000 sources is no stack overflow
            nxt = next(stack[-1], None)
            if nxt is None:
                stack.pop()
                node = path.pop()
                on_path.discard(node)
                done.add(node)
                continue
            if nxt in on_path:
                cycle = [*path[path.index(nxt) :], nxt]
                raise SynonymError(
                    "one-way expansions make a cycle ("
                    + " -> ".join(written.get(t, " ".join(t)) for t in cycle)
                    + "): write these phrases as an equivalent group"
                )
            if nxt in targets_of and nxt not in done:
                path.append(nxt)
                on_path.add(nxt)
                stack.append(iter(sorted(targets_of[nxt])))


def _refuse_too_many_expansions(targets_of: dict, groups: list[set]) -> None:
    """SynonymError when the one-way expansions, chains and the groups of their targets followed (as the matcher
    follows them), reach more than ``MAX_EXPANSIONS`` phrases in all; stops counting there."""
    direct = _expansions(targets_of, groups)
    total = 0
    for source in targets_of:
        total += len(_closure(source, direct, limit=MAX_EXPANSIONS - total + 1)) - 1
        if total > MAX_EXPANSIONS:
            raise SynonymError(
                f"the one-way expansions, chained, reach more than {MAX_EXPANSIONS} phrases in all: shorten the "
                "chains, or write equivalent groups"
            )


def _expansions(targets_of: dict, groups: list[set]) -> dict:
    """What each phrase expands to in one step: a one-way source to its targets, a group's phrase to the rest of its
    group (so a target that is in a group brings the whole group)."""
    direct = {source: set(targets) for source, targets in targets_of.items()}
    for members in groups:
        for terms in members:
            direct.setdefault(terms, set()).update(members - {terms})
    return direct


class SynonymMatcher:
    """Applies a synonym list to term sequences: the terms an entry gains, the terms a query is read as."""

    def __init__(self, synonyms: Synonyms | None):
        synonyms = synonyms or Synonyms()
        self._document: dict[tuple[str, ...], set[str]] = {}  # phrase -> the synonym terms an entry holding it gets
        self._query: dict[tuple[str, ...], str] = {}  # phrase -> the synonym term a query holding it is read as
        #: Each synonym term -> the phrases it stands for (a group's, or a one-way source's targets).
        self.phrases: dict[str, list[str]] = {}
        for i, group in enumerate(synonyms.equivalent):
            self.phrases[f"~={i}"] = list(group)
            for phrase in group:
                terms = phrase_terms(phrase)
                self._document.setdefault(terms, set()).add(f"~={i}")
                self._query[terms] = f"~={i}"
        direct = _expansions(
            {phrase_terms(k): {phrase_terms(t) for t in v} for k, v in synonyms.oneway},
            [{phrase_terms(p) for p in group} for group in synonyms.equivalent],
        )
        for source, targets in synonyms.oneway:
            source = phrase_terms(source)
            token = "~>" + "_".join(source)
            self.phrases[token] = list(targets)
            for terms in _closure(source, direct):
                self._document.setdefault(terms, set()).add(token)
            self._query[source] = token
        self._longest = max((len(t) for t in self._document), default=0)

    def __bool__(self) -> bool:
        return bool(self._document)

    def spans(self, terms: list[str]) -> list[tuple[int, int, str]]:
        """``(start, end, synonym term)`` for each phrase of the list found in ``terms`` (every occurrence)."""
        out = []
        for i in range(len(terms)):
            for n in range(1, min(self._longest, len(terms) - i) + 1):
                for token in sorted(self._document.get(tuple(terms[i : i + n]), ())):
                    out.append((i, i + n, token))
        return out

    def document_terms(self, terms: list[str]) -> list[str]:
        """An entry's terms followed by the synonym terms of the phrases it holds."""
        return terms + [token for _, _, token in self.spans(terms)] if self else terms

    def query_spans(self, terms: list[str]) -> list[tuple[int, int, str | None]]:
        """A query's terms cut left to right into ``(start, end, synonym term)`` for each synonym phrase (the
        longest that starts there) and ``(i, i + 1, None)`` for each other term."""
        out, i = [], 0
        while i < len(terms):
            for n in range(min(self._longest, len(terms) - i), 0, -1):
                token = self._query.get(tuple(terms[i : i + n]))
                if token is not None:
                    out.append((i, i + n, token))
                    i += n
                    break
            else:
                out.append((i, i + 1, None))
                i += 1
        return out

    def query_words(self, words: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """A query's ``(term, word)`` pairs with each synonym phrase (``query_spans``) replaced by ``(its synonym
        term, the query's words of it)``."""
        if not self:
            return words
        return [
            words[i] if token is None else (token, " ".join(w for _, w in words[i:j]))
            for i, j, token in self.query_spans([t for t, _ in words])
        ]


def _closure(source, direct, limit: int | None = None) -> set[tuple[str, ...]]:
    """The source and every phrase it expands to, through chained expansions and the groups of its targets (with
    ``limit``: stops once that many phrases besides the source are found)."""
    seen, todo = {source}, [source]
    while todo:
        for nxt in direct.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
                if limit is not None and len(seen) > limit:
                    return seen
    return seen
