"""CIFAR-10 and CIFAR-100 from the official archives: taken from `data/raw/` when a user put one there
(no internet), else downloaded there by torchvision; the MD5 always checked before extraction."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dgc.data.archive import DataError, check_md5, safe_extract
from dgc.data.cifar_format import LAYOUTS


@dataclass(frozen=True)
class Archive:
    url: str
    filename: str
    md5: str


ARCHIVES = {
    "cifar10": Archive("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                       "cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"),
    "cifar100": Archive("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                        "cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85"),
}


def fetch_archive(dataset: str, raw_dir: Path, download: bool = True) -> Path:
    """Path of the dataset's archive in `raw_dir`, downloading it when missing; MD5 checked."""
    spec = ARCHIVES[dataset]
    path = Path(raw_dir) / spec.filename
    if not path.exists():
        if not download:
            raise DataError(f"{path} is missing; put the official {spec.filename} there "
                            f"(MD5 {spec.md5}) or allow the download")
        from torchvision.datasets.utils import download_url

        Path(raw_dir).mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(path.suffix + ".part")
        try:
            download_url(spec.url, str(raw_dir), partial.name)
        except Exception as exc:  # network errors come in many types
            if partial.exists():
                partial.unlink()
            raise DataError(f"cannot download {spec.url} ({type(exc).__name__}: {exc}); put "
                            f"{spec.filename} in {raw_dir} by hand") from None
        partial.rename(path)
    check_md5(path, spec.md5)
    return path


def prepare_cifar(dataset: str, target: Path, raw_dir: Path, download: bool = True) -> Path:
    """Extract the checked archive of `dataset` into `target` (all or nothing)."""
    archive = fetch_archive(dataset, raw_dir, download)
    safe_extract(archive, target)
    layout = LAYOUTS[dataset]
    missing = [n for n in (*layout.train, *layout.test, layout.meta)
               if not (target / layout.folder / n).exists()]
    if missing:
        raise DataError(f"{archive} does not contain {layout.folder}/{missing[0]}")
    return target
