import numpy as np
from PIL import Image

from fypbench.base.components import build_components, save_pipeline
from fypbench.cli import main


def test_sample_writes_a_grid_of_seeds(tmp_path):
    folder = save_pipeline(build_components("debug"), tmp_path / "base")
    out = tmp_path / "grid.png"
    assert main(["sample", "--prompt", "A man, on the moon", "--out", str(out), "--base", str(folder),
                 "--seeds", "4", "--steps", "2"]) == 0
    grid = np.asarray(Image.open(out))
    assert grid.ndim == 3 and grid.shape[0] > 2 * 16


def test_sample_with_missing_base_is_a_user_error(tmp_path, capsys):
    assert main(["sample", "--prompt", "x", "--out", str(tmp_path / "g.png"), "--base", str(tmp_path / "nope")]) == 2
    assert str(tmp_path / "nope") in capsys.readouterr().err
    assert not (tmp_path / "g.png").exists()
