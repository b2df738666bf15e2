import os
import tempfile

import pytest
import torch

# Every test process gets its own store, never the user's ~/.cache one (set before any import of it).
os.environ["SIMPLEX_STORE"] = tempfile.mkdtemp(prefix="simplex-store-")
# One intra-op thread: on a 2-core machine torch's OpenMP threads slow down badly as soon as anything
# else runs (the app server and Chromium in the browser test, a second pytest).
torch.set_num_threads(1)


@pytest.fixture
def store(tmp_path):
    from cache import RunStore

    s = RunStore(tmp_path / "store")
    yield s
    s.close()
