"""VQA answers: the official evaluation's normalisation, the answer vocabulary and the soft targets.

The normalisation follows the VQA evaluation script (vqaEval.py of the VQA challenge): punctuation is removed (or
turned into a space between two words), periods go unless a digit follows, words are lower-cased, number words up to
ten become digits, articles are dropped and common contractions get their apostrophe back. Training and the answer
vocabulary use the normalised answers, so the model predicts answers in the form the metric compares.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Dict, Iterable, List, Sequence, Tuple

import numpy as np

# the evaluation script's tables, as data: the punctuation it strips, number words, articles, contractions
PUNCTUATION = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?",
               "!"]
NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
                "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
ARTICLES = {"a", "an", "the"}
# "written form:official form"; the script's own quirks kept (keys with capitals never match lower-cased words, and
# "somebody'd" maps to "somebodyd")
_CONTRACTIONS = """
aint:ain't arent:aren't cant:can't couldve:could've couldnt:couldn't couldn'tve:couldn't've couldnt've:couldn't've
didnt:didn't doesnt:doesn't dont:don't hadnt:hadn't hadnt've:hadn't've hadn'tve:hadn't've hasnt:hasn't
havent:haven't hed:he'd hed've:he'd've he'dve:he'd've hes:he's howd:how'd howll:how'll hows:how's Id've:I'd've
I'dve:I'd've Im:I'm Ive:I've isnt:isn't itd:it'd itd've:it'd've it'dve:it'd've itll:it'll let's:let's maam:ma'am
mightnt:mightn't mightnt've:mightn't've mightn'tve:mightn't've mightve:might've mustnt:mustn't mustve:must've
neednt:needn't notve:not've oclock:o'clock oughtnt:oughtn't ow's'at:'ow's'at 'ows'at:'ow's'at 'ow'sat:'ow's'at
shant:shan't shed've:she'd've she'dve:she'd've she's:she's shouldve:should've shouldnt:shouldn't
shouldnt've:shouldn't've shouldn'tve:shouldn't've somebody'd:somebodyd somebodyd've:somebody'd've
somebody'dve:somebody'd've somebodyll:somebody'll somebodys:somebody's someoned:someone'd
someoned've:someone'd've someone'dve:someone'd've someonell:someone'll someones:someone's somethingd:something'd
somethingd've:something'd've something'dve:something'd've somethingll:something'll thats:that's thered:there'd
thered've:there'd've there'dve:there'd've therere:there're theres:there's theyd:they'd theyd've:they'd've
they'dve:they'd've theyll:they'll theyre:they're theyve:they've twas:'twas wasnt:wasn't wed've:we'd've
we'dve:we'd've weve:we've werent:weren't whatll:what'll whatre:what're whats:what's whatve:what've whens:when's
whered:where'd wheres:where's whereve:where've whod:who'd whod've:who'd've who'dve:who'd've wholl:who'll
whos:who's whove:who've whyll:why'll whyre:why're whys:why's wont:won't wouldve:would've wouldnt:wouldn't
wouldnt've:wouldn't've wouldn'tve:wouldn't've yall:y'all yall'll:y'all'll y'allll:y'all'll yall'd've:y'all'd've
y'alld've:y'all'd've y'all'dve:y'all'd've youd:you'd youd've:you'd've you'dve:you'd've youll:you'll
youre:you're youve:you've
"""
CONTRACTIONS: Dict[str, str] = dict(pair.split(":", 1) for pair in _CONTRACTIONS.split())
_COMMA_IN_NUMBER = re.compile(r"(\d)(,)(\d)")
_PERIOD = re.compile(r"\.(?!\d)")  # the script's "(?!<=\d)(\.)(?!\d)": a period not followed by a digit
ANSWER_TYPES = ("yes/no", "number", "other")


def strip_punctuation(text: str) -> str:
    """The script's processPunctuation: a mark next to a space (or anywhere, once the text has a comma between
    digits) is removed; elsewhere it becomes a space ("black-and-white" -> "black and white")."""
    out = text
    for p in PUNCTUATION:
        if p + " " in text or " " + p in text or _COMMA_IN_NUMBER.search(text):
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD.sub("", out)


def digits_and_articles(text: str) -> str:
    """The script's processDigitArticle: lower-case words, number words as digits, no articles, contractions."""
    words = [NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    return " ".join(CONTRACTIONS.get(w, w) for w in words if w not in ARTICLES)


def clean(answer: str) -> str:
    """What the script does to every answer first: newlines and tabs become spaces, the ends are stripped."""
    return answer.replace("\n", " ").replace("\t", " ").strip()


def normalize_answer(answer: str) -> str:
    """An answer in the form the evaluation compares: "Two." -> "2", "the dog's" -> "dog's", "Yes!" -> "yes"."""
    return digits_and_articles(strip_punctuation(clean(answer)))


def answer_vocabulary(answers: Iterable[str], min_count: int) -> List[str]:
    """The normalised answers given at least `min_count` times, most frequent first (ties alphabetical). Fed with
    each training question's multiple_choice_answer and min_count 9 (train+val), this is the 3,129-answer set that
    Bottom-Up Top-Down, LXMERT and UNITER classify over."""
    counts = Counter(normalize_answer(a) for a in answers)
    kept = [(a, n) for a, n in counts.items() if n >= min_count and a]
    return [a for a, _ in sorted(kept, key=lambda x: (-x[1], x[0]))]


def soft_scores(human_answers: Sequence[str]) -> Dict[str, float]:
    """{normalised answer: min(1, humans who gave it / 3)} over one question's human answers."""
    counts = Counter(normalize_answer(a) for a in human_answers)
    return {a: min(1.0, n / 3.0) for a, n in counts.items()}


def soft_target(human_answers: Sequence[str], answer_ids: Dict[str, int], width: int) -> Tuple[np.ndarray,
                                                                                                np.ndarray]:
    """(ids [width] int32, scores [width] float32) of the question's answers that are in the vocabulary, padded with
    id -1 and score 0 (a question has at most 10 distinct answers)."""
    ids, scores = np.full(width, -1, np.int32), np.zeros(width, np.float32)
    known = [(answer_ids[a], s) for a, s in soft_scores(human_answers).items() if a in answer_ids]
    for k, (i, s) in enumerate(sorted(known)[:width]):
        ids[k], scores[k] = i, s
    return ids, scores
