"""Every code block of README.md runs as written, so that the README cannot rot.

The blocks are read from the file. Python blocks run one after another in fresh namespaces, in a
folder holding a stand-in of a released checkpoint (the released layout: ``module.`` keys under
``state_dict``). Each command of a bash block is one of:

* ``make TARGET``: the target is read from the Makefile, not run (``make test`` runs this file);
* ``pip install ...``: not run (nothing is installed by a test); its pinned versions must be those of
  ``requirements.lock``, its repository URL that of ``_config.yml``, its extras those of
  ``pyproject.toml``;
* ``python -m sanmini.data ...``, ``python -m sanmini.train ...``, ``torchrun ... -m sanmini.train``:
  run, with ``/data/imagenet`` replaced by a small stand-in of ImageNet's layout, torchrun's eight
  processes by one, and training stopped after its first epoch (``--stop-after-epoch``, which leaves
  a run resumable, so the README's ``--resume`` line continues it for one more epoch).

A command of any other kind fails the test until this file is taught to check it.
"""
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch
import yaml

from conftest import write_class_folders
from sanmini.models import create

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
IMAGENET = "/data/imagenet"
STANDIN_CLASSES = ("n01440764", "n02102040")


def blocks(language: str) -> list[str]:
    """The bodies of README's fenced blocks in ``language``, in order."""
    return [m["body"] for m in re.finditer(r"^```(?P<lang>\w*)\n(?P<body>.*?)^```$", README, re.M | re.S)
            if m["lang"] == language]


def commands() -> list[list[str]]:
    """Every command of the bash blocks, continuation lines joined and comments dropped."""
    found = []
    for body in blocks("bash"):
        for line in body.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                found.append(words)
    return found


def kind(words: list[str]) -> str:
    if words[0] == "make":
        return "make"
    if words[:2] == ["pip", "install"]:
        return "pip"
    if words[0] in ("python", "torchrun") and "-m" in words:
        module = words[words.index("-m") + 1]
        if module in ("sanmini.data", "sanmini.train"):
            return module
    return "unknown"


def test_the_readme_has_its_blocks_and_every_command_is_checked():
    assert len(blocks("python")) >= 2 and len(commands()) >= 6
    unknown = [" ".join(words) for words in commands() if kind(words) == "unknown"]
    assert not unknown, f"README commands this test does not check: {unknown}"
    other = {m for m in re.findall(r"^```(\w*)$", README, re.M)} - {"python", "bash", ""}
    assert not other, f"README blocks in languages this test does not run: {other}"


def released_standin(name: str, path: Path, num_classes: int = 1000, seed: int = 1) -> dict:
    """A checkpoint file in the released layout: {'state_dict': {'module.' + key: tensor}, ...}."""
    torch.manual_seed(seed)
    state = create(name, num_classes=num_classes).state_dict()
    torch.save({"epoch": 100, "state_dict": {"module." + k: v for k, v in state.items()},
                "top1_val": 0.0}, path)
    return state


def test_the_python_blocks_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    released = released_standin("san10_patchwise", tmp_path / "san10_patchwise.pth")
    loaded = None
    for body in blocks("python"):
        namespace = {"__name__": "__readme__"}
        exec(compile(body, "README.md", "exec"), namespace)       # noqa: S102 - the README's own code
        if "load_pretrained(" in body:
            loaded = namespace["model"]
    assert loaded is not None, "no README block loads a released checkpoint"
    for key, value in loaded.state_dict().items():                 # the stand-in's weights, all of them
        torch.testing.assert_close(value, released[key], rtol=0, atol=0)


def test_the_install_commands_pin_the_tested_stack():
    lock = dict(line.split("==") for line in (REPO / "requirements.lock").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    url = yaml.safe_load((REPO / "_config.yml").read_text())["repository"]["url"]
    installs = [words[2:] for words in commands() if kind(words) == "pip"]
    assert installs
    pinned = [arg for words in installs for arg in words if "==" in arg]
    assert pinned, "the README's pip commands pin no version"
    for arg in pinned:
        package, version = arg.split("==")
        assert lock.get(package) == version, f"README pins {arg}, requirements.lock has {lock.get(package)}"
    for words in installs:
        for arg in words:
            match = re.fullmatch(r"sanmini(?:\[(?P<extras>[\w,]+)\])?(?: @ (?P<url>\S+))?", arg)
            if match:
                assert not match["url"] or match["url"] == f"git+{url}", arg
                assert set((match["extras"] or "").split(",")) - {""} <= set(extras), arg


@pytest.mark.parametrize("target", sorted({words[1] for words in commands() if kind(words) == "make"}))
def test_the_make_targets_exist_and_set_up_first(target):
    """Read from the Makefile, not run: even ``make -n`` runs a recipe line that calls $(MAKE), and
    ``make test`` runs this file."""
    makefile = (REPO / "Makefile").read_text()
    rule = re.search(rf"^{target}:(?P<prerequisites>[^\n=]*)$", makefile, re.M)
    assert rule, f"the Makefile has no target {target}"
    assert "setup" in rule["prerequisites"].split(), f"make {target} does not set up .venv first"
    phony = re.search(r"^\.PHONY:(.*)$", makefile, re.M)
    assert phony and target in phony[1].split()


def imagenet_standin(root: Path) -> Path:
    """ImageNet's layout with two classes: train/CLASS/*.JPEG (2 each) and val/CLASS/*.JPEG (1 each)."""
    return write_class_folders(root, STANDIN_CLASSES, {"train": 2, "val": 1}, size=(60, 75),
                               name="ILSVRC_{k:05d}.JPEG")


def runnable(words: list[str], data: Path) -> list[str]:
    """The README's command as this test runs it (see the module docstring)."""
    words = [str(data) if w == IMAGENET else w for w in words]
    if words[0] == "torchrun":
        words = [sys.executable, "-m", "torch.distributed.run",
                 *["--nproc_per_node=1" if w.startswith("--nproc_per_node") else w for w in words[1:]]]
    elif words[0] == "python":
        words = [sys.executable, *words[1:]]
    if "sanmini.train" in words and "--evaluate" not in words:
        epoch = 2 if "--resume" in words else 1
        words += ["--stop-after-epoch", str(epoch), "--no-progress"]
    return words


@pytest.mark.slow
def test_the_training_commands_run(tmp_path):
    data = imagenet_standin(tmp_path / "imagenet")
    released_standin("san10_patchwise", tmp_path / "san10_patchwise.pth", num_classes=len(STANDIN_CLASSES))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    for words in commands():
        if kind(words) not in ("sanmini.data", "sanmini.train"):
            continue
        command = runnable(words, data)
        done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{' '.join(words)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        if "--evaluate" in words:
            assert re.search(r"top-1 [\d.]+%, top-5 [\d.]+%", done.stdout), done.stdout
    runs = {p.parent.name for p in tmp_path.glob("runs/*/last.pt")}
    assert runs >= {"san10", "digits"}
    resumed = torch.load(tmp_path / "runs" / "san10" / "last.pt", map_location="cpu", weights_only=True)
    assert resumed["epoch"] == 2                                    # the --resume line went on from 1
