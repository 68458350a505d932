"""The trainer's warnings in an operator's words (tools.warning_words): every warning text the
trainer's code can write, collected from the code itself, has operator words of its own."""

from __future__ import annotations

import ast

import numpy as np
import pytest

from infra.settings import REPO_ROOT
from tools.warning_words import GENERIC, KINDS, explain, headline

# Where the trainer's warnings are written: the trainer, and the person masker whose reason
# (masker.why) the trainer passes on.
SOURCES = sorted((REPO_ROOT / "trainer").rglob("*.py")) + [REPO_ROOT / "vision" / "personmask.py"]
SINKS = {"warnings", "notes"}  # the lists warnings are gathered in (x.append(...), x += [...], warnings=[...])
NOTES = {"note", "why"}  # a text kept to be passed on as a warning: x.note, x.why, note = ...
PRODUCERS = {"stored_background", "floor_with", "facing_warnings", "uncovered_words"}  # return warnings
# Warnings passed on from elsewhere, each written by code the collector reads (above). One not
# listed here is a new way in: read where its texts come from and teach the collector.
HANDED_ON = {
    "dance.note",
    "split.note",
    "tail.note",
    "masker.why",
    "masks.masker.why",  # the same PersonMasker.why, reached through trainer.plates.PersonMasks
    "why",
    "words",
    "warning",
    "framed.warnings",
    "shot.warnings",
    "facing_warnings(self.session_poses, self.poses)",
    "[n for n in notes if n not in fidelity.warnings]",
    "[f'{s}: {w}' for w in framed.warnings]",
    "warnings",  # a list gathered above, handed on whole (Framed(..., warnings=warnings))
    "self.warnings",
}
# Engineers' words that mean nothing to an operator.
JARGON = (
    "held out",
    "held-out",
    "conditioning",
    "plate",
    "torso",
    "judge",
    "pose map",
    "fidelity",
    "blazepose",
    "generator",
    "framing",
    "normaliz",
    "residual",
    "crop",
    "mask",
    "one-shot",
    "temporal",
    "limb error",
)


def _sample(node: ast.JoinedStr) -> str:
    """The f-string with each value as a stand-in: a share ("{x:.0%}") as 40%, anything else as 7."""
    out = []
    for part in node.values:
        if isinstance(part, ast.Constant):
            out.append(str(part.value))
        else:
            spec = ast.unparse(part.format_spec) if isinstance(part, ast.FormattedValue) and part.format_spec else ""
            out.append("40%" if "%" in spec else "7")
    return "".join(out)


def _name(node: ast.AST) -> str | None:
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None


class Collector(ast.NodeVisitor):
    def __init__(self, tree: ast.Module) -> None:
        self.texts: list[str] = []
        self.handed_on: set[str] = set()
        self.constants = {
            t.id: n.value.value
            for n in tree.body
            if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)
            for t in n.targets
            if isinstance(t, ast.Name)
        }

    def take(self, node: ast.AST | None, passed_on: bool = True) -> None:
        """The texts node stands for; an expression that is none, as passed on (passed_on) or ignored."""
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value:
                self.texts.append(node.value)
        elif isinstance(node, ast.JoinedStr):
            self.texts.append(_sample(node))
        elif isinstance(node, ast.Name) and node.id in self.constants:
            self.texts.append(self.constants[node.id])
        elif isinstance(node, ast.List | ast.Tuple):
            for e in node.elts:
                self.take(e, passed_on)
        elif isinstance(node, ast.IfExp):
            self.take(node.body, passed_on)
            self.take(node.orelse, passed_on)
        elif node is not None and passed_on:
            self.handed_on.add(ast.unparse(node))

    def visit_Call(self, node: ast.Call) -> None:
        f = node.func
        if isinstance(f, ast.Attribute) and f.attr == "append" and _name(f.value) in SINKS:
            for a in node.args:
                self.take(a)
        for k in node.keywords:
            if k.arg == "warnings":
                self.take(k.value)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if _name(node.target) in SINKS:
            self.take(node.value)
        self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign) -> None:
        if any(
            isinstance(t, ast.Name) and t.id == "note" or isinstance(t, ast.Attribute) and t.attr in NOTES
            for t in node.targets
        ):
            self.take(node.value, passed_on=False)
        self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        if node.name in PRODUCERS:
            for r in _own(node):
                if isinstance(r, ast.Return):
                    self.take(r.value, passed_on=False)
        self.generic_visit(node)


def _own(node: ast.AST):
    """The nodes of a function's body, not those of functions defined in it."""
    for child in ast.iter_child_nodes(node):
        yield child
        if not isinstance(child, ast.FunctionDef | ast.Lambda):
            yield from _own(child)


def trainer_warnings() -> tuple[list[str], set[str]]:
    texts, handed_on = [], set()
    for path in SOURCES:
        tree = ast.parse(path.read_text(), str(path))
        c = Collector(tree)
        c.visit(tree)
        texts += c.texts
        handed_on |= c.handed_on
    return sorted(set(texts)), handed_on


def test_every_warning_the_trainer_can_write_has_operator_words():
    texts, handed_on = trainer_warnings()
    # The collector reads the code as it is: a handful it must find, and no way in it cannot read.
    assert len(texts) >= 35, texts
    for known in (
        "the temporal and face options are for the person framing: this session has neither",
        "too few frames to hold any out: the quality figures are on training frames",
        "no judge floor: the session has no frame",
    ):
        assert known in texts
    assert any(t.startswith("BlazePose is unavailable") for t in texts)  # vision.personmask's reason
    assert any(t.startswith("the visitor never showed") for t in texts)  # trainer.coverage's words
    assert handed_on == HANDED_ON, "a warning passed on from a place the collector does not read"
    unknown = [t for t in texts if explain(t)["kinds"] == [GENERIC.name]]
    assert not unknown, f"trainer warnings without operator words (add a Kind to tools.warning_words): {unknown}"
    # And each kind answers at least one of the trainer's texts: no pattern that matches nothing.
    found = {k for t in texts for k in explain(t)["kinds"]}
    assert found == {k.name for k in KINDS}, {k.name for k in KINDS} - found


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_operator_words_are_plain(kind):
    text = f"{kind.short} {kind.words}".lower()
    assert not [j for j in JARGON if j in text], text
    assert kind.words.endswith(".") and len(kind.words) < 260


def test_words_carry_the_warnings_figures_and_details_keep_the_text():
    text = "the person is cut off by the frame's edge in 40% of the training frames: what lies outside is never learnt"
    got = explain(text)
    assert got["kinds"] == ["cut-off"] and got["affects_video"] and got["details"] == text
    assert got["words"].startswith("The visitor was partly out of the picture (40% of the time)")
    assert "stay inside the marks" in got["words"] and got["short"] == "partly out of the picture"


def test_real_trainer_texts():
    from trainer.coverage import uncovered_words
    from trainer.training_set import holdout_split

    words = uncovered_words({"uncovered_frames": 12, "measurable_frames": 40, "uncovered": [(3, 9), (20, 25)]})
    got = explain(words)
    assert got["kinds"] == ["dance-poses-missed"]
    assert "did not show 12 of the dance's 40 poses (at frame 3-frame 9, frame 20-frame 25)" in got["words"]

    # A held-out split's notes, one per camera, joined: one warning, its kind's words once.
    split = holdout_split(np.array(["a"] * 3 + ["b"] * 40), np.r_[np.arange(3), np.arange(40)], 0.1, 30)
    assert split.note.startswith("camera a has 3 frames: none held out; camera b has 40 frames: a gap of")
    got = explain(split.note)
    assert got["kinds"] == ["scores-short-recording"] and not got["affects_video"]
    assert got["words"].count("The recording was short") == 1 and got["details"] == split.note

    # Notes of several kinds joined: each kind's words, in the order the notes were written.
    joined = f"visitor 2: {split.note.split(';')[0]}: placed and sized by the body; visitor 3 has no reference dancer"
    got = explain(joined)
    assert got["kinds"] == ["scores-short-recording", "dance-placement", "visitor-left-out"]
    assert (
        got["affects_video"] and got["short"] == "quality scores rough, dance placed by body size, a visitor left out"
    )


def test_an_error_after_a_known_head_is_not_read_for_other_kinds():
    text = "no one-shot video: ValueError: the person is cut off by the frame's edge in 40% of the training frames"
    assert explain(text)["kinds"] == ["no-first-video"]


def test_an_unknown_warning_gets_generic_words_and_its_details():
    got = explain("something the trainer learnt to say yesterday")
    assert got == {
        "kinds": ["other"],
        "short": GENERIC.short,
        "words": GENERIC.words,
        "affects_video": True,
        "details": "something the trainer learnt to say yesterday",
    }


def test_the_headline_names_only_what_may_show_in_the_video():
    warnings = [
        "too few frames to hold any out: the quality figures are on training frames",
        "the person is cut off by the frame's edge in 40% of the training frames: what lies outside is never learnt",
        "camera cam0: the person covered 80% of the frame in every training frame; the plate there is filled in",
        "the person is cut off by the frame's edge in 30% of the training frames: what lies outside is never learnt",
    ]
    assert headline(warnings) == "partly out of the picture, background smudges possible"
    assert headline(warnings[:1]) == ""
