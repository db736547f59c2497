"""People's names inside free text, for the detector.

A value *names someone* when it holds a pair of capitalised words the first of
which is a given name, or the second a surname, of the word list shipped beside
this module (``names.txt``: Latin-script given names and surnames from Faker's
person providers), or a title (Mr, Dr, …) before a capitalised word; or when it
holds, capitalised, a word of a name the detector sampled from a column it already
flagged as a name (:func:`known_words`). Common capitalised words that are also
names (May, Grace, Park, …) never count alone.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from importlib import resources

#: Name words shorter than this are not matched against sampled names.
MIN_WORD = 4
_TITLES = frozenset({"mr", "mrs", "ms", "miss", "mx", "dr", "prof", "sir", "madam"})
# Capitalised words that are names in some list but mostly something else.
_COMMON = frozenset(
    """
    january february march april may june july august september october november
    december monday tuesday wednesday thursday friday saturday sunday the this that
    these those there then they we you your our dear hello hi thanks thank please
    will mark grace hope faith joy rose bill art page park hill street road lane
    green white brown black young king long hall wood field new old north south east
    west central main first last great little van von de la le del der den da di
    customer client user team support service sales order account invoice note
    happy christmas easter summer winter spring autumn fall day week month year
    """.split()  # noqa: SIM905
)
_WORD = re.compile("[A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u017e'\u2019-]+")


@functools.cache
def word_list() -> tuple[frozenset[str], frozenset[str]]:
    """(given names, surnames) of ``names.txt``, lower-cased, common words left out."""
    given: set[str] = set()
    last: set[str] = set()
    text = resources.files(__package__).joinpath("names.txt").read_text("utf-8")
    for line in text.splitlines():
        if line[:2] in ("G ", "S "):
            word = line[2:].strip().lower()
            if word not in _COMMON:
                (given if line[0] == "G" else last).add(word)
    return frozenset(given), frozenset(last)


def _capital(w: str) -> bool:
    return len(w) >= 2 and w[0].isupper() and w[1:].replace("'", "").isalpha()


def names_someone(text: str, known: frozenset[str] = frozenset()) -> bool:
    """True when *text* holds a person's name (see the module docstring)."""
    given, last = word_list()
    words = _WORD.findall(text)
    for i, w in enumerate(words):
        low = w.lower()
        if known and len(w) >= MIN_WORD and low in known and _capital(w):
            return True
        if i + 1 == len(words):
            break
        nxt = words[i + 1]
        if not (_capital(w) and _capital(nxt)) or nxt.lower() in _COMMON:
            continue
        if low in _TITLES or (low in given and low not in _COMMON):
            return True
        if nxt.lower() in last and low not in _COMMON:
            return True
    return False


def known_words(names: Iterable[str]) -> frozenset[str]:
    """The lower-cased words (>= MIN_WORD letters) of sampled names."""
    return (
        frozenset(
            w.lower() for n in names for w in _WORD.findall(n) if len(w) >= MIN_WORD
        )
        - _COMMON
    )


def count(values: list[str], known: frozenset[str] = frozenset()) -> int:
    """How many of *values* name someone."""
    return sum(1 for v in values if names_someone(v, known))
