"""Camera producers: frames from cameras, files and streams to the frames topic."""
