"""``mimicry artists ...`` and ``mimicry check``: the style registry from the command line.

Heavy imports (onnxruntime, the registry) happen inside the commands, so ``mimicry --help`` stays fast.
The registry is ``--registry``, else ``$MIMICRY_REGISTRY``, else ``registry.sqlite3`` in the per-user
data directory (``mimicry.detector.registry.default_path``).

What others wrote (artists' names, consent notes, file names, error messages that quote them) is
printed as text: through ``rich.markup.escape`` or as ``rich.text.Text``, never read as markup, so
a name such as ``[/]`` or ``[link=...]`` neither breaks a command nor styles the terminal; control
and format characters in it (an escape sequence in a consent note) are printed as escapes (``\\x1b``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from mimicry.exits import EXIT_ERRORS, EXIT_USAGE, for_label, interruptible

artists_app = typer.Typer(help="Enrol artists' portfolios in the style registry, list and remove them.",
                          no_args_is_help=True)

EXIT_SKIPPED = EXIT_ERRORS  # artists add: some files were skipped
RegistryOption = Annotated[Optional[str], typer.Option(
    "--registry", show_default=False,
    help="Registry: a SQLite file or a postgresql:// URL "
         "\\[default: $MIMICRY_REGISTRY, else registry.sqlite3 in the user data dir].")]
EncoderOption = Annotated[str, typer.Option(
    "--encoder", help="Style encoder: a directory (model.onnx + model.json), or a name looked up in "
                      "$MIMICRY_MODELS, then among the bundled models.")]
DEFAULT_ENCODER = "style-encoder"  # mimicry.detector.locations.DEFAULT_ENCODER (not imported: keeps --help light)


def _visible(text: str) -> str:
    """``text`` with control and format characters (an escape sequence, a bidi override, a zero-width
    space) written out as escapes (``\\x1b``), so what others wrote cannot drive the terminal."""
    import unicodedata

    return "".join(ch.encode("unicode_escape").decode() if ch not in "\n\t" and unicodedata.category(ch) in
                   ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp") else ch for ch in text)


def _shown(text: str) -> str:
    """``text`` for a rich format string: control characters made visible, markup escaped."""
    from rich.markup import escape

    return escape(_visible(text))


def _console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=True)  # long paths stay on one line


def _fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    _console(stderr=True).print(f"[red]error:[/] {_shown(message)}")
    return typer.Exit(code)


def _open_registry(path: Optional[str], encoder=None, *, must_exist: bool = False):
    """The registry at ``path`` (default: the per-user one). With ``must_exist`` (commands that only read it) a
    SQLite path given by the user that has no file is an error, not a new empty registry: a mistyped name
    would otherwise read as "no artists enrolled"."""
    from mimicry.detector.registry import Registry, RegistryError
    from mimicry.detector.registry_backends import is_url

    if must_exist and path is not None and not is_url(path) and not Path(path).expanduser().exists():
        raise _fail(f"no registry at {path} (a command that only reads one does not create it; "
                    "`mimicry artists add` does)")
    try:  # artists are scored the way the encoder's threshold was chosen
        return Registry.open(path, aggregate=encoder.aggregate if encoder is not None else None)
    except RegistryError as exc:
        raise _fail(str(exc)) from None


def _load_encoder(path: str):
    from mimicry.detector.bundle import ModelError
    from mimicry.detector.style import StyleEncoder

    try:
        return StyleEncoder.from_dir(path)
    except ModelError as exc:
        raise _fail(str(exc)) from None


@artists_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="The artist's name, as it will be shown.", show_default=False)],
    directory: Annotated[Path, typer.Argument(help="Folder of the artist's works.", show_default=False)],
    consent: Annotated[str, typer.Option("--consent", help="How the artist consented (free text, stored).")] = "",
    recursive: Annotated[bool, typer.Option("-r", "--recursive", help="Descend into subfolders.")] = False,
    keep_originals: Annotated[bool, typer.Option(
        "--keep-originals", help="Store the original files too (by default only embeddings, "
                                 "sha256 and small thumbnails are kept).")] = False,
    registry: RegistryOption = None,
    encoder: EncoderOption = DEFAULT_ENCODER,
) -> None:
    """Enrol the works in DIRECTORY under NAME (created if new) in one transaction.

    Files with an image suffix are read (.png .jpg .jpeg .webp .gif .bmp .tif .tiff); one that cannot
    be decoded, or is already enrolled, is reported and skipped. Exit codes: 0 all enrolled,
    2 usage error (no such folder, nothing to enrol, bad encoder or registry), 3 some files skipped.
    """
    from rich.progress import Progress

    from mimicry.detector.registry import RegistryError
    from mimicry.detector.scan import iter_inputs

    if not directory.is_dir():
        raise _fail(f"not a folder: {directory}")
    files = list(iter_inputs([str(directory)], recursive=recursive))
    if not files:
        raise _fail(f"no image files in {directory}" + ("" if recursive else " (use -r for subfolders)"))
    enc = _load_encoder(encoder)
    out = _console()
    with _open_registry(registry, enc) as reg:
        try:
            with Progress(console=_console(stderr=True), transient=True,
                          disable=not _console(stderr=True).is_terminal) as bar:
                task = bar.add_task("embedding", total=len(files))

                def progress(stage: str, done: int, total: int) -> None:
                    bar.update(task, description=stage, completed=done, total=total)

                report = reg.enrol(name, files, enc, consent=consent or None, keep_originals=keep_originals,
                                   progress=progress)
        except RegistryError as exc:
            raise _fail(str(exc)) from None
        try:
            total = reg.get_artist(report.artist).works
            exists = True
        except RegistryError:  # a new artist none of whose files could be added is not created
            total, exists = 0, False
    for source, code, message in report.skipped:
        out.print(f"[yellow]skipped[/] {_shown(source)}: {code}: {_shown(message)}")
    if not exists:
        out.print(f"{_shown(report.artist)} not created: none of the {len(report.skipped)} file(s) could be "
                  f"added ({_shown(str(reg.path))})")
        raise typer.Exit(EXIT_SKIPPED)
    verb = "created" if report.created else "updated"
    out.print(f"{verb} {_shown(report.artist)}: {report.added} work(s) added, {len(report.skipped)} skipped, "
              f"{total} enrolled in all ({_shown(str(reg.path))})")
    raise typer.Exit(EXIT_SKIPPED if report.skipped else 0)


@artists_app.command("list")
def list_(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    registry: RegistryOption = None,
) -> None:
    """List the enrolled artists with their number of works, consent note and creation time."""
    from rich.table import Table
    from rich.text import Text

    with _open_registry(registry, must_exist=True) as reg:
        artists = reg.list_artists()
    out = _console()
    if as_json:
        for a in artists:
            typer.echo(json.dumps({"name": a.name, "works": a.works, "consent": a.consent, "created_at": a.created_at}))
        return
    if not artists:
        out.print(f"no artists enrolled in {_shown(str(reg.path))}")
        return
    table = Table("artist", "works", "consent", "created")
    for a in artists:  # Text cells: names and notes are shown as written, never read as markup
        table.add_row(Text(_visible(a.name)), str(a.works), Text(_visible(a.consent)), Text(a.created_at))
    out.print(table)


@artists_app.command("remove")
def remove(
    name: Annotated[str, typer.Argument(help="The artist to remove, with all their works.", show_default=False)],
    registry: RegistryOption = None,
) -> None:
    """Remove an artist and everything stored for them (embeddings, thumbnails, originals).

    NAME is found as it is stored, or in any form with the same letters (case, spaces, Unicode form).
    """
    from mimicry.detector.registry import RegistryError

    with _open_registry(registry) as reg:
        try:
            stored = reg.get_artist(name).name
            n = reg.remove_artist(stored)
        except RegistryError as exc:
            raise _fail(str(exc)) from None
    _console().print(f"removed {_shown(stored)} and {n} work(s)")


@artists_app.command("reembed")
def reembed(
    registry: RegistryOption = None,
    encoder: EncoderOption = DEFAULT_ENCODER,
) -> None:
    """Embed every enrolled work again with ENCODER and bind the registry to it.

    What a registry built with an earlier style encoder needs before the new one can use it (it is
    refused until then). Each work is embedded from its original when it was kept (--keep-originals),
    else from its stored thumbnail (at most 96 px: close for an encoder that reads images at 64 px, as
    the bundled one does). All or nothing: if any work fails, nothing changes. Exit codes: 0 done,
    2 usage error (bad encoder or registry, a work that could not be embedded).
    """
    from rich.progress import Progress

    from mimicry.detector.registry import RegistryError

    enc = _load_encoder(encoder)
    with _open_registry(registry, enc) as reg:
        try:
            with Progress(console=_console(stderr=True), transient=True,
                          disable=not _console(stderr=True).is_terminal) as bar:
                task = bar.add_task("embedding", total=None)

                def progress(stage: str, done: int, total: int) -> None:
                    bar.update(task, description=stage, completed=done, total=total)

                report = reg.reembed(enc, progress=progress)
        except RegistryError as exc:
            raise _fail(str(exc)) from None
    _console().print(f"{report.works} work(s) embedded again with {_shown(report.encoder)}: "
                     f"{report.from_originals} from their originals, {report.from_thumbnails} from their "
                     f"thumbnails ({_shown(str(reg.path))})")


def check(
    image: Annotated[Path, typer.Argument(help="The image to check.", show_default=False)],
    artist: Annotated[Optional[str], typer.Option(
        "--artist", show_default=False, help="Compare with this enrolled artist only.")] = None,
    k: Annotated[int, typer.Option("-k", "--top", min=1, help="How many artists to show.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    model: Annotated[str, typer.Option("--model", help="Detector: a directory, or a name ($MIMICRY_MODELS, "
                                                          "then the bundled models).")] = "default",
    registry: RegistryOption = None,
    encoder: EncoderOption = DEFAULT_ENCODER,
) -> None:
    """Is IMAGE an AI imitation, and of whose style?

    The detector's verdict; whether IMAGE is a copy of an enrolled work (the same picture, re-encoded or resized), whatever the style similarity; then the enrolled artists whose style is closest (similarity, whether it reaches the encoder's threshold, and the nearest enrolled works); then whom it is attributed to, or "no enrolled artist" when none reaches the threshold, and what a match claims (the share of works by authors who are not enrolled that the threshold attributed to someone, as measured). With --artist, the similarity to that artist only.

    Exit codes, as for scan and explain:
      0    not flagged
      1    ai-mimicry
      2    usage error (unknown artist, bad model, encoder or registry)
      3    the image cannot be read
      130  interrupted
    """  # noqa: E501  (one line per paragraph: the help text keeps line breaks)
    with interruptible():
        raise typer.Exit(_check(image, artist, k, as_json, model, registry, encoder))


def _check(image: Path, artist: Optional[str], k: int, as_json: bool, model: str, registry: Optional[str],
           encoder: str) -> int:
    """``mimicry check``; returns the exit code (raises typer.Exit for a usage error). The evidence is
    the detector's, with the attribution component every door uses (``mimicry.detector.attribution``):
    the same ``artists`` and ``copy_of`` as scan rows and the API give, from one decode."""
    from mimicry.detector import Detector, copies
    from mimicry.detector.attribution import Attribution
    from mimicry.detector.bundle import ModelError
    from mimicry.detector.registry import RegistryError

    try:
        det = Detector.from_dir(model)
    except ModelError as exc:
        raise _fail(str(exc)) from None
    enc = _load_encoder(encoder)
    with _open_registry(registry, enc, must_exist=True) as reg:
        try:
            det.attribution = Attribution(enc, reg, top_k=k, artist=artist)
            verdict = det.predict([str(image)])[0]
        except RegistryError as exc:
            raise _fail(str(exc)) from None
        n_artists = len(reg.list_artists())
        registry_path = str(reg.path)
    if verdict.error:
        raise _fail(f"{image}: {verdict.error_code}: {verdict.error}", EXIT_ERRORS)
    matches, copy_of = verdict.evidence.get("artists", []), verdict.evidence.get("copy_of")
    result = {
        "source": str(image), "label": verdict.label, "score": verdict.score, "threshold": verdict.threshold,
        "model": verdict.model, "model_version": verdict.model_version,
        "style_threshold": enc.threshold, "style_encoder": enc.name,
        "artists": matches, "attributed_to": verdict.evidence.get("attributed_to"), "copy_of": copy_of,
        "false_attribution": enc.false_attribution,
        # why the label is what it is, as the API and scan rows say it: the model's score, or the file's metadata
        "label_reason": verdict.evidence.get("label_reason", "model-score"),
        "model_label": verdict.evidence.get("model_label", verdict.label),
        "provenance": verdict.evidence.get("provenance", []),
    }
    if as_json:
        typer.echo(json.dumps(result))
        return for_label(verdict.label)
    out = _console()
    out.print(f"{_shown(str(image))}: [bold]{verdict.label}[/] (P(mimicry) {verdict.score:.3f}, "
              f"threshold {verdict.threshold:.3f}, model {_shown(verdict.model)})")
    from mimicry.explain_cli import provenance_lines

    for line in provenance_lines(verdict):
        out.print("  " + _shown(line))
    if not n_artists:
        out.print(f"no artists enrolled in {_shown(registry_path)}: add some with `mimicry artists add NAME DIR`")
        return for_label(verdict.label)
    if copy_of is not None:
        out.print(f"[bold red]copy[/] of enrolled work {copy_of['work_id']} ({_shown(Path(copy_of['source']).name)}) "
                  f"by {_shown(copy_of['artist'])} (distance {copy_of['distance']:.3f}; "
                  f"a copy is <= {copies.COPY_DISTANCE})")
    else:
        out.print("not a copy of any enrolled work")
    heading = f"similarity to {_shown(artist)}" if artist else f"closest enrolled styles (of {n_artists})"
    out.print(f"{heading}; attributed at >= {enc.threshold:.3f}:")
    for m in matches:
        mark = "[bold red]match[/]" if m["passes"] else "no match"
        near = ", ".join(f"{_shown(Path(w['source']).name)} {w['similarity']:.3f}" for w in m["nearest_works"])
        out.print(f"  {_shown(m['artist'])}: {m['similarity']:.3f} {mark}   nearest: {near}")
    attributed = verdict.evidence.get("attributed_to")
    out.print(f"attributed to: [bold]{_shown(attributed)}[/]" if attributed is not None
              else "attributed to: no enrolled artist (none reaches the threshold)")
    far = enc.false_attribution
    if far is not None:
        out.print(f"a match claims: at this threshold {100 * far['rate']:.1f}% of works by authors who are not "
                  f"enrolled were attributed to someone ({_shown(far['measured_on'])})")
    return for_label(verdict.label)
