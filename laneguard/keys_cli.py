"""`laneguard keys ...`: make signing keys, sign model bundles, check a bundle's signature."""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def keys() -> None:
    """Ed25519 keys that sign model bundles; lanes use only bundles signed by keys they trust."""


@keys.command("new")
@click.option("--out", type=click.Path(path_type=Path), default=Path("keys"), show_default=True)
@click.option("--name", default="release", show_default=True)
def new_command(out: Path, name: str) -> None:
    """Make a key pair: NAME.key (private, keep it off the lanes) and NAME.pub."""
    from laneguard.signing import SigningKeyError, key_id, load_public_key, new_keypair

    try:
        private, public = new_keypair(out, name)
    except SigningKeyError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"private key {private}\npublic key  {public} (key id {key_id(load_public_key(public))})"
    )


@keys.command("sign")
@click.argument("bundle", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--key", "key_file", type=click.Path(exists=True, path_type=Path), required=True)
@click.option("--release", type=click.IntRange(min=0), default=None, help="Set the release number.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Default: in place.")
def sign_command(bundle: Path, key_file: Path, release: int | None, out: Path | None) -> None:
    """Sign BUNDLE's manifest (which lists the hash of every other member)."""
    from laneguard.bundle import BundleError
    from laneguard.signing import SigningKeyError, load_private_key, sign_bundle

    try:
        written = sign_bundle(bundle, load_private_key(key_file), out, release)
    except (SigningKeyError, BundleError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"signed {written}")


@keys.command("verify")
@click.argument("bundle", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--trust", type=click.Path(exists=True, path_type=Path), multiple=True, required=True)
def verify_command(bundle: Path, trust: tuple[Path, ...]) -> None:
    """Check BUNDLE's signature and every member's hash, as a lane does before using it."""
    import tempfile

    from laneguard.bundle import BundleError
    from laneguard.signing import BundleTrust, SigningKeyError

    try:
        checker = BundleTrust.from_files(list(trust))
        with tempfile.TemporaryDirectory() as tmp:
            manifest = checker.extract(bundle, Path(tmp))
    except (SigningKeyError, BundleError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{bundle}: {manifest.version} (release {manifest.release}) verified")
