"""The booth operator console: a live web page to run sessions and watch the pipeline (`booth console`)."""
