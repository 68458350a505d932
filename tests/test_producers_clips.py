"""Test clips whose frames carry their own number: 8 black/white blocks along the bottom edge hold the
frame number in binary (robust to H.264, JPEG and resizing), and the number is also drawn as text."""

from __future__ import annotations

import cv2

from helpers import counter_frame, decode_jpeg, read_counter, write_counter_video


def test_counter_survives_jpeg_and_resizing():
    from producers.camera import encode_jpeg

    for number in (0, 1, 85, 170, 255):
        bgr = cv2.cvtColor(counter_frame(number), cv2.COLOR_RGB2BGR)
        jpeg, width, height = encode_jpeg(bgr, (160, 120), quality=60)
        assert (width, height) == (160, 120)
        assert read_counter(decode_jpeg(jpeg)) == number


def test_counter_video_holds_each_number_in_order(tmp_path):
    import av

    path = write_counter_video(tmp_path / "clip.mp4", frames=12)
    with av.open(str(path)) as container:
        numbers = [read_counter(f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]
    assert numbers == list(range(12))
