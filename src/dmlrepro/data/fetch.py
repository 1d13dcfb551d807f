"""Get a catalog file into the data root: copy it from a local mirror or download it, then verify.

Guarantees:

* the destination is written atomically (a temporary file beside it, renamed into place only
  once its checksum is verified), so an interrupted or failed fetch leaves nothing there;
* the checksum is verified whatever the source: a mismatch is a :class:`DmlReproError` naming
  the file, the expected and the actual checksum;
* the catalogue's checksums always win. A file is accepted when its sha256 equals the
  catalogue's ``sha256`` or its md5 equals the catalogue's ``download_md5`` (upstream's published
  md5: the bytes at the URL, which a mirror normally holds unchanged too, e.g. the image
  archives), whether it was downloaded, copied from a mirror or found in place;
* only files with no catalogue checksum at all (``sha256`` and ``download_md5`` None) are
  trusted on first use: the checksum is computed, logged as a warning and recorded beside the
  file as ``<file>.sha256``; later fetches are verified against that record. A ``.sha256``
  record beside a file that has a catalogue checksum is ignored, so it can never make a
  modified file pass;
* every file fetch verifies gets a stamp ``<file>.verified`` (JSON: sha256, size, mtime_ns).
  The readers call :func:`check_cached_raw_file` before they use a raw file: an unchanged size
  and mtime costs one ``stat``; otherwise the file is re-hashed and must still have the stamp's
  sha256. Files without a stamp (placed by hand, a mirror used as the data root, test fixtures)
  are not re-checked there: fetch never saw them. A change that keeps both size and mtime (e.g.
  ``touch -r`` after editing) is not detected: the stamp guards against accidents, not attacks.

md5 is a weak checksum against a deliberate forgery; it is what upstream publishes, and it is
only trusted for files whose catalogue entry has no sha256.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from dmlrepro import DmlReproError
from dmlrepro.data.catalog import RawFile, get_raw_file
from dmlrepro.io import atomic_path, sha256_of, write_json, write_text

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_USER_AGENT = "dmlrepro-fetch/0.1"  # some hosts refuse urllib's default agent
_TIMEOUT_S = 60


def sidecar_path(dest: Path) -> Path:
    """Where a trust-on-first-use checksum is recorded: ``<dest>.sha256``."""
    return dest.with_name(dest.name + ".sha256")


def stamp_path(dest: Path) -> Path:
    """Where fetch records what it verified: ``<dest>.verified`` (sha256, size, mtime_ns)."""
    return dest.with_name(dest.name + ".verified")


def recorded_sha256(dest: Path) -> str | None:
    """The checksum recorded beside ``dest`` by an earlier fetch, if any."""
    side = sidecar_path(dest)
    if not side.exists():
        return None
    fields = side.read_text(encoding="utf-8").split()
    if not fields or len(fields[0]) != 64:
        raise DmlReproError(f"{side}: not a sha256 record (expected '<64 hex digits>  <file name>')")
    return fields[0].lower()


def has_catalog_checksum(entry: RawFile) -> bool:
    """Whether the catalogue knows a checksum for ``entry`` (then no ``.sha256`` record applies)."""
    return entry.sha256 is not None or entry.download_md5 is not None


def write_stamp(path: Path, sha256: str) -> None:
    """Record that ``path`` was verified with checksum ``sha256`` at its current size and mtime."""
    st = Path(path).stat()
    write_json(stamp_path(Path(path)), {"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns})


def check_cached_raw_file(path: str | os.PathLike) -> Path:
    """Re-check a raw file before it is used; return its path.

    Where fetch left a stamp (``<file>.verified``), an unchanged size and mtime pass at the cost
    of a ``stat``; a changed one re-hashes the file, which must still have the stamp's sha256
    (a mere ``touch`` passes and refreshes the stamp). A file without a stamp, or a missing file,
    is returned unchecked (its reader reports a missing file).
    """
    path = Path(path)
    stamp = stamp_path(path)
    if not stamp.is_file() or not path.is_file():
        return path
    try:
        record = json.loads(stamp.read_text(encoding="utf-8"))
        verified, size, mtime_ns = str(record["sha256"]), int(record["size"]), int(record["mtime_ns"])
    except (ValueError, KeyError, TypeError) as exc:
        raise DmlReproError(f"{stamp}: not a verification stamp (JSON with sha256, size, mtime_ns): {exc}; "
                            "delete it and fetch the file again") from None
    st = path.stat()
    if st.st_size == size and st.st_mtime_ns == mtime_ns:
        return path
    actual = sha256_of(path)
    if actual != verified:
        raise DmlReproError(f"{path}: changed since fetch verified it (sha256 {verified}, now {actual}, "
                            f"size {size} -> {st.st_size} bytes); delete it and {stamp.name}, then fetch it again")
    log.info("%s: modification time changed but the content is the verified one; stamp refreshed", path)
    try:
        write_stamp(path, actual)
    except OSError as exc:  # a read-only data root: the next use re-hashes again
        log.debug("%s: cannot refresh the stamp (%s)", stamp, exc)
    return path


@dataclass(frozen=True)
class _Digests:
    sha256: str
    md5: str | None  # computed only where the catalogue has a download_md5


def _digests_of(path: Path, entry: RawFile) -> _Digests:
    sha = hashlib.sha256()
    md5 = hashlib.md5(usedforsecurity=False) if entry.download_md5 else None
    with open(path, "rb") as stream:
        while block := stream.read(_CHUNK):
            sha.update(block)
            if md5 is not None:
                md5.update(block)
    return _Digests(sha.hexdigest(), md5.hexdigest() if md5 is not None else None)


def fetch_raw_file(relpath: str, dest_root: Path, mirror: Path | None = None,
                   allow_download: bool = True) -> Path:
    """Make ``dest_root/relpath`` hold the verified catalog file ``relpath`` and return its path.

    Source order: an existing verified file at the destination is kept; else ``mirror/relpath``
    is copied when it exists; else the catalog URL is downloaded (if ``allow_download``).
    """
    entry = get_raw_file(relpath)
    dest = Path(dest_root) / entry.relpath
    # A checksum recorded on first use applies only where the catalogue has none.
    recorded = None if has_catalog_checksum(entry) else recorded_sha256(dest)
    source = Path(mirror) / entry.relpath if mirror is not None else None

    if dest.exists():
        digests = _digests_of(dest, entry)
        try:
            _verify(entry, recorded, digests, dest)
        except DmlReproError as error:
            if source is not None and source.exists() and _same_file(source, dest):
                # The destination *is* the mirror's file: never modify the mirror.
                raise DmlReproError(f"{error}; this is the mirror's own file, left untouched") from None
            # A stale or damaged copy in our own data root: remove it, so that a failed re-fetch
            # leaves nothing behind either.
            log.warning("%s; fetching it again", error)
            dest.unlink()
            stamp_path(dest).unlink(missing_ok=True)
        else:
            if not has_catalog_checksum(entry) and recorded is None:
                # present but never recorded (placed by hand): record it now
                _record_first_use(dest, digests.sha256, f"existing file {dest}")
            if not (source is not None and source.exists() and _same_file(source, dest)):
                write_stamp(dest, digests.sha256)
            log.debug("%s: already present and verified", dest)
            return dest

    if source is not None and source.exists():
        log.info("copying %s from mirror %s", entry.relpath, mirror)
        with open(source, "rb") as stream:
            _write_verified(stream, dest, entry, recorded, origin=str(source), downloaded=False,
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
            _write_verified(response, dest, entry, recorded, origin=entry.url, downloaded=True,
                            total=int(length) if length and length.isdigit() else None)
    except (urllib.error.URLError, OSError) as exc:  # HTTPError is a URLError
        raise DmlReproError(f"{entry.relpath}: download from {entry.url} failed: {exc}") from exc
    return dest


def _verify(entry: RawFile, recorded: str | None, digests: _Digests, dest: Path, *,
            origin: str | None = None, downloaded: bool = False) -> None:
    """Raise a mismatch error unless ``digests`` match a catalogue checksum (or, where the
    catalogue has none, the first-use record ``recorded``, if any)."""
    if not has_catalog_checksum(entry):
        if recorded is not None and digests.sha256 != recorded:
            raise _mismatch(dest, recorded, digests.sha256, origin=origin,
                            hint=f"the sha256 recorded on first use in {sidecar_path(dest).name}")
        return
    if entry.sha256 is not None and digests.sha256 == entry.sha256:
        return
    if entry.download_md5 is not None and digests.md5 == entry.download_md5:
        return  # upstream's own bytes (a download, or an archive the mirror holds unchanged)
    if entry.download_md5 is not None and (downloaded or entry.sha256 is None):
        # what should have matched here is upstream's md5
        also = f" (nor the mirror's sha256 {entry.sha256}: got {digests.sha256})" if entry.sha256 else ""
        raise _mismatch(dest, entry.download_md5, f"{digests.md5}{also}", origin=origin, algorithm="md5",
                        hint="upstream's published md5")
    also = f" (nor upstream's md5 {entry.download_md5}: got {digests.md5})" if entry.download_md5 else ""
    raise _mismatch(dest, entry.sha256, f"{digests.sha256}{also}", origin=origin, hint="the catalogue's sha256")


def _write_verified(stream: BinaryIO, dest: Path, entry: RawFile, recorded: str | None, *,
                    origin: str, downloaded: bool, total: int | None) -> None:
    """Stream ``stream`` into a temporary file, verify, move it to ``dest``, stamp it."""
    sha = hashlib.sha256()
    md5 = hashlib.md5(usedforsecurity=False) if entry.download_md5 else None
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as out, tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                                          desc=Path(entry.relpath).name, disable=None, leave=False) as bar:
            while block := stream.read(_CHUNK):
                out.write(block)
                sha.update(block)
                if md5 is not None:
                    md5.update(block)
                bar.update(len(block))
        digests = _Digests(sha.hexdigest(), md5.hexdigest() if md5 is not None else None)
        _verify(entry, recorded, digests, dest, origin=origin, downloaded=downloaded)
        # Leaving the ``with`` moves the verified file into place.
    if not has_catalog_checksum(entry) and recorded is None:
        _record_first_use(dest, digests.sha256, origin)
    write_stamp(dest, digests.sha256)


def _record_first_use(dest: Path, actual: str, origin: str) -> None:
    log.warning("%s: no checksum known in advance; recorded sha256 %s (from %s) in %s - "
                "later fetches are verified against it", dest, actual, origin, sidecar_path(dest))
    write_text(sidecar_path(dest), f"{actual}  {dest.name}\n")


def _mismatch(dest: Path, expected: str | None, actual: str, *, origin: str | None = None,
              algorithm: str = "sha256", hint: str | None = None) -> DmlReproError:
    src = f" (from {origin})" if origin else ""
    what = f" ({hint})" if hint else ""
    tail = "; nothing was written there" if origin else ""
    return DmlReproError(f"{dest}: {algorithm} mismatch{src}: expected {expected}{what}, got {actual}{tail}")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def fetch_many(relpaths: list[str], dest_root: Path, mirror: Path | None = None,
               allow_download: bool = True) -> list[Path]:
    """:func:`fetch_raw_file` for each of ``relpaths``, in order."""
    return [fetch_raw_file(r, dest_root, mirror, allow_download) for r in relpaths]
