"""The trainer's warnings in an operator's words, for the console and `booth status`.

The trainer writes its warnings for engineers (metrics.json and the training progress keep them
as written); an operator at the booth needs to know what a warning means for the visitor's video
and what they can do about it. Each kind of warning is recognised by a pattern on the trainer's
text and given a short label (the session's status line and list), a sentence or two (the
session's card) and whether it may show in the video (the status line names only those). The
trainer's own text stays with it as the details. A text no pattern knows gets a generic sentence,
its details still shown; tests/test_warning_words.py fails when the trainer can write a warning
that no pattern here knows.

Several notes joined with "; " (a held-out split's, a group dance's) are one warning with each of
its kinds' words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Kind:
    name: str
    pattern: str  # searched for in the trainer's text; its named groups fill `words`
    short: str  # a few words for the status line and the session list
    words: str  # what it means for the video, and what the operator can do
    affects_video: bool = True  # False: figures or the first video only; the final video is as good
    whole: bool = False  # the pattern is the text's head and an error message follows: nothing else is read


KINDS: tuple[Kind, ...] = (
    # --- prefixes followed by an error message ------------------------------------------------------
    Kind(
        "no-first-video",
        r"^no one-shot video: ",
        "no quick first video",
        "The quick first video could not be made: the visitor waits for the trained one. "
        "If it happens every time, tell an engineer (see details).",
        affects_video=False,
        whole=True,
    ),
    Kind(
        "dance-check-unavailable",
        r"^dance fidelity not measured: |^dance fidelity: no rendered frame to judge|^no dance\.png: ",
        "dance check not run",
        "The automatic check of how well the video follows the dance did not run: its scores are missing. "
        "The video itself is not affected; watch it before handing it over.",
        affects_video=False,
        whole=True,
    ),
    Kind(
        "no-check-baseline",
        r"^no judge floor: ",
        "dance check without baseline",
        "The dance check has no baseline for this session, so its scores are harder to read. "
        "The video itself is not affected.",
        affects_video=False,
        whole=True,
    ),
    # --- the recording -------------------------------------------------------------------------------
    Kind(
        "cut-off",
        r"the person is cut off by the frame's edge in (?P<share>\d+%) of the training frames",
        "partly out of the picture",
        "The visitor was partly out of the picture ({share} of the time): what the camera did not see "
        "(often the feet or the head) may look wrong. Ask the next visitor to stay inside the marks.",
    ),
    Kind(
        "dance-poses-missed",
        r"the visitor never showed (?P<missed>\d+) of the dance's (?P<total>\d+) poses \((?P<when>[^)]*)\)",
        "some dance moves not shown",
        "The visitor did not show {missed} of the dance's {total} poses (at {when}): those moments may come "
        "out blurred. Ask the next visitor to follow the dancer on the display.",
    ),
    Kind(
        "facings-missed",
        r"the session shows the visitor facing (?P<shown>\S+) only: (?P<share>\d+%) of the dance "
        r"\((?P<unseen>[^)]*)\) faces a way they never showed",
        "never turned round",
        "The visitor was only seen facing {shown}, but {share} of the dance faces {unseen}: those moments "
        "are guessed and may look wrong. Ask the next visitor to turn round when the display says so.",
    ),
    Kind(
        "hard-to-find",
        r"the whole frame is used instead of a crop around the person",
        "visitor hard to see",
        "The visitor could not be found reliably in the picture, so the whole picture was learnt: the video "
        "may be blurry. Check the light and that the visitor stands inside the marks.",
    ),
    Kind(
        "no-good-view",
        r": the generator reads the pose map alone",
        "less like the visitor",
        "No frame showed the visitor clearly enough to copy their look from: the video may look less like "
        "them. Ask the next visitor to face the camera for a moment.",
    ),
    Kind(
        "outline-guessed",
        r"BlazePose is unavailable .*masks are drawn from the pose",
        "rough outline",
        "The model that finds the visitor's outline is missing: the outline is guessed from the skeleton, "
        "so edges (hair, loose clothes) may look rough. Tell an engineer (the models folder).",
    ),
    Kind(
        "outline-missed",
        r"BlazePose found nobody where the pose is in (?P<frames>\d+) of (?P<total>\d+) training frames",
        "rough outline",
        "The visitor's outline was not found in {frames} of {total} frames: edges may look rough. "
        "Even light and a plain background help.",
    ),
    Kind(
        "dance-placement",
        r"the dance is placed and sized by the visitor's body|: placed and sized by the body",
        "dance placed by body size",
        "The visitor's feet (or head) were never seen clearly, so the dance is placed by their body size: "
        "it may float or stand off the floor. Ask visitors to keep their feet in the picture.",
    ),
    # --- the empty booth behind the visitor ----------------------------------------------------------------
    Kind(
        "background-unreadable",
        r"the stored background of camera (?P<camera>\S+) does not decode",
        "background guessed",
        "The saved picture of the empty booth (camera {camera}) could not be read, so the background is "
        "pieced together from the recording: smudges may show. Capture it again with "
        "`booth background capture`.",
    ),
    Kind(
        "background-wrong-size",
        r"the stored background of camera (?P<camera>\S+) is \S+ but the session's frames are",
        "background guessed",
        "The saved picture of the empty booth (camera {camera}) is not the camera's size, so the background "
        "is pieced together from the recording: smudges may show. Capture it again with "
        "`booth background capture`.",
    ),
    Kind(
        "background-spots",
        r"camera (?P<camera>\S+): the person covered (?P<share>\d+%) of the frame in every training frame",
        "background smudges possible",
        "The visitor always stood in front of the same part of the booth, so the background there is "
        "guessed: smudges may show behind them. Capture the empty booth with `booth background capture`.",
    ),
    # --- several people ----------------------------------------------------------------------------------
    Kind(
        "dancer-left-out",
        r"reference dancer \d+ has no visitor to dance it|visitor \d+ has no palette in this generator",
        "a dancer left out",
        "There were fewer visitors than dancers in this dance: a dancer is left out of the video.",
    ),
    Kind(
        "visitor-left-out",
        r"visitor \d+ has no reference dancer",
        "a visitor left out",
        "There were more visitors than dancers in this dance: a visitor does not appear in the video.",
    ),
    # --- the first video ---------------------------------------------------------------------------------
    Kind(
        "first-video-parts",
        r"one-shot video: the visitor was never seen with their (?P<parts>.+?): the dance is shown without them",
        "first video incomplete",
        "The quick first video shows the visitor without their {parts}: the camera never saw them. "
        "The trained video draws them.",
        affects_video=False,
    ),
    # --- the trainer's settings ----------------------------------------------------------------------------
    Kind(
        "face-soft",
        r"px crop is too small for a face box",
        "faces may look soft",
        "Faces are not sharpened separately at this picture size: they may look soft. An engineer can "
        "raise the trainer's picture size setting.",
    ),
    Kind(
        "setting-unused",
        r"the temporal and face options are for the person framing|"
        r"the temporal option is not combined with warp conditioning|"
        r"conditioning needs the person framing",
        "a trainer setting not used",
        "A trainer setting does not apply to this session and was left out; the video is made without it. "
        "An engineer can check the trainer's settings (see details).",
    ),
    Kind(
        "resumed",
        r"resuming a session that started with \S+ conditioning",
        "training resumed",
        "Training picked up where it had stopped and keeps the method it started with. Nothing to do.",
        affects_video=False,
    ),
    # --- the quality figures -------------------------------------------------------------------------------
    Kind(
        "scores-short-recording",
        r"camera \S+ has \d+ frames: none held out|camera \S+ has \d+ frames: a gap of|"
        r"the last frames held out \(|too few frames to hold any out",
        "quality scores rough",
        "The recording was short, so the video's quality scores are rough. The video itself is not affected.",
        affects_video=False,
    ),
    Kind(
        "scores-fewer-frames",
        r"frames held out, not \d+: the others show the dance's poses",
        "quality scores rough",
        "Fewer frames were set aside to score the video, so that it learns more of the dance: its quality "
        "scores are rougher. Nothing to do.",
        affects_video=False,
    ),
    Kind(
        "dance-check-partial",
        r"dance fidelity: \d+ of \d+ judged dance poses have|dance fidelity: no frame could be compared",
        "dance check partial",
        "The automatic dance check could not score some moments (the reference dancer's pose was unclear "
        "there, or the figure left the picture): its scores rest on fewer frames. The video itself is not "
        "affected.",
        affects_video=False,
    ),
    Kind(
        "figure-missing",
        r"dance fidelity: .+ found nobody in (?P<frames>\d+) of (?P<total>\d+) rendered frames",
        "figure missing in places",
        "In {frames} of the {total} moments checked, no person could be seen in the video: the figure may be "
        "broken or blurred there. Watch the video before handing it over.",
    ),
)
GENERIC = Kind(
    "other",
    "",
    "trainer note",
    "The trainer noted something unusual about this session; the video may be affected. "
    "If it repeats, tell an engineer (see details).",
)
_COMPILED = [(k, re.compile(k.pattern)) for k in KINDS]


def explain(text: str) -> dict[str, Any]:
    """One trainer warning: {"kinds", "short", "words", "affects_video", "details" (the text itself)}."""
    found: list[tuple[int, Kind, dict[str, str]]] = []
    for kind, pattern in _COMPILED:
        m = pattern.search(text)
        if m is None:
            continue
        if kind.whole:
            found = [(0, kind, m.groupdict())]
            break
        found.append((m.start(), kind, m.groupdict()))
    found.sort(key=lambda f: f[0])
    kinds = [k for _, k, _ in found] or [GENERIC]
    words = [k.words.format(**groups) for _, k, groups in found] or [GENERIC.words]
    return {
        "kinds": [k.name for k in kinds],
        "short": ", ".join(dict.fromkeys(k.short for k in kinds)),
        "words": " ".join(dict.fromkeys(words)),
        "affects_video": any(k.affects_video for k in kinds),
        "details": text,
    }


def headline(warnings: list[str]) -> str:
    """The short labels of the warnings that may show in the video, for a one-line status ("" if none)."""
    shorts = [explain(w) for w in warnings]
    return ", ".join(dict.fromkeys(s["short"] for s in shorts if s["affects_video"]))
