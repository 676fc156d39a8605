"""Packaging: the core needs only its core dependencies, each optional feature without its
extra raises MissingExtraError naming it, the public names are importable, the wheel carries
py.typed and the one version.

A missing package is simulated in a fresh interpreter: a ``sys.meta_path`` finder refuses to
import it (as when it is not installed), or ``sys.modules[name] = None`` blocks it."""

from __future__ import annotations

import configparser
import importlib
import json
import os
import re
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Iterable, List

import pytest

import kithara_io
from kithara_io import errors
from kithara_io.extras import MissingExtraError
from tests.servers import RangedServer

ROOT = Path(__file__).resolve().parent.parent

#: What each extra brings (setup.cfg), by the module name it is imported as.
EXTRA_MODULES = {
    "player": ["numpy", "sounddevice", "soxr", "av", "mutagen"],
    "hls": ["m3u8", "cryptography"],
    "fsspec": ["fsspec"],
}
OPTIONAL = sorted({m for modules in EXTRA_MODULES.values() for m in modules})

_BLOCKER = """
import sys
BLOCKED = set({blocked!r})
if {as_none!r}:
    for name in BLOCKED:
        sys.modules[name] = None
else:
    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None
    sys.meta_path.insert(0, Blocker())
"""


def run_without(
    blocked: Iterable[str], code: str, *args: str, as_none: bool = False, text: bool = True
) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter in which ``blocked`` cannot be imported."""
    script = _BLOCKER.format(blocked=sorted(blocked), as_none=as_none) + textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=ROOT, capture_output=True, text=text, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip


def expect_extra(blocked: Iterable[str], code: str, extra: str, *args: str, as_none: bool = False) -> dict:
    """``code`` raises MissingExtraError naming ``extra``; returns what it carried."""
    script = "import json\nfrom kithara_io.extras import MissingExtraError\ntry:\n"
    script += textwrap.indent(textwrap.dedent(code), "    ")
    script += "except MissingExtraError as exc:\n"
    script += '    print(json.dumps({"extra": exc.extra, "name": exc.name, "message": str(exc)}))\n'
    done = run_without(blocked, script, *args, as_none=as_none)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines, f"no MissingExtraError: {done.stdout!r} {done.stderr!r}"
    found = json.loads(lines[-1])
    assert found["extra"] == extra
    assert f"pip install 'kithara-io[{extra}]'" in found["message"]
    assert repr(found["name"]) in found["message"]
    return found


@pytest.fixture
def served(tmp_path: Path) -> Iterable[RangedServer]:
    (tmp_path / "data.bin").write_bytes(bytes(range(256)) * 400)
    # A station's M3U list (radio players' kind), not HLS: no #EXT-X- tag, no .m3u8 name.
    (tmp_path / "radio.m3u").write_bytes(b"#EXTM3U\n#EXTINF:-1,Station\ndata.bin\n")
    (tmp_path / "a.m3u8").write_bytes(b"#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\nseg0.ts\n#EXT-X-ENDLIST\n")
    (tmp_path / "hls.txt").write_bytes(b"#EXTM3U\n#EXT-X-TARGETDURATION:4\n#EXTINF:4,\nseg0.ts\n#EXT-X-ENDLIST\n")
    with RangedServer(tmp_path) as server:
        yield server


def test_core_opens_and_reads_without_any_extra(served: RangedServer, tmp_path: Path) -> None:
    """open() of an http URL, of a local path and of a station's M3U list (which starts as
    an HLS playlist does), with every optional package missing: the bytes equal the files,
    no optional module is loaded."""
    code = """
        import sys, kithara_io
        url, path, m3u = sys.argv[1:4]
        with kithara_io.open(url) as f:
            f.seek(1000)
            sys.stdout.buffer.write(f.read(5000))
        with kithara_io.open(path) as f:
            sys.stdout.buffer.write(f.read())
        with kithara_io.open(m3u) as f:
            sys.stdout.buffer.write(f.read())
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED and sys.modules[m] is not None)
        assert not loaded, loaded
    """
    data = (tmp_path / "data.bin").read_bytes()
    args = (served.url("data.bin"), str(tmp_path / "data.bin"), served.url("radio.m3u"))
    done = run_without(OPTIONAL, code, *args, text=False)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == data[1000:6000] + data + data


def test_core_import_loads_no_optional_module() -> None:
    """``import kithara_io`` (and every name in ``__all__``) with the extras installed still
    imports none of them: a user of open() pays neither their memory nor their import time."""
    code = """
        import sys, kithara_io
        [getattr(kithara_io, name) for name in kithara_io.__all__]
        print(sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[1:])))
    """
    done = run_without((), code, *OPTIONAL)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("module", EXTRA_MODULES["player"])
def test_playback_without_player_extra_names_it(module: str) -> None:
    found = expect_extra([module], "import kithara_io.playback\n", "player")
    assert found["name"] == module


def test_playback_blocked_through_sys_modules_names_the_extra() -> None:
    expect_extra(["soxr"], "from kithara_io.playback import Player\n", "player", as_none=True)


@pytest.mark.parametrize("module", EXTRA_MODULES["hls"])
def test_hls_url_without_hls_extra_names_it(served: RangedServer, module: str) -> None:
    code = "import sys, kithara_io\nkithara_io.open(sys.argv[1])\n"
    found = expect_extra([module], code, "hls", served.url("a.m3u8"))
    assert found["name"] == module


def test_sniffed_hls_without_hls_extra_names_it(served: RangedServer) -> None:
    """A playlist behind a URL that does not say so is found by its first bytes, then the
    missing extra is named (not the playlist text returned as if it were the media)."""
    code = "import sys, kithara_io\nkithara_io.open(sys.argv[1])\n"
    expect_extra(["m3u8"], code, "hls", served.url("hls.txt"))


def test_hls_parsing_without_m3u8_names_the_extra() -> None:
    code = 'from kithara_io.sources.hls.playlist import parse_playlist\nparse_playlist("#EXTM3U", "http://h/a.m3u8")\n'
    expect_extra(["m3u8"], code, "hls", as_none=True)


def test_fsspec_filesystem_without_fsspec_extra_names_it() -> None:
    expect_extra(["fsspec"], "import kithara_io.fs\n", "fsspec")


def test_command_without_player_extra_says_which_extra_to_install() -> None:
    code = "import sys\nfrom kithara_io.__main__ import main\nsys.exit(main(['info', 'x.flac']))\n"
    done = run_without(["av"], code)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "kithara-io: error: Playback: the optional dependency 'av' is not installed (pip install 'kithara-io[player]')"
    )


def test_setup_cfg_extras_cover_the_optional_modules() -> None:
    """Every module the tests above treat as optional is in the extra they name, none is a
    core dependency, and ``all`` includes each feature extra."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    extras = {k: _requirement_names(v) for k, v in config["options.extras_require"].items()}
    core = _requirement_names(config["options"]["install_requires"])
    pip_names = {"av": "av", "numpy": "numpy", "sounddevice": "sounddevice", "soxr": "soxr", "mutagen": "mutagen",
                 "m3u8": "m3u8", "cryptography": "cryptography", "fsspec": "fsspec"}  # fmt: skip
    for extra, modules in EXTRA_MODULES.items():
        assert {pip_names[m] for m in modules} <= set(extras[extra]), extra
        assert not {pip_names[m] for m in modules} & set(core), extra
    (all_line,) = config["options.extras_require"]["all"].split()
    assert set(EXTRA_MODULES) <= set(re.fullmatch(r"kithara-io\[(.*)\]", all_line).group(1).split(","))


def _requirement_names(text: str) -> List[str]:
    return [re.split(r"[\[<>=~!; ]", line.strip(), maxsplit=1)[0].lower() for line in text.strip().splitlines()]


def test_every_name_in_all_is_importable() -> None:
    for name in kithara_io.__all__:
        assert getattr(kithara_io, name) is not None, name
    assert len(set(kithara_io.__all__)) == len(kithara_io.__all__)


def test_every_stream_error_is_exported_at_the_top() -> None:
    """``except kithara_io.CertificateError`` must work for every error the docs name."""
    defined = {
        name for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, errors.StreamError) and not name.startswith("_")
    }  # fmt: skip
    assert "CertificateError" in defined
    assert defined <= set(kithara_io.__all__)
    assert MissingExtraError is kithara_io.MissingExtraError


_DOTTED = re.compile(r"\bkithara_io(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
_FROM_IMPORT = re.compile(r"^[ \t]*from (kithara_io(?:\.\w+)*) import (?:\(([^)]*)\)|([\w ,]+))", re.M)


def documented_names() -> List[str]:
    """Every ``kithara_io.x.y`` the README and the docs site name, and every name a code
    example imports ``from kithara_io...``."""
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    found = set()
    for path in files:
        text = path.read_text(encoding="utf-8")
        found.update(_DOTTED.findall(text))
        for module, listed, line in _FROM_IMPORT.findall(text):
            names = (listed or line).replace("\n", " ").split(",")
            found.update(f"{module}.{n.split(' as ')[0].strip()}" for n in names if n.strip())
    return sorted(found)


def _resolve(dotted: str) -> object:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            value = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            value = getattr(value, attr)
        return value
    raise ModuleNotFoundError(dotted)


def test_documented_names_resolve() -> None:
    names = documented_names()
    assert "kithara_io.open" in names  # the parser reads the docs at all
    missing = []
    for dotted in names:
        try:
            _resolve(dotted)
        except (ImportError, AttributeError) as exc:
            missing.append(f"{dotted}: {exc}")
    assert not missing


@pytest.mark.timeout(180)
def test_wheel_ships_py_typed_and_one_version(tmp_path: Path) -> None:
    """The built wheel: ``py.typed`` inside, its version is ``kithara_io.__version__``, and
    its core requirements name no optional package."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=170,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (wheel,) = tmp_path.glob("kithara_io-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (meta_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = archive.read(meta_name).decode()
    assert "kithara_io/py.typed" in names
    assert re.search(r"^Version: (.+)$", meta, re.M).group(1) == kithara_io.__version__
    core = [line for line in re.findall(r"^Requires-Dist: (.+)$", meta, re.M) if "extra ==" not in line]
    assert core and not set(_requirement_names("\n".join(core))) & {
        "numpy", "sounddevice", "soxr", "av", "mutagen", "m3u8", "cryptography", "fsspec"
    }  # fmt: skip


def test_changelog_has_the_version_and_an_unreleased_section() -> None:
    """CHANGELOG.md (keep-a-changelog) has a section for ``kithara_io.__version__``."""
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## \[([^\]]+)\]", text, re.M)
    assert headings[0] == "Unreleased"
    assert kithara_io.__version__ in headings
