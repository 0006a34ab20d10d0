import subprocess
import sys

import pytest

from fypbench.cli import main
from fypbench.errors import UserError
from fypbench.registry import METHODS, RECIPES, WORLDS


def test_listing_imports_nothing_heavy():
    code = ("import sys; from fypbench.cli import main; main(['ls', 'methods']); main(['ls', 'worlds']);"
            "main(['ls', 'protocols']);"
            "heavy = [m for m in ('torch', 'diffusers', 'transformers', 'open_clip') if m in sys.modules];"
            "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out
    assert "reference" in out and "mini" in out


def test_unknown_method_suggests():
    with pytest.raises(UserError, match="did you mean 'reference'"):
        METHODS.get("referense")


def test_every_entry_resolves():
    for registry in (METHODS, RECIPES, WORLDS):
        for entry in registry.entries():
            assert callable(entry.load()), entry.name


def test_unknown_command_suggests(capsys):
    assert main(["protocl", "validate", "fyp-1024"]) == 2
    assert "Did you mean 'protocol'" in capsys.readouterr().err
