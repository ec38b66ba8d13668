import subprocess
import sys

import pytest

from r1lab import __version__
from r1lab.cli import build_parser, main
from r1lab.errors import UserError


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_help_lists_every_registered_verb(capsys):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "verb")
    assert main([]) == 0
    out = capsys.readouterr().out
    for verb in sub.choices:
        assert verb in out


def test_every_verb_has_help(capsys):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "verb")
    for verb in sub.choices:
        with pytest.raises(SystemExit) as exc:
            main([verb, "--help"])
        assert exc.value.code == 0, verb
        assert "usage:" in capsys.readouterr().out


def test_user_error_exits_2_with_one_line(monkeypatch, capsys):
    import r1lab.cli as cli

    def boom(args):
        raise UserError("bad thing in x.yaml", hint="fix it")

    real = cli.build_parser

    def parser_with_boom():
        p = real()
        sub = next(a for a in p._actions if a.dest == "verb")
        sub.add_parser("boom").set_defaults(func=boom)
        return p

    monkeypatch.setattr(cli, "build_parser", parser_with_boom)
    assert main(["boom"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "r1lab: error: bad thing in x.yaml (fix it)"
    with pytest.raises(UserError):
        main(["--debug", "boom"])


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "r1lab", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and __version__ in out.stdout


def test_bundled_recipes_are_found_from_any_directory_and_ship_in_the_wheel(tmp_path, monkeypatch):
    """A wheel install has no ./recipes: names and the default recipes/<x>.yaml resolve to the packaged copies,
    which pyproject ships as package data."""
    import tomllib
    from pathlib import Path

    from r1lab.cli.train import BUNDLED_RECIPES, resolve_recipe_path

    monkeypatch.chdir(tmp_path)
    for spec in ("seed", "recipes/seed.yaml", "gsm8k", "r1-zero.yaml"):
        path = resolve_recipe_path(spec)
        assert path.is_file() and path.parent == BUNDLED_RECIPES
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert "recipes/*.yaml" in pyproject["tool"]["setuptools"]["package-data"]["r1lab"]
