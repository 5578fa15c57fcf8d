import hashlib
import io
import pickle
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from dgc.data import (
    ARCHIVES,
    DataError,
    DeviceBatches,
    prepare_dataset,
    random_crop_flip,
    read_meta,
    read_split,
    safe_extract,
)


def _fake_cifar10_archive(path: Path, n_per_batch: int = 6) -> str:
    """A cifar-10-python.tar.gz in the official layout, with random images; returns its MD5."""
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        def add(name, obj):
            data = pickle.dumps(obj)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            add(name, {b"data": rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
                       b"labels": rng.integers(0, 10, n_per_batch).tolist()})
        add("batches.meta", {b"label_names": [b"c%d" % i for i in range(10)]})
    path.write_bytes(buf.getvalue())
    return hashlib.md5(buf.getvalue()).hexdigest()


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network is unplugged in this test")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_digits_build_offline_in_cifar_format(tmp_path, no_network):
    root = prepare_dataset("digits", tmp_path, seed=0)
    train_x, train_y = read_split(root, "digits", "train")
    test_x, test_y = read_split(root, "digits", "test")
    assert train_x.shape == (1437, 3, 32, 32) and test_x.shape == (360, 3, 32, 32)
    assert train_x.dtype == torch.uint8 and set(train_y.tolist()) == set(range(10))
    assert torch.equal(train_x[:, 0], train_x[:, 2])  # grey copied to 3 channels
    meta = read_meta(root, "digits")
    assert len(meta["mean"]) == 3 and all(0 < s < 1 for s in meta["std"])


def test_digits_split_is_fixed_by_the_seed(tmp_path):
    a = read_split(prepare_dataset("digits", tmp_path / "a", seed=0), "digits", "test")
    b = read_split(prepare_dataset("digits", tmp_path / "b", seed=0), "digits", "test")
    c = read_split(prepare_dataset("digits", tmp_path / "c", seed=1), "digits", "test")
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])


def test_cifar_archive_from_raw_dir_is_checked_and_extracted(tmp_path, monkeypatch, no_network):
    raw = tmp_path / "raw"
    raw.mkdir()
    md5 = _fake_cifar10_archive(raw / "cifar-10-python.tar.gz")
    monkeypatch.setitem(ARCHIVES, "cifar10", ARCHIVES["cifar10"].__class__(
        ARCHIVES["cifar10"].url, "cifar-10-python.tar.gz", md5))
    root = prepare_dataset("cifar10", tmp_path, raw_dir=raw)
    x, y = read_split(root, "cifar10", "train")
    assert x.shape == (30, 3, 32, 32) and y.shape == (30,)
    assert read_split(root, "cifar10", "test")[0].shape == (6, 3, 32, 32)


def test_missing_archive_is_downloaded_with_torchvision(tmp_path, monkeypatch):
    source = tmp_path / "server.tar.gz"
    md5 = _fake_cifar10_archive(source)
    monkeypatch.setitem(ARCHIVES, "cifar10", ARCHIVES["cifar10"].__class__(
        "https://example.invalid/cifar-10-python.tar.gz", "cifar-10-python.tar.gz", md5))
    calls = []

    def fake_download(url, root, filename=None, md5=None):
        calls.append(url)
        Path(root, filename).write_bytes(source.read_bytes())

    import torchvision.datasets.utils as tv_utils
    monkeypatch.setattr(tv_utils, "download_url", fake_download)
    root = prepare_dataset("cifar10", tmp_path / "data")
    assert calls == ["https://example.invalid/cifar-10-python.tar.gz"]
    assert (tmp_path / "data" / "raw" / "cifar-10-python.tar.gz").exists()
    assert read_split(root, "cifar10", "test")[0].shape == (6, 3, 32, 32)


def test_md5_mismatch_stops_and_leaves_no_folder(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    _fake_cifar10_archive(raw / "cifar-10-python.tar.gz")  # not the official MD5
    with pytest.raises(DataError, match="MD5.*c58f30108f718f92721af3b95e74349a"):
        prepare_dataset("cifar10", tmp_path, raw_dir=raw)
    assert not (tmp_path / "cifar10").exists()


def test_truncated_archive_leaves_no_half_extracted_folder(tmp_path):
    full = tmp_path / "full.tar.gz"
    _fake_cifar10_archive(full)
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(DataError, match="truncated"):
        safe_extract(cut, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def _tar_with(path: Path, member: tarfile.TarInfo, data: bytes = b"x") -> None:
    with tarfile.open(path, "w") as tar:
        member.size = len(data) if member.isfile() else 0
        tar.addfile(member, io.BytesIO(data) if member.isfile() else None)


def test_member_escaping_the_target_is_refused(tmp_path):
    _tar_with(tmp_path / "evil.tar", tarfile.TarInfo("../escaped.txt"))
    with pytest.raises(DataError, match="outside"):
        safe_extract(tmp_path / "evil.tar", tmp_path / "target" / "inner")
    assert not (tmp_path / "target" / "escaped.txt").exists()
    assert not (tmp_path / "target" / "inner").exists()


def test_symlink_out_of_the_target_is_refused(tmp_path):
    link = tarfile.TarInfo("cifar-10-batches-py/link")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    _tar_with(tmp_path / "evil.tar", link)
    with pytest.raises(DataError, match="outside"):
        safe_extract(tmp_path / "evil.tar", tmp_path / "target")


def test_absolute_member_is_refused(tmp_path):
    _tar_with(tmp_path / "evil.tar", tarfile.TarInfo("/tmp/absolute.txt"))
    with pytest.raises(DataError, match="outside"):
        safe_extract(tmp_path / "evil.tar", tmp_path / "target")


def test_crop_and_flip_take_windows_of_the_padded_image():
    images = torch.arange(2 * 1 * 6 * 6, dtype=torch.uint8).view(2, 1, 6, 6)
    gen = torch.Generator().manual_seed(0)
    out = random_crop_flip(images, gen, padding=2)
    assert out.shape == images.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    for b in range(2):
        windows = [padded[b, :, i:i + 6, j:j + 6] for i in range(5) for j in range(5)]
        windows += [w.flip(-1) for w in windows]
        assert any(torch.equal(out[b], w) for w in windows)


def test_augmentation_is_reproducible_per_epoch():
    x = torch.randint(0, 255, (50, 3, 32, 32), dtype=torch.uint8)
    y = torch.arange(50)
    batches = DeviceBatches(x, y, 16, (0.5,) * 3, (0.25,) * 3, train=True, seed=3)
    batches.set_epoch(4)
    first = [b for b, _ in batches]
    again = [b for b, _ in batches]
    batches.set_epoch(5)
    other = [b for b, _ in batches]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], other[0])


def test_processes_split_every_global_batch_without_overlap():
    x = torch.zeros(40, 3, 32, 32, dtype=torch.uint8)
    y = torch.arange(40)
    seen = []
    for rank in range(2):
        b = DeviceBatches(x, y, 8, (0,) * 3, (1,) * 3, train=True, seed=0, rank=rank, world_size=2)
        seen.append([labels for _, labels in b])
    for r0, r1 in zip(*seen):
        assert len(r0) == len(r1) == 4 and not set(r0.tolist()) & set(r1.tolist())
    assert sorted(torch.cat([torch.cat(s) for s in seen]).tolist()) == list(range(40))


def test_imagenet_needs_its_path(tmp_path):
    with pytest.raises(DataError, match="imagenet_path"):
        prepare_dataset("imagenet", tmp_path)
    with pytest.raises(DataError, match="train/"):
        prepare_dataset("imagenet", tmp_path, imagenet_path=str(tmp_path))


def test_imagenet_folder_loads_with_the_authors_transforms(tmp_path):
    from PIL import Image

    from dgc.data import imagenet_loaders
    for split in ("train", "val"):
        for cls in ("a", "b"):
            (tmp_path / "in" / split / cls).mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (300, 260), (i * 90, 20, 200)).save(tmp_path / "in" / split / cls / f"{i}.png")
    train, val, _ = imagenet_loaders(str(tmp_path / "in"), 2, 2, 0)
    x, y = next(iter(train))
    assert x.shape == (2, 3, 224, 224) and next(iter(val))[0].shape == (2, 3, 224, 224)
    info = prepare_dataset("imagenet", tmp_path / "data", imagenet_path=str(tmp_path / "in"))
    assert (info / "source.json").exists()


def test_data_cli_rejects_unknown_dataset():
    proc = subprocess.run([sys.executable, "-m", "dgc", "data", "mnist", "--params", "params.yaml"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "mnist" in proc.stderr and "Traceback" not in proc.stderr
