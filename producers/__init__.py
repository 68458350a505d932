"""Camera producers: frames from cameras, files and streams to the frames topic.

producers.camera.run_cameras(settings, session, {camera_id: source}, ...) -> Summary
    capture -> resize -> JPEG -> bounded queue (drop-oldest / drop-newest / block) -> Kafka
producers.spool.record_cameras(...) / publish_spool(...) / BackgroundPublisher
    high-speed mode: record H.264 MP4 + timestamp sidecar first, publish later
producers.sources.open_source(spec) / ArraySource / VideoFileSource / ...
    camera index or /dev/videoN, video file, stream URL, image folder, in-memory RGB arrays
producers.session.publish(...)
    session start / end events
producers.cli.camera, producers.cli.publish_spool
    the `booth camera` and `booth publish-spool` commands
"""
