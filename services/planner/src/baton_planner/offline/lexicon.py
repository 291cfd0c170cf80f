"""The lexicon: idioms read as the plain words the planner's rules already understand.

People say one thing many ways ("let https://… know that …" is "notify https://… that …";
"stick 'x' at the bottom of notes.txt" is "append 'x' to notes.txt"; "keep pm25 only" is "keep
only pm25"). Rather than teach every rule each wording, a request is first rewritten, idiom by
idiom, into the wording the rules read: one table of phrasings, each entry a family of idioms
(its verbs, nouns and objects vary), not one sentence.

Quoted text is set aside first (a placeholder ``\\ue010N\\ue011`` stands for it, ``Q`` in the
patterns below), so a message's own words are never rewritten. Same request: same rewrite.
"""

from __future__ import annotations

import re

_QUOTE = re.compile(r"(?<![A-Za-z0-9])'[^']+'(?![A-Za-z])|\"[^\"]+\"|“[^”]+”")
_HELD = re.compile("\ue010(\\d+)\ue011")
Q = "\ue010\\d+\ue011"  # a quoted text, set aside
_LENGTH = (
    r"(?:\d+(?:\.\d+)?|an?|one|two|three|four|five|ten|fifteen|twenty|thirty|half\s+an?)"
    r"[\s-]*(?:seconds?|secs?|minutes?|mins?|hours?|hrs?)"
)
_TARGET = r"(?:https?://\S+|#[\w-]+)"

# (what people say, what the rules read). Order matters only where two entries could meet.
# "check with me before you do it", "run it by kim first", "clear it with ops beforehand"
_ASK_FIRST = (
    r"\b(?:but\s+)?(?:check|confirm|clear\s+it|run\s+it\s+by)\s+(?:with\s+)?WHO\s+"
    r"(?:first|beforehand|before\s+(?:you\s+)?(?:actually\s+|really\s+)?(?:do(?:ing)?\s+"
    r"(?:it|that|so|anything)|go(?:ing)?\s+ahead|proceed(?:ing)?|delet\w*|send\w*|pay\w*))"
)
LEXICON: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.I), plain)
    for pattern, plain in (
        # telling a URL or a channel: "let https://… know (that) …", "give #ops a heads-up that …"
        (rf"\blet\s+(?P<to>{_TARGET})\s+know\b(?:\s+that\b)?", r"notify \g<to> that"),
        (rf"\bgive\s+(?P<to>{_TARGET})\s+a\s+heads[\s-]?up\b(?:\s+that\b)?", r"notify \g<to> that"),
        # a message given with the target: "ping https://… with 'x'", "hit #ops with 'x'"
        (
            rf"\b(?:ping|hit|message|notify|alert|nudge)\s+(?P<to>{_TARGET})\s+with\s+"
            rf"(?:the\s+(?:message|text|note)\s+)?(?P<what>{Q})",
            r"send \g<what> to \g<to>",
        ),
        (
            rf"\b(?:tell|inform|warn|ping)\s+(?P<to>{_TARGET})\s+(?:that\s+)?",
            r"notify \g<to> that ",
        ),
        # asking first: "check with me before you do it", "run it by kim first", "clear it with
        # ops beforehand" → an approval
        (_ASK_FIRST.replace("WHO", "me"), "but ask me for approval first"),
        (_ASK_FIRST.replace("WHO", r"(?P<who>\w+)"), r"but ask for approval from \g<who> first"),
        # a condition said with "should": "should it fail, post …" → "if it fails, post …"
        (
            r"\bshould\s+(?P<s>it|that|this|they|the\s+\w+)\s+(?P<v>fail|succeed|pass|break|error|"
            r"time\s+out)\b",
            r"if \g<s> \g<v>s",
        ),
        # the results named by how they were got: "share what you find in #people", "post
        # whatever it turns up to …" → "it"
        (
            r"\bwhat(?:ever)?\s+(?:you|it|that|they)\s+(?:find|found|get|got|turns?\s+up|turned\s+up|"
            r"comes?\s+up\s+with|came\s+up\s+with|learn|learned|dig\s+up|dug\s+up|finds|gets)\b",
            "it",
        ),
        # a field sent on: "send just its commit field to https://…" → "take the commit field
        # and send it to https://…"
        (
            r"\b(?P<v>send|post|forward|push|pass)\s+(?:just\s+|only\s+)?(?:its|the|their)\s+"
            r"(?P<f>[A-Za-z_][\w.]*)\s+(?:field|value|key)\s+(?=to\b)",
            r"take the \g<f> field and \g<v> it ",
        ),
        # fields announced, then listed: "i need two things: theme and locale", "we want these
        # fields - id, name" → "i just need the theme and locale"
        (
            r"\b(?P<who>i|we)\s+(?:just\s+|only\s+|really\s+)?(?:need|want)\s+(?:\d+|two|three|four|"
            r"a\s+few|a\s+couple\s+of|some|these|the\s+following)?\s*(?:things|fields|values|bits|keys|"
            r"items)\s*(?:from\s+it\s*)?[:\-–]\s*(?:the\s+)?",
            r"\g<who> just need the ",
        ),
        # a condition on a field of a URL: "if the price at https://… is over 9, …" → "fetch
        # https://…; if the price field is over 9, …"
        (
            r"\bif\s+the\s+(?P<f>[A-Za-z_][\w.]*)\s+(?:at|of|from|on)\s+(?P<u>https?://\S+)\s+"
            r"(?P<is>is|are|equals?|isn't|is\s+not)\b",
            r"fetch \g<u>; if the \g<f> field \g<is>",
        ),
        # cancelling: "call off the meeting evt-1", "scrap the review", "drop the 1:1 evt-9"
        (r"\b(?:call\s+off|scrap|scratch)\b", "cancel"),
        # deleting: "get rid of a.md", "throw away b.log"; "drop/trash/bin/nuke/ditch c.db" when a
        # file follows (a file is dropped, "drop it in #ops" posts)
        (r"\b(?:get\s+rid\s+of|throw\s+away|do\s+away\s+with)\b", "delete"),
        (
            r"\b(?:drop|trash|bin|nuke|ditch|toss|discard|junk|shred|zap|axe|clear\s+(?:out|away)|"
            r"clean\s+out)\s+(?=(?:the\s+)?(?:old\s+)?(?:files?\s+)?[\w./-]+\.\w+\b)",
            "delete ",
        ),
        # copying: "make a copy of a.csv called b.csv" → "copy a.csv to b.csv"
        (
            r"\b(?:make|create|take)\s+(?:a\s+)?(?:copy|duplicate|backup)\s+of\s+(?P<a>\S+)\s+"
            r"(?:called|named|as|at|to)\s+",
            r"copy \g<a> to ",
        ),
        # bringing people together: "get me and rosa together for 20 minutes" → a meeting
        (
            r"\b(?:get|bring|put)\s+(?:me\s+and\s+|us\s+and\s+)?(?P<who>[\w.@+-]+(?:\s*(?:,|and)\s*"
            r"[\w.@+-]+)*)\s+together\b",
            r"arrange a meeting with \g<who>",
        ),
        # saying something in a channel: "say 'x' in #office", "drop it in #random", "share
        # the summary on #team"
        (
            rf"\b(?:say|drop|share|put|send|write|shout|throw|pop)\s+(?P<what>{Q}|it|that|this|"
            rf"them|the\s+\w+)\s+(?:in|into|on|over\s+in)\s+(?P<ch>#[\w-]+)",
            r"post \g<what> to \g<ch>",
        ),
        # appending: "add a line 'x' at the end of f", "stick 'x' at the bottom of f", "tack
        # 'x' onto the end of f"
        (
            r"\b(?:add|put|stick|tack|write|place|insert|pop)\s+(?:(?:a|one|the)\s+(?:new\s+)?"
            rf"(?:line|entry|row|note)\s+(?:saying\s+)?)?(?P<what>{Q})\s+(?:at|to|on|onto)\s+"
            r"the\s+(?:very\s+)?(?:end|bottom)\s+of\s+",
            r"append \g<what> to ",
        ),
        # only the named value: "keep pm25 only" → "keep only pm25"
        (
            r"\b(?P<verb>keep|return|show|give\s+me|want|need|print)\s+(?P<f>(?:the\s+)?"
            r"[A-Za-z_][\w.\[\]]*)\s+only\b",
            r"\g<verb> only \g<f>",
        ),
        # "I need the version from package.json, nothing else" → "I need only the version …"
        (
            r"\b(?P<verb>need|want|keep|give\s+me|return)\s+(?P<rest>(?:[^,.;!?]|\.(?=\w))+?)\s*,?\s*"
            r"(?:and\s+)?nothing\s+(?:else|more)\b",
            r"\g<verb> only \g<rest>",
        ),
        # extracting: "pull the main points from https://…", "pick all the dates from plan.md",
        # "pull the open questions out of rfc.md"
        (
            r"\b(?:pull|pick|fish|dig)(?:\s+out)?\s+(?P<what>(?:the|all|every|any)\b[^,;]*?)\s+(?:from|out\s+of)\s+"
            r"(?=https?://|[\w./-]+\.\w+\b)",
            r"extract \g<what> from ",
        ),
        # gathering results into a file: "put both summaries in digest.md", "collect all the
        # answers into answers.txt" → "save them to …"
        (
            r"\b(?:put|place|collect|gather|combine)\s+(?:both|all|the|these|those)\s+(?:(?:of\s+)?the\s+)?"
            r"(?:summaries|results|answers|outputs|translations|drafts|reports|findings|of\s+them)"
            r"\s+(?:together\s+)?(?:in|into|to)\s+(?=[\w./-]+\.\w+\b)",
            "save them to ",
        ),
        # what a URL or a file returns named as the thing got: "get the JSON from https://…",
        # "grab the contents of notes.md", "pull down the page at https://…" → "fetch …" /
        # "read …" (the data itself, no field of it)
        (
            r"\b(?:get|grab|pull(?:\s+down)?|fetch|download|retrieve|load|take)\s+(?:me\s+)?(?:the\s+|its\s+)?"
            r"(?:raw\s+|full\s+|whole\s+|latest\s+|current\s+)?(?:json|data|response|payload|contents?|"
            r"body|page|html|feed|document|output)\s+(?:from|at|of|behind)\s+(?=https?://)",
            "fetch ",
        ),
        (
            r"\b(?:get|grab|pull|fetch|load|take|open)\s+(?:me\s+)?(?:the\s+)?(?:raw\s+|full\s+|whole\s+)?"
            r"(?:json|data|contents?|text)\s+(?:from|of|in)\s+(?=[\w./-]+\.\w+\b)",
            "read ",
        ),
        # changing a text's form: "turn todo.txt into a checklist", "make notes.md into
        # slides" → "convert … into …" (into a language: a translation, read as such later)
        (
            r"\b(?:turn|make|transform|change|reformat|reshape|rework)\s+(?P<o>(?:(?!\binto\b)"
            r"[^,;.!?]|\.(?=\w)){1,60}?)\s+into\s+(?!(?:a\s+)?(?:meeting|call|event)\b)",
            r"convert \g<o> into ",
        ),
        # a result put into a file: "put them in names.txt", "drop the result in out.html",
        # "stick that into notes.md" → "save … to"
        (
            r"\b(?:put|place|stick|drop|dump|throw|stash|pop|park|shove|plonk)\s+(?P<what>it|them|"
            r"that|this|those|these|everything|(?:the|both|all)\s+(?:\w+\s+)?\w+)\s+(?:in|into|inside)"
            r"\s+(?=(?:a\s+|the\s+|new\s+)*(?:file\s+)?[\w./-]+\.\w+\b)",
            r"save \g<what> to ",
        ),
        # what a page or a text lists, taken: "grab all the prices listed on https://…", "get
        # every name mentioned in notes.md" → "extract … from"
        (
            r"\b(?:grab|get|collect|gather|fetch|take|find|give\s+me)\s+(?P<what>(?:all|every|each|"
            r"any)\b[^,;]*?\s+(?:listed|mentioned|named|shown|quoted|cited|referenced|given|"
            r"appearing|that\s+appears?))\s+(?:on|in|at|from|inside|throughout)\s+"
            r"(?=https?://|[\w./-]+\.\w+\b)",
            r"extract \g<what> from ",
        ),
        # adding a quoted line to a file is appending: "add a line 'x' to todo.txt", "tack 'y'
        # onto log.md"
        (
            r"\b(?:add|stick|tack|pop)\s+(?:(?:an?|one|the|another)\s+(?:new\s+)?(?:line|entry|row|"
            rf"note|item)\s+(?:saying\s+|reading\s+)?)?(?P<what>{Q})\s+(?:to|onto)\s+"
            r"(?=(?:the\s+)?(?:file\s+)?[\w./-]+\.\w+\b)",
            r"append \g<what> to ",
        ),
        # noting or logging a quoted line in a file adds it: "log 'deploy ok' to deploy.log",
        # "jot down 'call mum' in todo.txt" → "append … to"
        (
            r"\b(?:log|jot(?:\s+down)?|note(?:\s+down)?|record|scribble(?:\s+down)?)\s+"
            rf"(?P<what>{Q})\s+(?:to|in|into|onto)\s+(?=(?:the\s+)?(?:file\s+)?[\w./-]+\.\w+\b)",
            r"append \g<what> to ",
        ),
        # a summary by idiom: "boil it down", "sum up the notes", "distil report.md", "give
        # me the gist of …"
        (r"\b(?:boil\s+down|sum\s+up|distill?)\b(?![\w.-])", "summarise"),
        (
            r"\b(?:boil\s+(?P<b>(?:[^,;.!?]|\.(?=\w)){1,40}?)\s+down|sum\s+(?P<s>(?:[^,;.!?]|\.(?=\w))"
            r"{1,40}?)\s+up)\b",
            r"summarise \g<b>\g<s>",
        ),
        (
            r"\b(?:give\s+me|tell\s+me|what'?s|what\s+is)\s+the\s+(?:gist|essence|short\s+version)"
            r"\s+of\b",
            "summarise",
        ),
        # money sent is paid: "send 120 usd to vendor 3391", "wire $40 to acme"
        (
            r"\b(?:send|transfer|wire|give|move|remit)\s+(?P<amt>[$€£]\s?\d[\d,.]*k?|\d[\d,.]*\s*k?\s*"
            r"(?:usd|eur|gbp|chf|jpy|cad|aud|sek|nok|dkk|dollars?|euros?|pounds?|bucks|quid)\b)",
            r"pay \g<amt>",
        ),
        # making a named thing: "write up a wiki page called …" → "create a wiki page called …"
        (
            r"\b(?:write\s+up|put\s+together|knock\s+up|spin\s+up)\s+(?=(?:a|an|the)\s+(?:[\w-]+\s+){0,2}?"
            r"(?:page|doc|document|ticket|issue|entry|note)\s+(?:called|named|titled|entitled)\b)",
            "create ",
        ),
        # the field named after the question: "what's the bundle id? the field is bundle_id" →
        # "what's the bundle id (the bundle_id field)?"
        (
            r"(?P<end>[?.!])\s+(?:the\s+)?(?:field|key|property|attribute|path)(?:'s|\s+name\s+is|"
            r"\s+is(?:\s+called|\s+named)?|\s+you\s+want\s+is|\s*:)\s+"
            rf"(?P<f>{Q}|[A-Za-z_][\w.\[\]]*)\s*[.!]?\s*$",
            r" (the \g<f> field)\g<end>",
        ),
        # a value named by a key's spelling: "the value of max_connections", "the setting for
        # db.pool.size", "what is maxRetries set to" → "the … field" (a plain word stays a noun:
        # "the value of the house")
        (
            r"\b(?:the\s+)?(?:value|setting|entry|contents?)\s+(?:of|for)\s+(?:the\s+)?"
            r"(?P<f>[A-Za-z]\w*(?:_\w+|\.[A-Za-z_]\w*)+|[a-z]+[A-Z]\w*)\b(?!\s+(?:field|key|property))",
            r"the \g<f> field",
        ),
        # conditions: "only when" is "only if"
        (r"\bonly\s+(?:when|in\s+case)\b", "only if"),
        # "read flags.json and, only if beta is true, write …": the "only" changes nothing
        (r"\b(?P<j>and|then)\s*,\s*only\s+if\b", r"\g<j> if"),
        # waiting first: "after 2 minutes fetch …" → "wait 2 minutes, then fetch …"
        (
            rf"(?:^|(?<=[.;!?]\s))(?:after|in)\s+(?P<d>{_LENGTH})\s*,?\s+(?=[a-z])(?!(?:and|or|then)\b)",
            r"wait \g<d>, then ",
        ),
        # approvals asked of the speaker: "ask me for approval first" → "ask for approval first"
        (
            r"\b(?:ask|check\s+with)\s+(?:me|us)\s+(?:for\s+)?(?=(?:an?\s+)?(?:approval|sign[\s-]?off|"
            r"the\s+ok)\b)",
            "ask for ",
        ),
        # a summary by other names: "a short resume of it", "a synthesis of the notes"
        (
            r"\b(?:a\s+)?(?:short\s+)?(?:resume|résumé|synthesis|recap|rundown|tl;?dr)\s+of\b",
            "a short summary of",
        ),
        # a request wrapped in politeness: "I was wondering if you could delete …", "would
        # you be so kind as to …", "any chance you could …", "would it be possible to …"
        (
            r"\b(?:i\s+(?:was|am|'m)\s+wondering\s+(?:if|whether)\s+(?:you\s+)?(?:could|can|would|might)|"
            r"would\s+you\s+be\s+so\s+kind\s+as\s+to|(?:any|is\s+there\s+a(?:ny)?)\s+chance\s+"
            r"(?:that\s+)?you\s+(?:could|can)|would\s+it\s+be\s+possible\s+to|is\s+it\s+possible\s+to|"
            r"(?:do|would)\s+you\s+mind)\s+(?=[a-z])",
            "",
        ),
        # non-native framing of a wish: "I want that you read …" → "read …"; "… and you make …"
        (r"\bi\s+(?:want|would\s+like|wish)\s+that\s+you\s+", ""),
        (
            r"\b(?P<j>and|then)\s+you\s+(?=(?:make|write|read|send|give|do|create|put|save)\b)",
            r"\g<j> ",
        ),
    )
)


# A field named in quotes: 'the "version" from f' → "the version field from f" (before quotes
# are set aside: the quote is the field's name, not a text to keep).
_QUOTED_FIELD = re.compile(r"\bthe\s+[\"'](?P<f>[A-Za-z_]\w*)[\"']\s+(?=(?:from|of|in)\b)", re.I)


# A request said by its result: "I want notes.md summarised", "could you have report.md
# translated into german", "… and the summary emailed to https://…" → "summarise notes.md", …
_PARTICIPLES = {
    "summarised": "summarise", "summarized": "summarise", "translated": "translate",
    "deleted": "delete", "removed": "delete", "saved": "save", "stored": "save", "sent": "send",
    "posted": "post", "emailed": "email", "mailed": "email", "fetched": "fetch",
    "downloaded": "download", "written": "write", "copied": "copy", "checked": "check",
    "archived": "archive", "compared": "compare", "merged": "merge", "converted": "convert",
    "rewritten": "rewrite", "uploaded": "upload", "shared": "share", "forwarded": "forward",
    "analysed": "analyse", "analyzed": "analyse", "proofread": "proofread", "extracted": "extract",
    "booked": "book", "cancelled": "cancel", "canceled": "cancel", "paid": "pay",
    "scheduled": "schedule", "appended": "append", "explained": "explain",
    "classified": "classify", "reviewed": "review", "drafted": "draft", "published": "publish",
}  # fmt: skip
_PART = "|".join(_PARTICIPLES)
_TWO_PARTS = re.compile(
    r"\b(?P<ask>i\s+(?:want|need)|i(?:\s+would|'d)\s+(?:like|love)|(?:can|could|would)\s+(?:you|i|we)\s+"
    r"(?:have|get)|please\s+(?:have|get))\s+"
    rf"(?P<obj>(?:(?!\b(?:and|then|to|into)\b)(?:[^,;.!?]|\.(?=\w))){{1,80}}?)\s+"
    rf"(?P<first>{_PART}|read)\s+and\s+(?P<second>{_PART})\b",
    re.I,
)
_WISHED = re.compile(
    r"\b(?P<ask>i\s+(?:want|need)|i(?:\s+would|'d)\s+(?:like|love)|"
    r"(?:can|could|would)\s+(?:you|i|we)\s+(?:have|get)|please\s+(?:have|get)|"
    r"(?:^|(?<=[.;!?]\s))(?:have|get))\s+"
    rf"(?P<obj>(?:(?!\b(?:and|then|to|into)\b)(?:[^,;.!?]|\.(?=\w))){{1,80}}?)\s+(?P<part>{_PART})\b",
    re.I,
)
_JOINED = re.compile(
    r"(?P<j>\band|\bthen|,)\s+(?P<obj>it|them|that|this|(?:the|both|all)\s+[\w-]+(?:\s+[\w-]+)?)\s+"
    rf"(?P<part>{_PART})\s+(?=(?:to|into|as|in|on|over)\b)",
    re.I,
)


def _as_asked(text: str) -> str:
    """Requests said by their result read as requests ("have it translated" → "translate it")."""
    text = _TWO_PARTS.sub(
        lambda m: (
            f"{_PARTICIPLES.get(m['first'].lower(), 'read')} {m['obj']} and "
            f"{_PARTICIPLES[m['second'].lower()]} it"
        ),
        text,
    )
    text = _WISHED.sub(lambda m: f"{_PARTICIPLES[m['part'].lower()]} {m['obj']}", text)
    return _JOINED.sub(lambda m: f"{m['j']} {_PARTICIPLES[m['part'].lower()]} {m['obj']} ", text)


# A file name or a URL: an idiom's word inside one ("scratch-a.txt", "…/drop/…") is part of
# the name, not the idiom
_NAME = re.compile(r"https?://\S+|(?<![\w./-])[\w./-]+\.\w+")


def _outside_names(pattern: re.Pattern[str], replacement: str, text: str) -> str:
    """The text with the pattern replaced where it starts outside every file name and URL."""
    names = [found.span() for found in _NAME.finditer(text)]

    def replaced(found: re.Match[str]) -> str:
        if any(start <= found.start() < end for start, end in names):
            return found[0]
        return found.expand(replacement)

    return pattern.sub(replaced, text)


def plain(request: str) -> str:
    """The request with its idioms rewritten into the plain words the rules read; quoted
    text is never touched."""
    held: list[str] = []

    def hold(found: re.Match[str]) -> str:
        held.append(found.group(0))
        return f"\ue010{len(held) - 1}\ue011"

    text = _QUOTED_FIELD.sub(r"the \g<f> field ", request)
    text = _QUOTE.sub(hold, text)
    for pattern, replacement in LEXICON:
        text = _outside_names(pattern, replacement, text)
    text = _as_asked(text)
    return _HELD.sub(lambda m: held[int(m[1])], text)
