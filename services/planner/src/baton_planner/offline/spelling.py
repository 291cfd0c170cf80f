"""Typos: a word nobody spells that way, one slip away from a word the planner knows, is read as
that word ("tranlsate readme.md", "remve old.log", "whats on my calender").

The planner's rules and its matching read exact words, so one slipped key turned a delete into
a read or a translation into nothing. A word is corrected only when all of these hold, so a
real word is never rewritten into another:

- it is not a word the planner knows (its verbs, the catalogue's words, the synonym groups);
- it is not an English word: not a whole word of the local language model's vocabulary (the
  tokenizer that WordLlama's wheel installs; without it nothing is corrected);
- one slip makes it a known word of four letters or more, and every such word has the same
  stem (else it is ambiguous: left). A slip is two neighbouring letters swapped ("sned",
  "tranlsate"); in a word of five letters or more a letter left out or added ("remve"); in one
  of seven or more a letter changed ("calender"). The first letter stays (but by a swap): short
  real words meet others by a changed letter ("quota", "quote").

Quoted text, URLs, file names, addresses, channels, words in capitals and a word after a
preposition (a name: "in brest") are never touched.
Same request and catalogue: same correction.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from importlib.util import find_spec
from pathlib import Path
from types import ModuleType

from baton_planner.offline import words as w

_MEETINGS = (
    "meeting review call sync appointment interview standup retro retrospective demo session "
    "huddle kickoff briefing debrief workshop walkthrough presentation discussion conversation "
    "calendar schedule event events attendees slot slots"
)
_SKIP = re.compile(rf"{w.AS_WRITTEN}|\S+@\S+|#[\w-]+", re.I)
_WORD = re.compile(r"(?<![\w'-])[A-Za-z]{4,}(?![\w'-])")
# A word after these is a place's, a person's or a thing's name ("tide times in brest"), not a
# slip of a known word
_NAMING = re.compile(r"\b(?:in|at|for|from|near|with|to|of|on|by|about|called|named)\s+$", re.I)


def rule_words(*modules: ModuleType) -> set[str]:
    """The words the rules of these modules read: the letters-only words of their patterns
    ("scrap" of the lexicon's cancelling idioms, "huddle" of the calendar's meetings)."""
    found: set[str] = set()
    for module in modules:
        for value in vars(module).values():
            patterns = [value] if isinstance(value, re.Pattern) else []
            if isinstance(value, tuple):
                patterns = [p for entry in value for p in entry if isinstance(p, re.Pattern)]
            for pattern in patterns:
                found.update(re.findall(r"(?<![\\?<])\b[a-z]{4,}\b", str(pattern.pattern)))
    return found


def vocabulary(catalogue_words: Iterable[str], rules: Iterable[str] = ()) -> frozenset[str]:
    """The words a typo may be read as: the planner's verbs and nouns, its rules' and the
    catalogue's."""
    known = set(w.VERBS | w.SEND_VERBS | w.CONSUMER_VERBS | w.LANGUAGES) | set(rules)
    known.update(word for group in w.SYNONYMS for word in group)
    known.update(_MEETINGS.split())
    known.update(x.lower() for x in catalogue_words if x.isalpha())
    return frozenset(x for x in known if len(x) >= 4 and x not in w.STOP)


def corrected(text: str, known: frozenset[str]) -> str:
    """The text with its typos read as the words meant (see the module's rules)."""
    out, start = [], 0
    for kept in _SKIP.finditer(text):
        out.append(_words_fixed(text[start : kept.start()], known))
        out.append(kept[0])
        start = kept.end()
    out.append(_words_fixed(text[start:], known))
    return "".join(out)


_INFLECTION = re.compile(r"(?:s|es|ed|d|ing|er|ers|ly|al)$")


def _inflected(word: str, known: frozenset[str]) -> bool:
    """Is the word a known or English word with an ending ("meetings", "summarising")?"""
    for ending in _INFLECTION.finditer(word):
        base = word[: ending.start()]
        for root in (base, base + "e", base[:-1] if base[-2:-1] == base[-1:] else base):
            if len(root) >= 3 and (root in known or _english(root)):
                return True
    return False


def _words_fixed(text: str, known: frozenset[str]) -> str:
    def fixed(found: re.Match[str]) -> str:
        word = found[0]
        low = word.lower()
        if word.isupper() or low in known or low in w.STOP:
            return word
        if _NAMING.search(text, 0, found.start()):
            return word
        if _english(low) or _inflected(low, known):
            return word
        meant = _meant(low, known)
        if meant is None:
            return word
        return meant.capitalize() if word[0].isupper() else meant

    return _WORD.sub(fixed, text)


def _meant(word: str, known: frozenset[str]) -> str | None:
    """The one known word (up to its stem) a single slip away, or None."""
    found = sorted(x for x in _neighbours(word) if x in known and len(x) >= 4)
    if not found or len({w.stem(x) for x in found}) > 1:
        return None
    return found[0]


_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _neighbours(word: str) -> set[str]:
    """The words one slip away: two neighbours swapped; from five letters a letter left out
    or added; from seven a letter changed ("calender"). Shorter words meet real words that
    way ("quota" is one letter from "quote"), and the first letter is kept but by a swap."""
    cuts = [(word[:i], word[i:]) for i in range(1, len(word) + 1)]
    out = {word[1] + word[0] + word[2:]} | {a + b[1] + b[0] + b[2:] for a, b in cuts if len(b) > 1}
    if len(word) >= 5:
        out |= {a + b[1:] for a, b in cuts if b}
        out |= {a + c + b for a, b in cuts for c in _LETTERS}
    if len(word) >= 7:
        out |= {a + c + b[1:] for a, b in cuts if b for c in _LETTERS}
    return out - {word}


def _english(word: str) -> bool:
    return word in _whole_words()


@functools.cache
def _whole_words() -> frozenset[str]:
    """The whole words of the local model's tokenizer (read once from its wheel's files; no
    model is loaded). Without them every word counts as English: nothing is corrected."""
    spec = find_spec("wordllama")
    if spec is None or spec.origin is None:
        return _EVERYTHING
    folder = Path(spec.origin).parent / "tokenizers"
    try:
        config = next(folder.glob("*tokenizer_config.json"))
        vocab = json.loads(config.read_text())["model"]["vocab"]
    except (StopIteration, OSError, ValueError, KeyError, TypeError):
        return _EVERYTHING
    return frozenset(t[1:].lower() for t in vocab if t.startswith("▁") and t[1:].isalpha())


class _All(frozenset[str]):
    def __contains__(self, item: object) -> bool:
        return True


_EVERYTHING: frozenset[str] = _All()
