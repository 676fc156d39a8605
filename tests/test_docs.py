"""The README's and the documentation's examples are true.

Every ```python block in README.md and docs/**/*.md must compile, and every ``kithara_io``
name it imports or spells out (``kithara_io.events.MetadataChanged``) must exist. A block
marked ``<!-- runnable -->`` on the line before it is run against local servers, its
placeholder URLs (``https://example.org/song.flac``...) replaced by theirs, and what it
computed is compared with the local files. Every ``kithara-io COMMAND --option`` line of a
shell block names a command and options the parser has. The README's Python version is
setup.cfg's ``python_requires``.
"""

from __future__ import annotations

import ast
import configparser
import contextlib
import dataclasses
import importlib
import importlib.util
import io
import re
import textwrap
from pathlib import Path
from typing import Dict, Iterator, List

import av
import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from kithara_io.cli.main import build_parser
from tests.live_media import mp3_payload
from tests.servers.hls import HlsServer
from tests.servers.hls_media import encode, mux_hls
from tests.servers.icy import IcyServer, Station
from tests.servers.media import SAMPLE_RATE, make_media, signal

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
RUNNABLE = "<!-- runnable -->"
FENCE = re.compile(r"^(\s*)```(\w*)\s*$")


@dataclasses.dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    runnable: bool

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def code_blocks(page: Path) -> List[Block]:
    """The fenced blocks of ``page``, dedented (blocks inside list items are indented)."""
    lines = page.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        _indent, lang = opening.groups()
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
        previous = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        code = textwrap.dedent("\n".join(lines[i + 1 : end])) + "\n"
        blocks.append(Block(page, i + 1, lang, code, previous == RUNNABLE))
        i = end + 1
    return blocks


BLOCKS = [block for page in PAGES for block in code_blocks(page)]
PYTHON = [block for block in BLOCKS if block.lang == "python"]
SHELL = [block for block in BLOCKS if block.lang == "sh"]


def test_the_pages_have_examples() -> None:
    """The extraction finds what is there: a parser that found nothing would pass every test."""
    assert len(PYTHON) >= 12 and len(SHELL) >= 10
    assert sum(block.runnable for block in PYTHON) >= 5
    assert any(block.runnable and block.page.name == "README.md" for block in PYTHON)


def _resolve(dotted: str) -> object:
    """``kithara_io.a.b``: attributes, importing submodules where an attribute is not set yet."""
    parts = dotted.split(".")
    obj: object = importlib.import_module(parts[0])
    for index, part in enumerate(parts[1:], start=1):
        if not hasattr(obj, part):
            importlib.import_module(".".join(parts[: index + 1]))
        obj = getattr(obj, part)
    return obj


def _dotted(node: ast.AST) -> str:
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        names.append(node.id)
        return ".".join(reversed(names))
    return ""


def kithara_names(code: str) -> List[str]:
    """Every ``kithara_io...`` name the code imports or spells out."""
    names = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names if alias.name.startswith("kithara_io")]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("kithara_io"):
            names += [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Attribute) and _dotted(node).startswith("kithara_io."):
            names.append(_dotted(node))
    return names


def _missing(names: List[str]) -> List[str]:
    """Those of ``names`` that do not resolve to a module or attribute."""
    missing = []
    for name in names:
        try:
            _resolve(name)
        except (ImportError, AttributeError):
            missing.append(name)
    return missing


@pytest.mark.parametrize("block", PYTHON, ids=lambda b: b.name)
def test_python_example_compiles_and_its_names_exist(block: Block) -> None:
    compile(block.code, block.name, "exec")
    missing = _missing(kithara_names(block.code))
    assert not missing, f"{block.name} uses names that do not exist: {missing}"


@pytest.mark.parametrize("script", sorted((ROOT / "examples").glob("*.py")), ids=lambda p: p.name)
def test_example_scripts_use_names_that_exist(script: Path) -> None:
    """The scripts under examples/ (``make demo`` runs demo.py): every ``kithara_io`` name
    they import, also inside a function, exists (a module moved under ``kithara_io.cli``
    once left three of them failing only when run)."""
    missing = _missing(kithara_names(script.read_text()))
    assert not missing, f"{script.name} uses names that do not exist: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_kithara_io_names_in_the_text_exist(page: Path) -> None:
    """``kithara_io.x.Y`` in inline code (tables, prose) names something importable."""
    missing = _missing(re.findall(r"`(kithara_io(?:\.\w+)+)", page.read_text()))
    assert not missing, f"{page.name} names what does not exist: {missing}"


def test_name_check_finds_a_missing_name() -> None:
    code = "import kithara_io, os\nkithara_io.events.Seek(0)\nfrom kithara_io.disk import DiskCache\n"
    assert set(kithara_names(code)) == {
        "kithara_io",
        "kithara_io.events",
        "kithara_io.events.Seek",
        "kithara_io.disk.DiskCache",
    }
    with pytest.raises((ImportError, AttributeError)):
        _resolve("kithara_io.events.NoSuchEvent")
    with pytest.raises((ImportError, AttributeError)):
        _resolve("kithara_io.NoSuchModule.Thing")


def _help(*command: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        build_parser().parse_args([*command, "--help"])
    return out.getvalue()


@pytest.mark.parametrize("block", SHELL, ids=lambda b: b.name)
def test_command_line_examples_use_real_commands_and_options(block: Block) -> None:
    # The help's COMMAND list: "    play         play through the sound card, ..."
    commands = set(re.findall(r"^    ([a-z]+)  ", _help().split("COMMAND", 2)[-1], re.M))
    assert {"play", "get"} <= commands, _help()
    for line in block.code.splitlines():
        line = line.split("#", 1)[0]
        words = line.split()
        if len(words) < 2 or words[0] != "kithara-io":
            continue
        assert words[1] in commands, f"{block.name}: no command {words[1]!r}"
        text = _help(words[1])
        if len(words) > 2 and re.fullmatch(r"[a-z]+(\|[a-z]+)*", words[2]):  # cache ls|size|clear
            text += "".join(_help(words[1], action) for action in words[2].split("|"))
        for option in re.findall(r"(?<![\w-])--[a-z][a-z-]*", line):
            assert re.search(re.escape(option) + r"(?![\w-])", text), (
                f"{block.name}: `kithara-io {words[1]}` has no {option}"
            )


def test_readme_python_version_is_setup_cfg_python_requires() -> None:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    minimum = re.fullmatch(r">=\s*(3\.\d+)", config["options"]["python_requires"].strip())
    assert minimum, config["options"]["python_requires"]
    readme = (ROOT / "README.md").read_text()
    assert f"Python {minimum.group(1)} or newer" in readme


# --- running the runnable examples -------------------------------------------------------

STATION_NAME = "Kithara Test FM"  # the test station's icy-name


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dict[str, object]]:
    """Every placeholder URL of a runnable example -> a local URL, and the local files."""
    root = tmp_path_factory.mktemp("docs").resolve()
    media = make_media(root)
    (root / "table.csv").write_text("x,y\n1,2.5\n3,4.5\n")
    pcm = signal(4.0).astype(np.float32)
    lines = ["#EXTM3U", "#EXT-X-VERSION:3"]
    for index, bitrate in enumerate((64_000, 160_000)):
        variant = root / "hls" / f"v{index}"
        variant.mkdir(parents=True)
        options = {
            "hls_time": "1",
            "hls_playlist_type": "vod",
            "hls_list_size": "0",
            "hls_segment_type": "mpegts",
            "hls_segment_filename": str(variant / "seg%03d.ts"),
        }
        mux_hls(encode(pcm, SAMPLE_RATE, bitrate=bitrate), "mp4", variant / "index.m3u8", options)
        lines += [f'#EXT-X-STREAM-INF:BANDWIDTH={bitrate + 8000},CODECS="mp4a.40.2"', f"v{index}/index.m3u8"]
    (root / "hls" / "master.m3u8").write_text("\n".join(lines) + "\n")
    with HlsServer(root) as files, IcyServer() as radio:
        station = Station(payload=mp3_payload(4.0), metaint=8000)
        urls = {
            "https://example.org/song.flac": files.url("tone.flac"),
            "https://example.org/song.ogg": files.url("tone.ogg"),
            "https://example.org/song.mp3": files.url("tone.mp3"),
            "https://example.org/a.flac": files.url("tone.flac"),
            "https://example.org/b.flac": files.url("tone.wav"),
            "https://example.org/table.csv": files.url("table.csv"),
            "https://cdn.example/master.m3u8": files.url("hls/master.m3u8"),
            "http://radio.example/live.mp3": radio.add("/live.mp3", station),
        }
        yield {"urls": urls, "media": media, "csv": root / "table.csv"}


def _local_checks(ns: dict, served: Dict[str, object]) -> None:
    """What the example computed equals what the local files give."""
    media = served["media"]
    if "data" in ns:
        assert np.array_equal(ns["data"], sf.read(media["tone.flac"])[0])
    if "block" in ns:
        with sf.SoundFile(media["tone.ogg"]) as snd:
            snd.seek(snd.frames // 2)
            assert np.array_equal(ns["block"], snd.read(4096))
    if "samples" in ns:
        with av.open(str(media["tone.mp3"])) as container:
            assert ns["samples"] == sum(frame.samples for frame in container.decode(audio=0))
    if "station" in ns:
        assert ns["station"] == STATION_NAME and len(ns["chunk"]) > 0
    if "variant" in ns:
        assert ns["variant"] in (0, 1) and ns["first"].samples > 0
    if "table" in ns:
        pd.testing.assert_frame_equal(ns["table"], pd.read_csv(served["csv"]))
    if "tail" in ns:
        assert ns["tail"] == media["tone.flac"].read_bytes()[-4096:]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("block", [b for b in PYTHON if b.runnable], ids=lambda b: b.name)
def test_runnable_example_runs_against_local_servers(block: Block, served, capsys, no_leaks, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # what an example writes (trace.svg) stays out of the clone
    urls: Dict[str, str] = served["urls"]  # type: ignore[assignment]
    placeholders = set(re.findall(r"(?:kithara::)?(https?://[^\"'\s]+)", block.code))
    unknown = placeholders - set(urls)
    assert not unknown, f"{block.name}: no local server for {sorted(unknown)}"
    code = block.code
    for placeholder, url in urls.items():
        code = code.replace(f'"{placeholder}"', f'"{url}"').replace(f'"kithara::{placeholder}"', f'"kithara::{url}"')
    ns: dict = {"__name__": "__docs_example__"}
    exec(compile(code, block.name, "exec"), ns)
    _local_checks(ns, served)


def test_reference_shows_sphinx_roles_as_code() -> None:
    """docs/griffe_roles.py, the mkdocstrings extension that turns the docstrings' roles into code."""
    spec = importlib.util.spec_from_file_location("griffe_roles", ROOT / "docs" / "griffe_roles.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = "a :class:`~kithara_io.sources.live.stream.LiveStream`, see :mod:`kithara_io.events` and ``x``"
    assert module.plain_roles(text) == "a `LiveStream`, see `kithara_io.events` and ``x``"
