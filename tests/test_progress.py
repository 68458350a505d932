"""Progress off a terminal: plain lines, never one endless line of carriage returns."""

import io

from infra.progress import PlainStatus, bar, is_terminal


def test_a_bar_off_a_terminal_prints_plain_lines():
    out = io.StringIO()
    assert not is_terminal(out)
    with bar(file=out, total=3, desc="training", unit="step") as b:
        for _ in range(3):
            b.update(1)
    text = out.getvalue()
    assert "\r" not in text and text.endswith("\n")
    lines = text.splitlines()
    assert lines[0].startswith("training:") and "3/3" in lines[-1]
    assert len(lines) <= 3  # the first, at most one more in 5 s, and the closing state


def test_plain_status_says_a_new_heading_at_once_and_a_same_one_every_few_seconds():
    said: list[str] = []
    status = PlainStatus(said.append, every_s=3600)
    assert status.update("training", "step 1")
    assert not status.update("training", "step 2")  # too soon
    assert status.update("rendering", "frame 1")  # a new phase shows at once
    assert status.update("rendering", "frame 9", force=True)
    assert said == ["training: step 1", "rendering: frame 1", "rendering: frame 9"]
    again = PlainStatus(said.append, every_s=0)
    again.update("training", "step 1")
    assert again.update("training", "step 2")
