import pytest

from tests.metrics.helpers import save_tiny_clip


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory):
    return save_tiny_clip(tmp_path_factory.mktemp("tiny_clip"))
