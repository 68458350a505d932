"""The embedded S3 server (nanio), with objects still being written left out of its listings.

nanio writes each object to a temporary file (`.tmp.<hex>`) in the object's own folder and renames
it when the upload is complete, and its listings skip only names of its own layout (`.nanio...`):
a listing taken during an upload shows the temporary file as an object. The broker's S3 storage
engine lists a partition's records folder on every fetch and reads each name as a 20-digit offset,
so a fetch that coincided with a write failed (`ParseInt(InvalidDigit)`) and the broker dropped
the connection: with `booth stack up --storage s3` the pipeline stalled a second into a session.
Run as `python -m infra.nanio_serve serve ...` (nanio's own arguments), nanio skips those files
too. `check` refuses to run against a nanio release where the names moved, rather than silently
bring the stalls back.
"""

from __future__ import annotations

import sys

TEMPORARY = ".tmp."  # nanio.storage.filesystem: `final.parent / f".tmp.{uuid.uuid4().hex}"`


class IncompatibleRelease(RuntimeError):
    """nanio no longer has what this module patches."""


def check() -> None:
    import inspect

    from nanio.storage import filesystem, paths

    problems = []
    if not callable(getattr(paths, "is_internal_name", None)):
        problems.append("nanio.storage.paths.is_internal_name is missing")
    if getattr(filesystem, "is_internal_name", None) is not getattr(paths, "is_internal_name", None):
        problems.append("nanio.storage.filesystem no longer uses paths.is_internal_name")
    if 'f".tmp.{uuid.uuid4().hex}"' not in inspect.getsource(filesystem):
        problems.append("nanio.storage.filesystem no longer names its temporary files .tmp.<hex>")
    if problems:
        raise IncompatibleRelease(
            "infra/nanio_serve.py cannot hide this nanio release's temporary files ("
            + "; ".join(problems)
            + "); install the nanio version pyproject.toml names, or run the broker with --storage memory"
        )


def hide_temporary_files() -> None:
    from nanio.storage import filesystem, paths

    check()
    original = paths.is_internal_name

    def internal(name: str) -> bool:
        return original(name) or name.startswith(TEMPORARY)

    paths.is_internal_name = internal
    filesystem.is_internal_name = internal


def main(argv: list[str] | None = None) -> int:
    from nanio.cli import main as nanio_main

    hide_temporary_files()
    return nanio_main(argv)  # serves in this process (one worker), with the names hidden


if __name__ == "__main__":
    sys.exit(main())
