"""Checked archives: MD5 verification and safe, all-or-nothing tar extraction."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

from dgc.errors import DGCError
from dgc.io import atomic_dir


class DataError(DGCError, ValueError):
    """A dataset problem the user can fix (bad archive, missing path); one-line message."""


def check_md5(path: Path, expected: str) -> None:
    with open(path, "rb") as fh:
        actual = hashlib.file_digest(fh, "md5").hexdigest()
    if actual != expected:
        raise DataError(f"{path} has MD5 {actual}, expected {expected}: the archive is corrupt or "
                        f"truncated; delete it and download it again")


def _check_member(member: tarfile.TarInfo, target: Path) -> None:
    dest = (target / member.name).resolve()
    if not dest.is_relative_to(target.resolve()):
        raise DataError(f"archive member {member.name!r} would be written outside {target}")
    if member.issym() or member.islnk():
        link = (dest.parent / member.linkname).resolve()
        if not link.is_relative_to(target.resolve()):
            raise DataError(f"archive member {member.name!r} links outside {target}")
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        raise DataError(f"archive member {member.name!r} is a special file")


def safe_extract(archive: Path, target: Path) -> Path:
    """Extract `archive` (any tar) into `target`, all or nothing; members landing outside it are refused."""
    with atomic_dir(target) as staging:
        try:
            with tarfile.open(archive) as tar:
                members = tar.getmembers()
                for member in members:
                    _check_member(member, staging)
                tar.extractall(staging, members=members, filter="data")
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise DataError(f"cannot extract {archive}: {exc} (truncated or not a tar archive?)") from None
    return target
