"""The words of a request: vocabulary, light stemming and the things a task names (URLs, files,
durations, quoted text, key=value pairs, JSON paths).

Plain regular expressions on purpose: requests are short imperative English, the planner must give
the same plan for the same words, and a parsing library would bring a model or a grammar to keep.
"""

from __future__ import annotations

import re

WORD = re.compile(r"[A-Za-z0-9]+")
STOP = frozenset(
    "a an the and or of to for from in on at by with about into onto over as is are be it its "
    "them they those these this that then please me my our your their i we you all both each "
    "some any one up out so than via per what which who whom how when where why whether there "
    "here not no do does did has have had was were can will would should could just very".split()
)
# Verbs that start a clause even with nothing after them ("..., then summarise").
STRONG_VERBS = frozenset(
    "summarise summarize analyse analyze compare combine merge translate classify explain describe "
    "save store persist export write read open load wait sleep pause fetch download upload collect "
    "gather send notify delete remove erase extract fill format render compose research find look "
    "get create generate recommend evaluate assess count print show tell ask retrieve scrape crawl "
    "pull grab convert transform calculate compute rank sort filter publish share archive copy "
    "append attach submit say greet book pay refund concatenate join rewrite proofread cancel "
    "reschedule move rename suggest propose brainstorm invent imagine "
    # work on a text that no tool names: the language model's ("group it into themes")
    "group cluster categorise categorize tag outline paraphrase simplify shorten condense "
    "reword restructure reorganise reorganize highlight annotate".split()
)
# Words that are verbs or nouns: they start a clause only when something follows them.
WEAK_VERBS = frozenset(
    "search check report record request plan answer draft post put call list review monitor email "
    "message parse pick select note log make test verify validate update track watch query "
    "schedule take give".split()
)
VERBS = STRONG_VERBS | WEAK_VERBS
# A task led by one of these, or naming earlier results, consumes the previous task's output.
CONSUMER_VERBS = frozenset(
    "summarise summarize combine merge compare save store persist export send report notify email "
    "publish share append archive attach translate analyse analyze classify explain rewrite "
    "proofread format recommend evaluate assess rank decide choose".split()
)
SEND_VERBS = frozenset(
    "send post notify publish submit share push upload email mail message alert ping forward".split()
)
PRONOUNS = frozenset("them it its they those these this that both everything all together".split())
EARLIER = re.compile(
    r"\b(?:the|those|these|that|this|all|both)\s+(?:results?|outputs?|summary|summaries|reports?|"
    r"data|findings|responses?|answers?|text|contents?|lists?|pages?|digest|analysis|collected|"
    r"translation|draft|value|field|json)\b",
    re.I,
)

URL = re.compile(r"https?://[^\s,;\"'<>)\]]+")
FILE = re.compile(
    r"(?<![\w/.-])[\w\-]+(?:[/.][\w\-]+)*\.(?:md|txt|json|csv|tsv|html|yaml|yml|log|xml|pdf|py|js|ts"
    r"|ini|toml|out|tar|gz|tgz|zip|png|jpe?g|gif|svg|sql|sh|cfg|conf|bak|docx?|xlsx?|pptx?|lock|env"
    r"|rst|ipynb|parquet|dat|tmp|rtf|odt|ods|mp3|mp4|wav|webp|jsonl|ndjson|lst|properties|db|sqlite3?"
    r"|bin|pid|dump|old|swp|pem|crt|avro|orc|epub|mobi|tsx|jsx|java|rb|php|cpp)\b",
    re.I,
)
DURATION = re.compile(
    r"\b(\d+(?:\.\d+)?)\s*(ms|milliseconds?|s|secs?|seconds?|m|mins?|minutes?|h|hrs?|hours?)?\b",
    re.I,
)
TIMED = re.compile(
    r"\b\d+(?:\.\d+)?\s*(?:ms|milliseconds?|s|secs?|seconds?|m|mins?|minutes?|h|hrs?|hours?)\b",
    re.I,
)
# Linear on any text: a pattern that may start anywhere in a long run (of blanks, letters,
# digits) and scan to the run's end from each start is quadratic in the run. So a pattern led by
# a repeated class starts only where the run starts: ``BLANKS_START`` for ``\s*``/``\s+``, and
# a lookbehind on the class for the others. Where a run start fails, a start inside it fails too
# (it sees the same text after the run), so the matches are the same.
BLANKS_START = r"(?!(?<=\s)\s)"
MAX_REQUEST_CHARS = 2000  # what the offline planner reads: requests are sentences, not documents
# What is kept as written when words are read as others: quoted text, URLs, file names.
AS_WRITTEN = r"'[^']*'|\"[^\"]*\"|https?://\S+|[\w./-]+\.\w+"
EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+\.[\w.-]+")
# A single quote opens only where no letter leads it and closes only where none follows: the
# apostrophes of "it's" and "Here's" are no quotes.
QUOTED = re.compile(r"(?<![A-Za-z0-9])'([^']+)'(?![A-Za-z])|\"([^\"]+)\"|“([^”]+)”")
PAIR = re.compile(r"\b([A-Za-z_]\w*)\s*=\s*(\"[^\"]*\"|'[^']*'|[^\s,;]+)")
PLACEHOLDER_NAME = re.compile(r"\{([A-Za-z_]\w*)\}")


# Words that name the same thing in tool descriptions and requests: a task's word also counts
# as the others of its group (once), so a tool described with one of them is found by another.
SYNONYMS: tuple[frozenset[str], ...] = tuple(
    frozenset(group.split())
    for group in (
        "issue ticket bug defect",
        "customer client",
        "forecast weather rain snow wind temperature windy rainy snowy sunny stormy outlook",
        # how it feels outside asks about the weather ("how cold is it in oslo?")
        "weather cold hot warm chilly freezing humid cloudy foggy",
        # what to wear asks about the weather ("do I need a jacket in riga?")
        "weather jacket coat raincoat umbrella sunscreen scarf gloves",
        "stock share trading ticker",
        "price quote cost",
        "message note",
        "page article doc docs document",
        "repository repo",
        "commits history changelog",
        "delete remove erase wipe purge",
        "pay payment transfer wire remit",
    )
)


# Words that also mean another, one way only: "find wiki pages about …" is a search, but
# "search …" is no "find" (a tool described as finding things is not a search tool).
ALSO_MEANS = {"find": "search", "seek": "search", "hunt": "search"}


# Languages: a phrase put "into swedish" is translated (the list fans out, one per language).
LANGUAGES = frozenset(
    "english french german spanish italian portuguese dutch swedish finnish norwegian danish "
    "icelandic estonian latvian lithuanian polish czech slovak hungarian romanian bulgarian "
    "greek turkish russian ukrainian arabic hebrew persian hindi bengali urdu chinese mandarin "
    "cantonese japanese korean vietnamese thai indonesian malay tagalog swahili catalan "
    "basque galician welsh irish croatian serbian slovenian".split()
)


def stem(word: str) -> str:
    """Light stemming: summary/summaries/summarise/summarize all become "summar"."""
    w = word.lower().replace("ize", "ise").replace("yze", "yse")
    if w.endswith("ies") and len(w) > 4:
        w = w[:-3] + "y"
    else:
        for suffix in ("ing", "ed", "es", "s"):
            if w.endswith(suffix) and len(w) - len(suffix) >= 3 and not w.endswith("ss"):
                w = w[: -len(suffix)]
                break
    return w.rstrip("e")[:6] or w[:6]


def stems(text: str) -> list[str]:
    """The stems of the words that carry meaning (no stop words, no numbers)."""
    return [
        stem(w)
        for w in WORD.findall(text.lower())
        if w not in STOP and not w.isdigit() and len(w) > 1  # not the s of "what's"
    ]


# The name of a software thing, joined with hyphens ("payments-api", "billing-service"): its
# words name it, they are not what to do ("payments" in it is no payment).
SYSTEM_NAME = re.compile(
    r"(?<![\w-])[a-z0-9]+(?:-[a-z0-9]+)*-(?:api|service|svc|app|server|repo|db|web|ui|backend|"
    r"frontend|worker|bot|cli|sdk|lib|gateway|proxy|site|portal)(?![\w-])",
    re.I,
)


# A name before the kind of system it names ("the payments repo", "the billing service"): the
# name is not what to do (the kind stays: it may name the tool's object).
NAMED_SYSTEM = re.compile(
    r"(?<=\bthe\s)[a-z0-9][\w-]*(?=\s+(?:repo|repository|service|project|codebase|app)s?\b)", re.I
)


# A path of keys ("profile.address.zip", "data.items.csv") whose last part looks like a file
# extension: beside an API's URL (JSON data) it is a path into the data, not a file.
_KEY_PATH = re.compile(r"[a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*){2,}", re.I)


def _files_out(text: str) -> str:
    """The text with its file names taken out (a path of keys into an API's data kept)."""
    if not any(json_like(u) for u in URL.findall(text)):
        return FILE.sub(" ", text)
    return FILE.sub(lambda m: m[0] if _key_path(m[0], text) else " ", text)


def _key_path(name: str, text: str) -> bool:
    """Is the name a path of keys, not a file ("… into my.data.json" stays a file)?"""
    return bool(_KEY_PATH.fullmatch(name)) and destination(text) != name


CHANNEL = re.compile(r"(?<![\w#])#[A-Za-z][\w-]*")


def without_entities(text: str) -> str:
    """The text with URLs, quoted text, file names and system names taken out (their words are
    not intent)."""
    plain = SYSTEM_NAME.sub(" ", _files_out(QUOTED.sub(" ", URL.sub(" ", text))))
    # a channel's name says where, not what ("send it to #trading" is no stock quote)
    return CHANNEL.sub(" ", NAMED_SYSTEM.sub(" ", plain))


def lead_verb(text: str) -> str | None:
    first = WORD.findall(text.lower())[:1]
    return first[0] if first and first[0] in VERBS else None


def urls(text: str) -> list[str]:
    return list(dict.fromkeys(u.rstrip(".!?:") for u in URL.findall(text)))


def files(text: str) -> list[str]:
    """File names in order of appearance (not the ones inside URLs or quotes)."""
    found = FILE.findall(QUOTED.sub(" ", URL.sub(" ", text)))
    if any(json_like(u) for u in URL.findall(text)):  # "from https://api…/user/8 get a.b.zip"
        found = [f for f in found if not _key_path(f, text)]
    return list(dict.fromkeys(found))


def destination(text: str) -> str | None:
    """The file a task writes to: after "to/into/as/in" ("save it to out.md")."""
    found = re.search(
        rf"\b(?:to|into|as)\s+(?:(?:a|the|new)\s+)?(?:file\s+)?({FILE.pattern})",
        URL.sub(" ", text),
        re.I,
    )
    return found[1] if found else None


def quoted(text: str) -> list[str]:
    return [next(g for g in m.groups() if g is not None) for m in QUOTED.finditer(text)]


def pairs(text: str) -> dict[str, str]:
    """key=value pairs ("name=Ann", 'city="New York"')."""
    return {m[1]: m[2].strip("\"'") for m in PAIR.finditer(URL.sub(" ", text))}


_NUMBER_WORDS = {
    "a": "1", "an": "1", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10", "fifteen": "15",
    "twenty": "20", "thirty": "30", "half an": "0.5", "half a": "0.5",
    "a quarter of an": "0.25", "quarter of an": "0.25", "three quarters of an": "0.75",
    "a couple of": "2", "a few": "3",
}  # fmt: skip
_NUMBER_UNIT = re.compile(
    rf"\b({'|'.join(sorted(_NUMBER_WORDS, key=len, reverse=True))})[\s-]+"
    r"(?=(?:ms|milliseconds?|seconds?|secs?|minutes?|mins?|hours?|hrs?)\b)",
    re.I,
)


# "an hour and a half" → "1.5 hour", "two and a half minutes" → "2.5 minutes" (after digits)
_AND_A_HALF = re.compile(
    r"\b(\d+)\s+(?:and\s+a\s+half\s+(?P<u1>[a-z]+)|(?P<u2>[a-z]+)\s+and\s+a\s+half)\b", re.I
)
_UNITS = r"(?:ms|milliseconds?|seconds?|secs?|minutes?|mins?|hours?|hrs?)"


def digits(text: str) -> str:
    """ "one minute" → "1 minute", "half an hour" → "0.5 hour", "an hour and a half" → "1.5
    hour": durations in words."""
    return _NUMBER_UNIT.sub(lambda m: _NUMBER_WORDS[m[1].lower()] + " ", halves(counted(text)))


def halves(text: str) -> str:
    """ "an hour and a half", "one and a half minutes" → "1.5 hour", "1.5 minutes" (one length,
    not a list of two)."""
    text = re.sub(rf"\b(?:an?|one)\s+(?={_UNITS}\s+and\s+a\s+half\b)", "1 ", text, flags=re.I)
    text = re.sub(rf"\b(?:an?|one)\s+(?=and\s+a\s+half\s+{_UNITS}\b)", "1 ", text, flags=re.I)

    def halved(found: re.Match[str]) -> str:
        unit = found["u1"] or found["u2"]
        if not re.fullmatch(_UNITS, unit, re.I):
            return found[0]
        return f"{found[1]}.5 {unit}"

    return _AND_A_HALF.sub(halved, text)


# Numbers in words before a noun: "the last five commits", "a three-day outlook", "twenty-five
# minutes" ("one" and "a" stay words: "the one I sent", "a call").
_UNITS_WORDS = {
    "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}  # fmt: skip
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
         "eighty": 80, "ninety": 90}  # fmt: skip
_COUNTED = re.compile(
    rf"(?P<keep>{AS_WRITTEN})|(?<![\w'-])(?:(?P<tens>{'|'.join(_TENS)})(?:[\s-]+(?P<one>one|"
    rf"{'|'.join(list(_UNITS_WORDS)[:8])}))?|(?P<unit>{'|'.join(_UNITS_WORDS)}))(?=[\s-]+[a-z])",
    re.I,
)


def counted(text: str) -> str:
    """Numbers in words before a word as digits ("five commits" → "5 commits", "twenty-five
    minutes" → "25 minutes"); quoted text, URLs and file names unchanged."""

    def number(found: re.Match[str]) -> str:
        if found["keep"]:
            return found["keep"]
        if found["unit"]:
            return str(_UNITS_WORDS[found["unit"].lower()])
        one = found["one"]
        return str(_TENS[found["tens"].lower()] + (_UNITS_WORDS.get(one.lower(), 1) if one else 0))

    return _COUNTED.sub(number, text)


def seconds(text: str) -> float:
    """The length of time the text says, in seconds; a length in parts adds up ("1 hour 30
    minutes", "2 minutes and 10 seconds")."""
    plain = digits(without_entities(text))
    match = DURATION.search(plain)
    if not match:
        return 1.0
    total = float(match[1]) * _factor(match[2])
    rest = plain[match.end() :]
    while match[2] and (more := _NEXT_PART.match(rest)) is not None:
        match = more
        total += float(match[1]) * _factor(match[2])
        rest = rest[match.end() :]
    return total


_NEXT_PART = re.compile(rf"\s*(?:,|and)?\s*(\d+(?:\.\d+)?)\s*({_UNITS}|m|s|h)\b", re.I)


def _factor(unit: str | None) -> float:
    unit = (unit or "s").lower()
    if unit.startswith("ms") or unit.startswith("milli"):
        return 0.001
    if unit.startswith("m"):
        return 60.0
    if unit.startswith("h"):
        return 3600.0
    return 1.0


def json_path(text: str) -> str | None:
    """A JSON path the task names: "items[0].title", "the version field", "the 'id' key"."""
    plain = EMAIL.sub(" ", URL.sub(" ", _files_out(text)))
    dotted = re.search(r"\b[A-Za-z_]\w*(?:\[\d+\]|\.[A-Za-z_]\w*)+", plain)
    if dotted:
        return dotted.group(0)
    named = re.search(
        r"\b(?:the\s+)?[\"']?([A-Za-z_]\w*)[\"']?\s+(?:field|key|value|property|attribute)\b",
        plain,
        re.I,
    )
    if named and named[1].lower() not in STOP:
        return named[1]
    # "the field title", "the key 'id'" (not "the key points": an adjective)
    after = re.search(
        r"\b(?:(?:field|property|attribute)\s+[\"']?|key\s+[\"'])([A-Za-z_]\w*)", plain, re.I
    )
    if after and after[1].lower() not in STOP:
        return after[1]
    apis = any(re.search(r"\bapi\b", u, re.I) for u in URL.findall(text))
    if apis or re.search(r"\.json\b|\bjson\b", text, re.I):
        # "take the title from https://…/feed.json": a value out of JSON data (an API's URL,
        # not the word: "check the status of the api" is no query)
        taken = re.search(r"\b(?:the|its)\s+([A-Za-z_]\w*)\s+(?:from|of|in)\b", plain, re.I)
        if taken and taken[1].lower() not in STOP:
            return taken[1]
    return None


_FIELD = r"(?:(?:the|its|their)\s+)?[\"']?[A-Za-z_][\w.\[\]]*[\"']?"
_ONLY = re.compile(
    r"\b(?:only|just|nothing\s+(?:but|except)|solely|all\s+(?:i|we)\s+(?:need|want)\s+(?:is|are)|"
    r"the\s+only\s+things?\s+(?:i|we)\s+(?:need|want|care\s+about)\s+(?:is|are))"
    r"\s+(?:(?:need|want|care\s+about|keep|show|"
    r"return|give\s+me|get|print|tell\s+me)\s+)?"
    rf"(?P<fields>{_FIELD}(?:\s*(?:,\s*(?:and\s+)?|\s+and\s+|\s*&\s*){_FIELD})*)",
    re.I,
)
_NOT_FIELDS = STOP | frozenset(
    "first last one text summary result results data response body page content output "
    "thing things part bit main important relevant interesting field fields key keys value "
    "values number numbers once thank thanks cheers please".split()
)


def only_fields(text: str) -> list[str]:
    """The fields a task keeps of its data: "give me just the email", "I only need the status
    and the total", "return nothing but the name and the id"."""
    found = _ONLY.search(_plain(text))
    if found is None:
        return []
    names = re.split(r"\s*,\s*(?:and\s+)?|\s+and\s+|\s*&\s*", found["fields"])
    fields: list[str] = []
    for name in names:
        bare = re.sub(r"^(?:the|its|their)\s+", "", name, flags=re.I).strip("\"'")
        low = bare.lower()
        # "the count", "'id'", or a later item of the list ("the name, email and city"): a
        # noun, even if it could be a verb
        named = bare != name or bool(fields)
        if bare and low not in _NOT_FIELDS and low != "if" and (named or low not in VERBS):
            fields.append(bare)
    return list(dict.fromkeys(fields))


# A value asked for by name: "give me the version", "what's the license", "extract the status
# and the eta" (of JSON data: the caller knows the data is JSON).
_ASKED = re.compile(
    r"^(?:give\s+me|get(?:\s+me)?|show(?:\s+me)?|tell\s+me|return|print|extract|pick|pull|"
    r"what(?:'s|\s+is|\s+are|\s+were|\s+was)|which\s+is)\s+"
    r"(?P<fields>(?:the|his|her|its|their)\s+[A-Za-z_][\w.\[\]]*(?:\s*(?:,\s*(?:and\s+)?|\s+and\s+|\s*&\s*)"
    r"(?:the\s+)?[A-Za-z_][\w.\[\]]*)*)\s*(?:$|[?.!,]|\b(?:from|of|in|out)\b)",
    re.I,
)


# A bare list of names to take, ending the clause ("extract temperature, humidity", "pick id
# and name"): two or more, no article needed.
_ASKED_LIST = re.compile(
    r"^(?:extract|pick|pull(?:\s+out)?|keep|take|get|give\s+me|show(?:\s+me)?)\s+"
    r"(?P<fields>[A-Za-z_][\w.\[\]]*(?:\s*(?:,\s*(?:and\s+)?|\s+and\s+|\s*&\s*)"
    r"[A-Za-z_][\w.\[\]]*)+)\s*[?.!]?$",
    re.I,
)


def asked_fields(text: str) -> list[str]:
    """The values a clause asks for by name, each a word ("give me the version", "extract the
    status and the eta"); none when a word is no field name ("give me the summary")."""
    plain = _plain(text).strip()
    # "in package.json, what's the license?": the question after a leading phrase
    found = (
        _ASKED.search(plain)
        or _ASKED.search(plain.rsplit(",", 1)[-1].strip())
        or _ASKED_LIST.search(plain)
    )
    if found is None:
        return []
    names: list[str] = []
    for name in re.split(r"\s*,\s*(?:and\s+)?|\s+and\s+|\s*&\s*", found["fields"]):
        bare = re.sub(r"^(?:the|his|her|its|their)\s+", "", name, flags=re.I)
        # "the plan" is a noun, even if "plan" could be a verb
        # a later item of a list ("the name, email and role") is a noun, even if a verb too
        verb = bare == name and bare.lower() in VERBS and not names
        if not bare or bare.lower() in _NOT_FIELDS or verb:
            return []
        names.append(bare)
    return list(dict.fromkeys(names))


def named_fields(text: str) -> list[str]:
    """The fields a task keeps ("just the email") or asks for ("give me the version")."""
    return only_fields(text) or asked_fields(text)


def _plain(text: str) -> str:
    """The text without its URLs, e-mail addresses and file names."""
    return EMAIL.sub(" ", URL.sub(" ", _files_out(text)))


_JSON_SOURCE = re.compile(r"\.json\b|\bjson\b|\bapis?\b|/v\d+\b|\?\w+=", re.I)


def json_like(text: str) -> bool:
    """Does the text name JSON data: a .json file or URL, an API's URL, the word JSON?"""
    return bool(_JSON_SOURCE.search(text))


def sends(text: str) -> bool:
    """Does the task send something to its URL ("post …", "… to https://…")?"""
    return lead_verb(text) in SEND_VERBS or bool(re.search(r"\bto\s+https?://", text, re.I))


# The "it" that points at nothing: of the weather and the time ("will it rain", "how warm will
# it be", "it's late") and of waiting ("give it twenty minutes", "let it sit for an hour").
_DUMMY_IT = re.compile(
    r"\b(?:will|is|does|did|was|would|could|might)\s+it\s+(?:be|get|stay|rain|snow|sunny|cold|hot|"
    r"warm|windy|raining|snowing|going\s+to|chilly|freezing|humid|cloudy|foggy|hot|cold)\b"
    r"|\bhow\s+(?:cold|hot|warm|chilly|windy|wet|humid|sunny)\s+(?:is|will|was)\s+it\b"
    r"|\bit(?:'s|\s+is)\s+(?:time|late|early)\b"
    r"|\b(?:give|let)\s+it\s+(?=(?:[\w-]+\s+){0,3}?(?:seconds?|secs?|minutes?|mins?|hours?|hrs?|"
    r"days?|while)\b)",
    re.I,
)


# "this" and "that" as the object itself ("translate this", "forward that to legal"), not as
# a determiner ("this weekend") or a conjunction ("a note that says …").
_DEICTIC = re.compile(r"\b(?:this|that)(?=\s*[.!?]?\s*$|\s+(?:to|into|in|for|and|please)\b)", re.I)
# Objects that name nothing: "schedule something", "fix stuff".
VAGUE = frozenset("something anything stuff things thing whatever".split())
_WHEN_WORDS = frozenset(
    "today tomorrow yesterday tonight earlier later before morning afternoon evening night "
    "week weekend last next".split()
)


def refers_back(text: str) -> bool:
    """Does the task point at something before it ("it", "them", "the results", "this")? Not
    the "it" of "will it rain"."""
    found = set(WORD.findall(_DUMMY_IT.sub(" ", text).lower()))
    pointed = bool(found & {"it", "them", "they", "those", "both"}) or bool(_DEICTIC.search(text))
    return bool(EARLIER.search(text)) or pointed


# Where a task's first clause ends: "cancel evt-4521, nobody can make it anyway"
_CLAUSE_END = re.compile(r"[,;]\s|\s[-–—]\s|\?\s")


def first_clause(text: str) -> str:
    """The task's words up to its first clause break (the whole task without one)."""
    return _CLAUSE_END.split(text, maxsplit=1)[0]


def vague(text: str) -> bool:
    """Does the task name nothing to act on but a vague word ("schedule something")?"""
    words = [x for x in WORD.findall(without_entities(text).lower()) if x not in STOP]
    # "sort out the thing from yesterday": a time says when, not what
    named = set(words[1:]) - _WHEN_WORDS
    return len(words) >= 2 and words[0] in VERBS and bool(named) and named <= VAGUE


def names_earlier(text: str) -> bool:
    """Does the task speak of earlier results ("them", "the summary", "save …")?"""
    words = WORD.findall(text.lower())
    return (
        bool(EARLIER.search(text))
        or any(w in PRONOUNS for w in words)
        or (bool(words) and words[0] in CONSUMER_VERBS)
        or bool(_SENDS_ANSWER.match(text))
    )


# "post who their account owner is to #sales", "tell #ops what the status is": a send of an
# answer (a question clause as its object) sends what the earlier task found.
_SENDS_ANSWER = re.compile(
    r"^\s*(?:send|post|share|tell|report|notify|message|publish|forward|let)\s+(?:\S+\s+)?"
    r"(?:know\s+)?(?:who|what|which|how|when|where|whether)\b",
    re.I,
)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:32]


def host(url: str) -> str:
    """example_com for https://www.example.com/a."""
    name = url.split("//", 1)[-1].split("/")[0].split(":")[0]
    return slug(name.removeprefix("www."))


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def sentence_case(text: str) -> str:
    return text[:1].upper() + text[1:]


# A clause that only greets or thanks ("Hi!", "Thanks a lot"): not a task.
COURTESY = re.compile(
    r"^(?:(?:hi|hello|hey|hiya|dear|thanks?|thank\s+you|thx|ty|cheers|many|a\s+lot|so\s+much|"
    r"very\s+much|in\s+advance|again|there|folks|team|all|everyone|guys|please|pls|plz|"
    r"(?:good\s+)?(?:morning|afternoon|evening|day)|much|greatly|really|appreciated|"
    r"grateful|ta|best|regards|kind\s+regards|"
    # sign-offs: "nothing else needed", "that's all", "no rush"
    r"nothing\s+else(?:\s+(?:needed|required|for\s+now))?|that'?s\s+(?:all|it)|that\s+is\s+all|"
    r"no\s+rush|no\s+hurry|for\s+now)\b[\s,!.]*)+$",
    re.I,
)
# A clause that only says how often ("every morning", "each friday at 5pm"): a plan is one run
# (a schedule runs the request at each tick), so it frames the other tasks.
RECURRENCE = re.compile(
    r"^(?:(?:every|each)\s+(?:other\s+|\d+\s+)?(?:day|week|month|morning|afternoon|evening|"
    r"night|hour|minute|weekday|weekend|\w+day)s?|daily|weekly|monthly|hourly|nightly)"
    r"(?:\s+(?:at|around)\s+\d{1,2}(?::\d{2})?\s*(?:am|pm|h)?)?$",
    re.I,
)


# A clause that tells the situation, not a task: the speaker's or the team's state, led by its
# subject ("I'm preparing the board pack", "so our status page has been flaky all week and I
# want a record", "we keep losing track of the rate"); not a request put as a wish ("I want you
# to …", "I'd like a summary"), which names what to do.
NARRATIVE = re.compile(
    r"^(?:(?:so|well|ok(?:ay)?|basically|anyway|fyi)\b[\s,]*)?"
    r"(?:i'?m|i\s+am|i'?ve|i\s+have\s+been|we'?re|we\s+are|we'?ve|we\s+have\s+been|"
    r"we\s+keep|i\s+keep|(?:our|my)\s+[\w-]+(?:\s+[\w-]+)?\s+(?:has|have|is|are|was|were|keeps?|"
    # "our investors asked for an update", "my boss wanted …": what happened, in the past;
    # "our on-call rotation needs the error rate": what someone needs (the task follows)
    r"asked|wanted|said|told|needed|requested|mentioned|noticed|complained|reported|needs|"
    r"wants|requires|expects)|"
    r"it'?s\s+been|there'?s\s+been|sorry\s+for)\b",
    re.I,
)
# A statement of what happened or how things are, led by its subject: "the parcel never
# arrived", "The vendor portal changed its API", "nobody can make it anyway" (the reason for a
# request, not a task)
STATEMENT = re.compile(
    r"^(?:(?:the|this|that|our|my|your|their|his|her|its)\s+[\w'-]+(?:\s+[\w'-]+){0,2}|"
    r"nobody|no\s+one|everyone|everybody|someone|somebody|they|he|she|we)\s+"
    r"(?:never\s+|just\s+|already\s+|still\s+|really\s+)?"
    r"(?:is|are|was|were|has|had|have|can|can't|cannot|could|couldn't|will|won't|did|didn't|"
    r"does|doesn't|isn't|aren't|wasn't|weren't|[a-z]+ed|ran|went|came|broke|got|took|left|"
    r"fell|grew|kept|lost|made|sent|told|gave|began|became|forgot|stopped)\b",
    re.I,
)
# Telling or reminding a person (not a URL, a channel or an address): no tool here reaches
# people ("remind me at 3pm to …", "tell the team the build is green", "text my manager …").
TELLS_PERSON = re.compile(
    r"^(?:remind\s+\w+|(?:text|call|phone|ring|sms)\s+(?:me|us|him|her|them|my|our)\b|"
    r"tell\s+(?:the|my|our|him|her|them|everyone|everybody|all)\b|"
    r"let\s+(?:the|my|our|him|her|them|everyone|everybody)\b.*\bknow\b)",
    re.I,
)


def only_framing(text: str) -> bool:
    """Does the clause only greet, thank or say how often (no task in it)?"""
    clause = text.strip(" ,.!?;:")
    return bool(COURTESY.match(clause) or RECURRENCE.match(clause))


# Chat shorthand, read as the words it stands for ("can u set up a sync w/ dana on wed?"); a
# quoted text, a URL or a file name is kept as written.
_SHORTHAND = {
    "u": "you", "ur": "your", "pls": "please", "plz": "please", "whats": "what's",
    "rn": "right now", "thx": "thanks", "w/": "with", "w/o": "without", "msg": "message",
    "hows": "how's", "thats": "that's", "wheres": "where's", "abt": "about", "b4": "before",
    "tmrw": "tomorrow", "tmr": "tomorrow", "tmrow": "tomorrow", "2moro": "tomorrow",
    "tommorow": "tomorrow", "tomorow": "tomorrow", "tommorrow": "tomorrow", "2day": "today",
    "tonite": "tonight", "yday": "yesterday", "ystd": "yesterday",
}  # fmt: skip
_DAY_SHORT = {
    "mon": "monday", "tue": "tuesday", "tues": "tuesday", "wed": "wednesday", "thu": "thursday",
    "thur": "thursday", "thurs": "thursday", "fri": "friday",
}  # fmt: skip
_KEEP = AS_WRITTEN
_CASUAL = re.compile(
    rf"(?P<keep>{_KEEP})"
    r"|(?<![\w/.@#-])(?P<short>w/o|w/|u|ur|pls|plz|whats|rn|thx|msg|hows|thats|wheres|abt|b4|"
    r"tmrw|tmr|tmrow|2moro|tommorow|tomorow|tommorrow|2day|tonite|yday|ystd)(?![\w/@-])"
    r"|(?P<lead>\b(?:on|next|this|by|until|till)\s+)(?P<day>mon|tues?|wed|thu(?:rs?)?|fri)\b",
    re.I,
)


def plain_words(text: str) -> str:
    """The request with chat shorthand spelled out ("w/" → "with", "u" → "you", "on wed" →
    "on wednesday"); quoted text, URLs and file names unchanged."""

    def spelled(found: re.Match[str]) -> str:
        if found["keep"]:
            return found["keep"]
        if found["day"]:
            return found["lead"] + _DAY_SHORT[found["day"].lower()]
        return _SHORTHAND[found["short"].lower()]

    return _CASUAL.sub(spelled, text)
