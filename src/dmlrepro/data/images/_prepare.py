"""Make a data root that :func:`load_image_dataset` can read: extract archives, place plain files.

:func:`prepare_image_dataset` is atomic and idempotent:

* an archive is extracted into a temporary folder beside its destination; only when the whole
  archive has been read are its top-level entries moved into place (each a single rename: the
  real archives have one top-level folder each, e.g. ``CUB_200_2011/``), and a marker
  ``.<archive>.extracted`` is written last. A truncated or damaged archive is a
  :class:`DmlReproError` naming it, and the temporary folder is removed: nothing is left;
* a marker present means done: a second call does nothing. An entry left by an interrupted run
  (no marker) is replaced;
* plain raw files (annotation files, idx files, the CIFAR tarball) are hard-linked, or copied
  atomically, from ``raw_root`` to ``dest_root`` when the two differ.

Tar members are extracted with the ``"data"`` filter (no absolute paths, links out of the
folder or device files); zipfile already refuses such paths.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path

from dmlrepro import DmlReproError
from dmlrepro.data.fetch import check_cached_raw_file
from dmlrepro.data.images.catalog import get_image_dataset_spec
from dmlrepro.io import atomic_path, write_text


def marker_path(folder: Path, archive_name: str) -> Path:
    """The file whose presence says ``archive_name`` was fully extracted into ``folder``."""
    return folder / f".{archive_name}.extracted"


def extract_archive(archive: Path, folder: Path) -> list[str]:
    """Extract ``archive`` (.tgz/.tar.gz/.tar/.zip) into ``folder``, atomically; return the
    top-level entries it created. Does nothing (returns []) if its marker exists."""
    marker = marker_path(folder, archive.name)
    if marker.exists():
        return []
    if not archive.is_file():
        raise DmlReproError(f"{archive}: missing (archive to extract); fetch it with 'dmlrepro fetch'")
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder, prefix=f".{archive.name}.tmp-"))
    try:
        try:
            if archive.suffix == ".zip":
                # a truncated zip has no central directory (BadZipFile on open); a damaged member
                # fails its CRC check while extracting
                with zipfile.ZipFile(archive) as zf:
                    zf.extractall(tmp)
            else:
                with tarfile.open(archive, "r:*") as tar:
                    tar.extractall(tmp, filter="data")
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError) as exc:
            raise DmlReproError(f"{archive}: cannot extract (truncated or damaged archive?): "
                                f"{type(exc).__name__}: {exc}") from exc
        entries = sorted(p.name for p in tmp.iterdir())
        if not entries:
            raise DmlReproError(f"{archive}: the archive is empty")
        for entry in entries:
            target = folder / entry
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)  # left by an interrupted run (no marker)
            elif target.exists() or target.is_symlink():
                target.unlink()
            os.replace(tmp / entry, target)
        write_text(marker, "\n".join(entries) + "\n")
        return entries
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _place(source: Path, dest: Path) -> None:
    """Hard-link ``source`` at ``dest`` (copy if linking fails), atomically."""
    if dest.exists():
        return
    if not source.is_file():
        raise DmlReproError(f"{source}: missing raw file; fetch it with 'dmlrepro fetch'")
    with atomic_path(dest) as tmp:
        tmp.unlink()
        try:
            os.link(source, tmp)
        except OSError:  # another file system, or links not allowed
            shutil.copyfile(source, tmp)


def prepare_image_dataset(name: str, raw_root: str | Path, dest_root: str | Path) -> Path:
    """Make ``dest_root`` a data root from which ``load_image_dataset(name, dest_root)`` reads
    dataset ``name``: extract its archives from ``raw_root`` into ``dest_root/<folder>/`` and
    place its other raw files there. Returns ``dest_root``. ``raw_root`` may equal ``dest_root``
    (archives are then extracted in place, next to themselves)."""
    spec = get_image_dataset_spec(name)
    raw_root, dest_root = Path(raw_root), Path(dest_root)
    same = raw_root.resolve() == dest_root.resolve()
    for relpath in spec.raw_files:
        source = check_cached_raw_file(raw_root / relpath)  # unchanged since fetch verified it
        if relpath in spec.archives:
            extract_archive(source, dest_root / Path(relpath).parent)
        elif not same:
            _place(source, dest_root / relpath)
    return dest_root
