import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """The support tests run small networks: one intra-op thread is as fast as two and does not
    collapse when `make test` runs two pytest workers on two cores."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)
