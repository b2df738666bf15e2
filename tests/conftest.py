import os
import tempfile

import pytest
import torch

# Every test process gets its own store, never the user's ~/.cache one (set before any import of it).
os.environ["SIMPLEX_STORE"] = tempfile.mkdtemp(prefix="simplex-store-")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def store(tmp_path):
    from cache import RunStore

    s = RunStore(tmp_path / "store")
    yield s
    s.close()
