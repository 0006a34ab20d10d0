"""The installed layout: one `fypbench` namespace; every package folder is listed in pyproject.toml."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAPPED = {"baselines": "fypbench.baselines", "models": "fypbench.models", "protocols": "fypbench.protocols"}


def _package_name(folder: Path) -> str:
    rel = folder.relative_to(ROOT).parts
    if rel[0] in MAPPED:
        return ".".join([MAPPED[rel[0]], *rel[1:]])
    return ".".join(rel)


def test_every_package_folder_is_installed():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    roots = ["fypbench", *MAPPED]
    found = {_package_name(init.parent) for r in roots for init in (ROOT / r).rglob("__init__.py")
             if "__pycache__" not in init.parts}
    assert found - listed == set(), "add these packages to pyproject.toml [tool.setuptools] packages"
    assert all(name == "fypbench" or name.startswith("fypbench.") for name in listed)


def test_mapped_folders_import_inside_the_namespace():
    import fypbench.baselines
    import fypbench.models.followpose
    import fypbench.protocols

    assert Path(fypbench.baselines.__file__).parent == ROOT / "baselines"
    assert Path(fypbench.models.followpose.__file__).parent == ROOT / "models" / "followpose"
    assert fypbench.protocols.DATA_DIR == ROOT / "protocols"
