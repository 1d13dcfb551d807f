"""Get a catalog file into the data root: copy it from a local mirror or download it, then verify.

Guarantees:

* the destination is written atomically (a temporary file beside it, renamed into place only
  once its checksum is verified), so an interrupted or failed fetch leaves nothing there;
* the checksum is verified whatever the source: a mismatch is a :class:`DmlReproError` naming
  the file, the expected and the actual checksum;
* files whose checksum cannot be known offline (``sha256`` None in the catalog) are trusted on
  first use: the checksum is computed, logged as a warning and recorded beside the file as
  ``<file>.sha256``; later fetches are verified against that record.
"""

from __future__ import annotations

import hashlib
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from dmlrepro import DmlReproError
from dmlrepro.data.catalog import RawFile, get_raw_file
from dmlrepro.io import atomic_path, sha256_of, write_text

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_USER_AGENT = "dmlrepro-fetch/0.1"  # some hosts refuse urllib's default agent
_TIMEOUT_S = 60


def sidecar_path(dest: Path) -> Path:
    """Where a trust-on-first-use checksum is recorded: ``<dest>.sha256``."""
    return dest.with_name(dest.name + ".sha256")


def recorded_sha256(dest: Path) -> str | None:
    """The checksum recorded beside ``dest`` by an earlier fetch, if any."""
    side = sidecar_path(dest)
    if not side.exists():
        return None
    fields = side.read_text(encoding="utf-8").split()
    if not fields or len(fields[0]) != 64:
        raise DmlReproError(f"{side}: not a sha256 record (expected '<64 hex digits>  <file name>')")
    return fields[0].lower()


def fetch_raw_file(relpath: str, dest_root: Path, mirror: Path | None = None,
                   allow_download: bool = True) -> Path:
    """Make ``dest_root/relpath`` hold the verified catalog file ``relpath`` and return its path.

    Source order: an existing verified file at the destination is kept; else ``mirror/relpath``
    is copied when it exists; else the catalog URL is downloaded (if ``allow_download``).
    """
    entry = get_raw_file(relpath)
    dest = Path(dest_root) / entry.relpath
    recorded = recorded_sha256(dest)
    # A checksum recorded on first use applies only when the catalog has none.
    expected = entry.sha256 or recorded
    source = Path(mirror) / entry.relpath if mirror is not None else None

    if dest.exists():
        actual = sha256_of(dest)
        # ``recorded`` also accepts an upstream download verified by md5 (see RawFile.download_md5).
        if actual in (entry.sha256, recorded) or expected is None:
            if expected is None:  # present but never recorded (placed by hand): record it now
                _record_first_use(dest, actual, f"existing file {dest}")
            log.debug("%s: already present and verified", dest)
            return dest
        if source is not None and source.exists() and _same_file(source, dest):
            # The destination *is* the mirror's file: never modify the mirror.
            raise _mismatch(dest, expected, actual, hint="this is the mirror's own file, left untouched")
        # A stale or damaged copy in our own data root: remove it, so that a failed re-fetch
        # leaves nothing behind either.
        log.warning("%s: checksum %s does not match expected %s; fetching it again", dest, actual, expected)
        dest.unlink()

    if source is not None and source.exists():
        log.info("copying %s from mirror %s", entry.relpath, mirror)
        with open(source, "rb") as stream:
            _write_verified(stream, dest, entry, expected, origin=str(source), downloaded=False,
                            total=source.stat().st_size)
        return dest

    if entry.url is None:
        where = f" (not in mirror {mirror})" if mirror is not None else ""
        raise DmlReproError(f"{entry.relpath}: not available{where} and it has no download URL: {entry.note}")
    if not allow_download:
        where = f"not in mirror {mirror}" if mirror is not None else "no mirror given"
        raise DmlReproError(f"{entry.relpath}: missing at {dest}, {where}, and downloads are disabled "
                            f"(its URL is {entry.url})")
    log.info("downloading %s from %s", entry.relpath, entry.url)
    request = urllib.request.Request(entry.url, headers={"User-Agent": _USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
            length = response.headers.get("Content-Length")
            _write_verified(response, dest, entry, expected, origin=entry.url, downloaded=True,
                            total=int(length) if length and length.isdigit() else None)
    except (urllib.error.URLError, OSError) as exc:  # HTTPError is a URLError
        raise DmlReproError(f"{entry.relpath}: download from {entry.url} failed: {exc}") from exc
    return dest


def _write_verified(stream: BinaryIO, dest: Path, entry: RawFile, expected: str | None, *,
                    origin: str, downloaded: bool, total: int | None) -> None:
    """Stream ``stream`` into a temporary file, verify, then move it to ``dest``."""
    sha = hashlib.sha256()
    # Upstream publishes md5 for some files whose bytes differ from the mirror's: hash both.
    md5 = hashlib.md5(usedforsecurity=False) if (downloaded and entry.download_md5) else None
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as out, tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                                          desc=Path(entry.relpath).name, disable=None, leave=False) as bar:
            while block := stream.read(_CHUNK):
                out.write(block)
                sha.update(block)
                if md5 is not None:
                    md5.update(block)
                bar.update(len(block))
        actual = sha.hexdigest()
        if md5 is not None:
            # The download is upstream's file, not the mirror's: check upstream's md5.
            if md5.hexdigest() != entry.download_md5:
                raise _mismatch(dest, entry.download_md5, md5.hexdigest(), origin=origin, algorithm="md5")
            record = actual != entry.sha256
        elif expected is not None:
            if actual != expected:
                raise _mismatch(dest, expected, actual, origin=origin)
            record = False
        else:
            record = True
        # Leaving the ``with`` moves the verified file into place.
    if record:
        _record_first_use(dest, actual, origin)


def _record_first_use(dest: Path, actual: str, origin: str) -> None:
    log.warning("%s: no checksum known in advance; recorded sha256 %s (from %s) in %s - "
                "later fetches are verified against it", dest, actual, origin, sidecar_path(dest))
    write_text(sidecar_path(dest), f"{actual}  {dest.name}\n")


def _mismatch(dest: Path, expected: str | None, actual: str, *, origin: str | None = None,
              algorithm: str = "sha256", hint: str | None = None) -> DmlReproError:
    src = f" (from {origin})" if origin else ""
    consequence = hint or "nothing was written there"
    return DmlReproError(f"{dest}: {algorithm} mismatch{src}: expected {expected}, got {actual}; {consequence}")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def fetch_many(relpaths: list[str], dest_root: Path, mirror: Path | None = None,
               allow_download: bool = True) -> list[Path]:
    """:func:`fetch_raw_file` for each of ``relpaths``, in order."""
    return [fetch_raw_file(r, dest_root, mirror, allow_download) for r in relpaths]

