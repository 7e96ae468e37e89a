"""Imagenette: ten easy ImageNet classes in ImageNet's folder layout, downloaded and checked.

Imagenette (by fast.ai) is small enough for a free GPU notebook (Colab) and has ImageNet's layout,
so ``python -m sanmini.train`` reads it as it reads ImageNet::

    path = download_imagenette("data")            # data/imagenette2-160/{train,val}/n0.../*.JPEG
    # python -m sanmini.train data/imagenette2-160 --model san10_pairwise --image-size 128 ...

The archive is streamed to ``NAME.part``, its checksum compared with the published one, and only
then renamed; it is extracted into a temporary folder that is renamed when complete. A run
interrupted at any point leaves nothing that looks finished, and the next call starts over.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from .folders import check_image_folder

# URL and MD5 of each archive, as published with the dataset (and in torchvision.datasets.Imagenette).
IMAGENETTE = {
    "160px": ("https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-160.tgz",
              "e793b78cc4c9e9a4ccc0c1155377a412"),
    "320px": ("https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-320.tgz",
              "3df6f0d01a2c9592104656642f5e78a3"),
    "full": ("https://s3.amazonaws.com/fast-ai-imageclas/imagenette2.tgz",
             "fe2fc210e6bb7c5664d602c3cd71e612"),
}
CHUNK = 1 << 20


def file_digest(path, algorithm: str) -> str:
    """The hex digest of a file (``"md5"``, ``"sha256"``, any name hashlib knows)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _checksums(md5: str | None, sha256: str | None) -> dict:
    return {name: value.lower() for name, value in (("md5", md5), ("sha256", sha256)) if value}


def _verify(path: Path, expected: dict, source: str) -> None:
    for algorithm, value in expected.items():
        actual = file_digest(path, algorithm)
        if actual != value:
            raise ValueError(f"{algorithm} checksum mismatch for {source}: got {actual}, expected "
                             f"{value}; the file is incomplete or not the published one")


def download(url: str, path, md5: str | None = None, sha256: str | None = None,
             progress: bool = True) -> Path:
    """Download ``url`` to ``path`` unless a file with the right checksum is already there.

    The bytes go to ``path.part`` first; a checksum mismatch deletes them and raises a ValueError
    naming the URL and both digests. Any URL that ``urllib`` opens works (``https://``,
    ``http://``, ``file://``).
    """
    path = Path(path)
    expected = _checksums(md5, sha256)
    if path.is_file():
        try:
            _verify(path, expected, str(path))
            return path
        except ValueError:
            path.unlink()                                    # a stale or broken file: fetch again
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as f:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=path.name, disable=not progress) as bar:
                for chunk in iter(lambda: response.read(CHUNK), b""):
                    f.write(chunk)
                    bar.update(len(chunk))
        _verify(part, expected, url)
    except urllib.error.URLError as err:
        part.unlink(missing_ok=True)
        raise ConnectionError(f"cannot download {url}: {getattr(err, 'reason', err)}; with no network, "
                              f"fetch the file by other means and put it at {path}, where it is "
                              "checked and used") from err
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, path)
    return path


def extract(archive, root) -> Path:
    """Extract a tar archive with one top-level folder into ``root``; return that folder.

    Extraction goes to a hidden temporary folder that is renamed when complete; members that
    would land outside it (absolute paths, ``..``, links out) are refused (``filter="data"``).
    """
    archive, root = Path(archive), Path(root)
    with tarfile.open(archive) as tar:
        tops = {Path(member.name).parts[0] for member in tar.getmembers() if member.name not in ("", ".")}
        if len(tops) != 1:
            raise ValueError(f"{archive} should hold one top-level folder, found {sorted(tops)[:5]}")
        top = tops.pop()
        staging = root / f".{top}.extracting"
        shutil.rmtree(staging, ignore_errors=True)
        tar.extractall(staging, filter="data")
    target = root / top
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging / top, target)
    staging.rmdir()
    return target


def download_imagenette(root="data", size: str = "160px", url: str | None = None,
                        md5: str | None = None, sha256: str | None = None,
                        progress: bool = True) -> Path:
    """Download and extract Imagenette into ``root``; return the folder with ``train`` and ``val``.

    Args:
        root: where the archive and the extracted folder go.
        size: ``"160px"`` (short side 160, 99 MB), ``"320px"`` or ``"full"``.
        url, md5, sha256: another source for the archive (a mirror, or a local ``file://`` copy)
            and its checksums; by default the published URL and MD5 of ``size``.
    Returns:
        ``root/imagenette2-160`` (for 160px), checked with
        :func:`sanmini.data.folders.check_image_folder`. If it is already there, nothing is
        downloaded.
    """
    if size not in IMAGENETTE:
        raise ValueError(f"size must be one of {sorted(IMAGENETTE)}, got {size!r}")
    if url is None:
        url, published = IMAGENETTE[size]
        md5 = md5 or published
    if not (md5 or sha256):
        raise ValueError(f"give md5 or sha256 for {url}: a download is never used unchecked")
    root = Path(root)
    name = Path(urllib.request.url2pathname(url.rsplit("/", 1)[-1])).name
    folder = root / name.split(".")[0]
    if folder.is_dir():
        try:
            check_image_folder(folder)
            return folder
        except (FileNotFoundError, ValueError):
            pass                                             # incomplete: download again
    archive = download(url, root / name, md5=md5, sha256=sha256, progress=progress)
    folder = extract(archive, root)
    check_image_folder(folder)
    return folder
