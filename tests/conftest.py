import pytest
import torch


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def no_tf32():
    """fp32 matmuls and convolutions in full precision (TF32 off) for one test, restored after.

    Saved and restored by hand: these flags live behind torch.backends' module __setattr__, which
    pytest's monkeypatch (9.2+) cannot undo (it tries delattr)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.fixture(scope="session")
def digits_root(tmp_path_factory):
    """A data root with the digits set built once per test session."""
    from dgc.data import prepare_dataset

    root = tmp_path_factory.mktemp("data")
    prepare_dataset("digits", root)
    return root


TINY_PARAMS = {
    "train": {"epochs": 2, "batch_size": 32, "max_batches": 3, "eval_batch_size": 128,
              "wandb": "disabled", "threads": 1},
    "models": {
        "densenet86_dgc": {"growth": [4, 4, 8], "depth": [1, 1, 1]},
        "densenet86": {"growth": [4, 4, 8], "depth": [1, 1, 1]},
        "resnet18_dgc": {"width": 8, "blocks": [1, 1, 1, 1], "stem": "cifar"},
        "resnet18": {"width": 8, "blocks": [1, 1, 1, 1], "stem": "cifar"},
    },
}


@pytest.fixture
def tiny_params_file(tmp_path, digits_root):
    """A params.yaml for tiny CPU runs on digits; returns its path."""
    import copy

    import yaml

    raw = copy.deepcopy(TINY_PARAMS)
    raw["data"] = {"root": str(digits_root)}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture
def one_torch_thread():
    """Models built and counted on 2 shared CPU cores: one torch thread is faster there."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
